"""Tokens of setkey.conf, with their offsets.

Two vocabularies, as in setkey's own scanner: the command words (`spdadd`, addresses, `-E`,
keys...) and, after `-P` up to the `;`, the policy text of ipsec_set_policy(3), which setkey
hands over whole. Comments run from `#` to the end of the line; statements may span lines.
"""

from __future__ import annotations

from typing import NamedTuple

from spd.errors import SetkeyError, SourceText

# One-character tokens of the command vocabulary.
_PUNCT = frozenset(";/[]")
_WORD_STOP = frozenset(" \t\r\n\f\v;/[]#\"")
# The policy vocabulary's one-character tokens.
_POLICY_PUNCT = frozenset("/-+")
_POLICY_WORD = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._%"
)


class Token(NamedTuple):
    kind: str  # "word", "string", "policy", ";", "/", "[", "]", "eof" ("port" in policy text)
    text: str
    start: int  # offset into the file


def tokenize(src: SourceText) -> list[Token]:
    """The command tokens; `-P` is followed by one "policy" token holding the raw policy text."""
    text = src.text
    nul = text.find("\0")
    if nul >= 0:  # setkey's C scanner would end the word (or key) there
        raise src.error(nul, "\\0", "a NUL byte: setkey.conf is text")
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            i = _end_of_line(text, i)
        elif ch in _PUNCT:
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                # quoted strings are keys: the rest of the line is not shown
                raise src.error(i, '"', "unterminated quoted string")
            tokens.append(Token("string", text[i + 1:end], i))
            i = end + 1
        else:
            start = i
            while i < n and text[i] not in _WORD_STOP:
                i += 1
            word = text[start:i]
            tokens.append(Token("word", word, start))
            if word == "-P":
                i = _policy_region(text, i, tokens)
    tokens.append(Token("eof", "", n))
    return tokens


def _end_of_line(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _policy_region(text: str, i: int, tokens: list[Token]) -> int:
    """Appends the policy text after `-P` (comments kept, stripped later) up to the `;`."""
    start = i
    n = len(text)
    while i < n and text[i] != ";":
        if text[i] == "#":
            i = _end_of_line(text, i)
        else:
            i += 1
    tokens.append(Token("policy", text[start:i], start))
    return i


def tokenize_policy(src: SourceText, region: Token) -> list[Token]:
    """The ipsec_set_policy(3) tokens of a policy region: words, `/`, `-`, `+` and `[port]`."""
    text = region.text
    base = region.start
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "#":
            i = _end_of_line(text, i)
        elif ch in _POLICY_PUNCT:
            tokens.append(Token(ch, ch, base + i))
            i += 1
        elif ch == "[":
            end = text.find("]", i)
            inner = text[i + 1:end] if end > 0 else ""
            if end < 0 or not inner.isdigit():
                bad = text[i:end + 1] if end > 0 else text[i:_end_of_line(text, i)]
                raise src.error(base + i, bad, "a port must be a decimal number in brackets")
            tokens.append(Token("port", inner, base + i))
            i = end + 1
        elif ch in _POLICY_WORD:
            start = i
            while i < n and text[i] in _POLICY_WORD:
                i += 1
            tokens.append(Token("word", text[start:i], base + start))
        else:
            raise src.error(base + i, ch, "unexpected character in policy")
    tokens.append(Token("eof", "", base + n))
    return tokens


class Cursor:
    """Walks a token list for a recursive-descent parser; errors carry the token's position.

    eof_text is how the end of the tokens is named in errors (";" inside a policy).
    """

    def __init__(self, src: SourceText, tokens: list[Token], eof_text: str = "") -> None:
        self.src = src
        self.tokens = tokens
        self.i = 0
        self.eof_text = eof_text

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def accept(self, kind: str) -> bool:
        if self.peek().kind == kind:
            self.i += 1
            return True
        return False

    def fail(self, tok: Token, msg: str) -> SetkeyError:
        if tok.kind != "eof":
            return self.src.error(tok.start, tok.text, msg)
        if self.eof_text:
            return self.src.error(tok.start, self.eof_text, msg)
        return self.src.error(tok.start, "", f"{msg} (end of file reached)")

    def number(self, tok: Token, limit: int, what: str) -> int:
        """A decimal word no larger than limit."""
        if tok.kind != "word" or not tok.text.isdigit():
            raise self.fail(tok, f"expected a decimal {what}")
        value = int(tok.text)
        if value > limit:
            raise self.fail(tok, f"{what} out of range (at most {limit})")
        return value
