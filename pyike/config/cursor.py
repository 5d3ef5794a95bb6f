"""A cursor over one file's tokens, with the small value readers every block shares.

Readers raise `Abort` carrying a ConfigError; the block loop records it and skips to the
end of the statement, so one mistake yields one error and parsing goes on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from pyike.config import names
from pyike.config.errors import ConfigError
from pyike.config.lexer import EOF, LBRACE, PORT, RBRACE, SEMI, STRING, WORD, Token

T = TypeVar("T")


class Abort(Exception):
    """The current statement is wrong; `error` says where and why."""

    def __init__(self, error: ConfigError) -> None:
        super().__init__(str(error))
        self.error = error


class UnexpectedEof(Exception):
    """A block was left open at the end of a file (already reported)."""


def fail(tok: Token, message: str, keyword: str | None = None) -> Abort:
    """Build the Abort for `tok`; callers `raise fail(...)`."""
    return Abort(
        ConfigError(tok.file, tok.line, tok.value if keyword is None else keyword, message)
    )


def unsupported(tok: Token, what: str) -> Abort:
    return fail(tok, f'"{tok.value}" is not supported by pyike ({what})')


class Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._i = 0

    def peek(self) -> Token:
        return self._tokens[self._i]

    def next(self) -> Token:
        tok = self._tokens[self._i]
        if tok.kind != EOF:
            self._i += 1
        return tok

    def at_word(self, *values: str) -> bool:
        tok = self.peek()
        return tok.kind == WORD and (not values or tok.value in values)

    def expect(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok.kind != kind:
            raise fail(tok, f"expected {what}, found {tok.describe() or 'end of file'}")
        return self.next()

    def end(self, keyword: Token) -> None:
        """The `;` that ends a statement."""
        tok = self.peek()
        if tok.kind != SEMI:
            raise fail(
                tok,
                f'expected ";" to end the "{keyword.value}" statement, found {tok.describe()}',
            )
        self.next()

    def word(self, what: str) -> Token:
        return self.expect(WORD, what)

    def string(self, what: str) -> Token:
        return self.expect(STRING, what)

    def number(self, what: str, low: int = 0, high: int = 2**32 - 1) -> int:
        tok = self.word(what)
        if not tok.value.isdigit():
            raise fail(tok, f"expected {what} (a number), found {tok.describe()}")
        value = int(tok.value)
        if not low <= value <= high:
            raise fail(tok, f"{what} {value} is out of range {low}..{high}")
        return value

    def switch(self) -> bool:
        tok = self.word("on or off")
        if tok.value not in ("on", "off"):
            raise fail(tok, f"expected on or off, found {tok.describe()}")
        return tok.value == "on"

    def choice(self, what: str, choices: tuple[str, ...]) -> str:
        tok = self.word(what)
        if tok.value not in choices:
            raise fail(tok, f"expected {what} ({' | '.join(choices)}), found {tok.describe()}")
        return tok.value

    def lookup(
        self,
        what: str,
        table: Mapping[str, T],
        not_supported: Collection[str] = (),
        hint: str = "",
    ) -> T:
        """A word that must be a key of `table`; words in `not_supported` get `hint`."""
        tok = self.word(what)
        if tok.value in not_supported:
            raise unsupported(tok, hint)
        if tok.value not in table:
            raise fail(tok, f"expected {what}, found {tok.describe()}")
        return table[tok.value]

    def seconds(self, what: str) -> int:
        """`N sec|min|hour` (racoon requires the unit)."""
        count = self.number(what)
        return count * self.lookup("a time unit (sec, min, hour)", names.TIME_UNITS)

    def byte_count(self, what: str) -> int:
        count = self.number(what)
        return count * self.lookup("a byte unit (B, KB, MB, TB)", names.BYTE_UNITS)

    def address(self, what: str) -> str:
        tok = self.expect(WORD, what)
        return parse_address(tok, what)

    def optional_port(self, default: int) -> int:
        if self.peek().kind != PORT:
            return default
        tok = self.next()
        if tok.value == "any":
            raise fail(tok, "a port number is needed here, not [any]")
        port = int(tok.value)
        if port > 65535:
            raise fail(tok, f"port {port} is out of range 0..65535")
        return port


def parse_address(tok: Token, what: str) -> str:
    try:
        return str(ipaddress.ip_address(tok.value))
    except ValueError:
        raise fail(tok, f"expected {what} (an IP address), found {tok.describe()}") from None


def skip_statement(cur: Cursor) -> None:
    """Skip what is left of a bad statement: up to its `;` or past its `{ ... }` block."""
    depth = 0
    while True:
        tok = cur.peek()
        if tok.kind == EOF:
            return
        if tok.kind == RBRACE:
            if depth == 0:
                return  # closes the enclosing block: leave it to that block
            depth -= 1
            cur.next()
            if depth == 0:
                if cur.peek().kind == SEMI:
                    cur.next()
                return
            continue
        cur.next()
        if tok.kind == LBRACE:
            depth += 1
        elif tok.kind == SEMI and depth == 0:
            return


Handler = Callable[[Cursor, Token], None]


def run_block(
    cur: Cursor,
    opener: Token,
    context: str,
    handlers: dict[str, Handler],
    not_supported: dict[str, str],
    errors: list[ConfigError],
) -> None:
    """Parse `{ statement... }` dispatching on each statement's first word."""
    cur.expect(LBRACE, f'"{{" to open the {context} block')
    while True:
        tok = cur.peek()
        if tok.kind == RBRACE:
            cur.next()
            return
        if tok.kind == EOF:
            errors.append(
                ConfigError(
                    opener.file,
                    opener.line,
                    opener.value,
                    f'the {context} block opened here is not closed with "}}"',
                )
            )
            raise UnexpectedEof
        try:
            dispatch(cur, tok, context, handlers, not_supported)
        except Abort as abort:
            errors.append(abort.error)
            skip_statement(cur)


def dispatch(
    cur: Cursor,
    tok: Token,
    context: str,
    handlers: dict[str, Handler],
    not_supported: dict[str, str],
) -> None:
    if tok.kind != WORD:
        raise fail(tok, f"unexpected {tok.describe()} in the {context}")
    handler = handlers.get(tok.value)
    if handler is None:
        if tok.value in not_supported:
            raise unsupported(tok, not_supported[tok.value])
        raise fail(tok, f'unknown keyword "{tok.value}" in the {context}')
    cur.next()
    handler(cur, tok)
