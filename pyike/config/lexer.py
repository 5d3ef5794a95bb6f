"""Tokens of racoon.conf(5), as ipsec-tools' cftoken.l cuts them.

Words (keywords, numbers, addresses), quoted strings, `{ } ; ,`, a port in brackets
(`[500]`, `[any]`) and a prefix length (`/24`). `#` starts a comment that runs to the end
of the line. Every token carries its file and line so that errors can name them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyike.config.errors import ConfigError

WORD = "word"
STRING = "string"
PORT = "port"
PREFIX = "prefix"
LBRACE = "{"
RBRACE = "}"
SEMI = ";"
COMMA = ","
EOF = "end of file"

_PUNCT = {"{": LBRACE, "}": RBRACE, ";": SEMI, ",": COMMA}
_WORD_RE = re.compile(r'[^\s{};,"#\[\]/]+')
_PORT_RE = re.compile(r"\[\s*(\d+|any)\s*\]")
_PREFIX_RE = re.compile(r"/(\d{1,3})")
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    file: str
    line: int

    def describe(self) -> str:
        if self.kind == STRING:
            return f'"{self.value}"'
        if self.kind == PORT:
            return f"[{self.value}]"
        if self.kind == PREFIX:
            return f"/{self.value}"
        return self.value if self.kind == WORD else self.kind


def tokenize(text: str, filename: str) -> tuple[list[Token], list[ConfigError]]:
    """Cut `text` into tokens; the list always ends with an EOF token."""
    tokens: list[Token] = []
    errors: list[ConfigError] = []
    pos, line, end = 0, 1, len(text)
    while pos < end:
        ch = text[pos]
        if ch == "\n":
            line += 1
            pos += 1
        elif ch == "#":
            nl = text.find("\n", pos)
            pos = end if nl < 0 else nl
        elif m := _SPACE_RE.match(text, pos):
            pos = m.end()
        elif ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], ch, filename, line))
            pos += 1
        elif ch == '"':
            close = text.find('"', pos + 1)
            if close < 0:
                errors.append(ConfigError(filename, line, '"', "unterminated quoted string"))
                break
            value = text[pos + 1 : close]
            tokens.append(Token(STRING, value, filename, line))
            line += value.count("\n")
            pos = close + 1
        elif m := _PORT_RE.match(text, pos):
            tokens.append(Token(PORT, m.group(1), filename, line))
            pos = m.end()
        elif m := _PREFIX_RE.match(text, pos):
            tokens.append(Token(PREFIX, m.group(1), filename, line))
            pos = m.end()
        elif m := _WORD_RE.match(text, pos):
            tokens.append(Token(WORD, m.group(0), filename, line))
            pos = m.end()
        else:
            errors.append(ConfigError(filename, line, ch, f'unexpected character "{ch}"'))
            pos += 1
    tokens.append(Token(EOF, "", filename, line))
    return tokens, errors
