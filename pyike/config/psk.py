"""psk.txt as racoon reads it (ipsec-tools localconf.c getpsk(), str2val.c, safefile.c).

racoon reads the file with fgets() and cuts each line with isspace(), which in the "C" locale
it runs in (it never calls setlocale()) is true for space, tab, LF, VT, FF and CR only:

- a line whose first character is `#` is a comment;
- the ID is the first word, up to the first blank; the key is everything after the blank
  run that follows it, up to the end of the line (inner and trailing blanks included);
- a line with no key after the ID, or with nothing but blanks, is skipped;
- a key starting with `0x` is hexadecimal: str2val() skips blanks between the digits and
  refuses anything else, no digits at all, and an odd number of digits;
- the first entry for an ID wins, and an ID of `*` matches every peer, so the lines below it
  are never used (they are kept out, with a warning).

What racoon would read differently from what the file seems to say is an error here rather
than a silent surprise: characters that Python or an editor shows as blank but racoon does not
(NBSP, U+001C-U+001F, ...) or any other control character in an ID, control characters in a
key, a line that starts with a blank (racoon reads an empty ID there and never uses the key),
and every hex key str2val() would refuse. No message quotes a key, or a word that may be one.
The file must be a regular file owned by the user running the daemon, with no permission bits
for group or others.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import unicodedata
from dataclasses import dataclass, field

from ikev1.policy import PSK_WILDCARD
from pyike.config.errors import ConfigError

WILDCARD = PSK_WILDCARD  # racoon's getpsk(): `*` matches every peer the lines above do not name
# isspace() in the "C" locale: what racoon's getpsk() and str2val() take for blanks.
RACOON_BLANKS = frozenset(" \t\n\v\f\r")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")  # isxdigit() in the "C" locale
# Unicode categories an ID must not hold: controls, format characters (BOM, zero-width
# space), and separators that are not racoon blanks (NBSP, U+2028, ...).
_ODD_IN_ID = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp"))
_KEYWORD = "pre_shared_key"
# unicodedata has no names for control characters
_CONTROL_NAMES = {
    "\0": "NUL", "\v": "VERTICAL TAB", "\f": "FORM FEED",
    "\r": "CARRIAGE RETURN", "\x1c": "FILE SEPARATOR", "\x1d": "GROUP SEPARATOR",
    "\x1e": "RECORD SEPARATOR", "\x1f": "UNIT SEPARATOR", "\x7f": "DELETE",
}


class SecretMap(dict):
    """ID -> key; its repr never shows a key, so logging a configuration leaks nothing."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: <secret>" for k in self) + "}"

    __str__ = __repr__


class PskFileRefused(Exception):
    """The file cannot be used at all (missing, unreadable or readable by others)."""


@dataclass
class PskTable:
    keys: SecretMap = field(default_factory=SecretMap)
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)


def secret_file_problem(path: str) -> str | None:
    """Why racoon would refuse `path` as a secrets file, or None if it is safe."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        return f"cannot read {_shown(path)}: {getattr(exc, 'strerror', None) or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid != os.getuid():
        return f"{path} must be owned by uid {os.getuid()} (it is owned by uid {st.st_uid})"
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(st.st_mode)
        return (
            f"{path} has weak file permission {mode:04o}: group and others must have no "
            f"access (chmod 600)"
        )
    return None


def read_psk_file(path: str) -> PskTable:
    """Check the file like racoon does, then parse it; raises PskFileRefused."""
    problem = secret_file_problem(path)
    if problem:
        raise PskFileRefused(problem)
    try:
        # newline="": lines end at LF alone, as fgets() sees them; a CR stays in the line
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise PskFileRefused(f"cannot read {path}: {exc.strerror}") from None
    return parse_psk(text, path)


def parse_psk(text: str, filename: str) -> PskTable:
    """The keys in `text` and a FILE:LINE report for every line racoon would not read as it
    looks; never raises for any text."""
    table = PskTable()
    for lineno, line in enumerate(text.split("\n"), start=1):
        problem = _parse_line(line, table)
        if problem is not None:
            kind, keyword, message = problem
            report = ConfigError(filename, lineno, keyword, message)
            (table.errors if kind == "error" else table.warnings).append(report)
    return table


def _parse_line(line: str, table: PskTable) -> tuple[str, str, str] | None:
    """Add the line's entry to `table`; or say why not, as (error|warning, keyword, message)."""
    if line.startswith("#"):  # racoon: only a `#` in the first column starts a comment
        return None
    rest = line.lstrip("".join(RACOON_BLANKS))
    if not rest:
        return None  # nothing but blanks: racoon finds no second word and skips the line
    if len(rest) < len(line):
        if rest.startswith("#"):
            return None  # an indented comment: racoon reads an empty ID, never looked up
        return ("error", _KEYWORD, "the line starts with a blank: racoon reads an empty ID "
                "there and never uses this entry; remove the leading blanks")
    end = 0
    while end < len(line) and line[end] not in RACOON_BLANKS:
        end += 1
    ident = line[:end]
    for column, ch in enumerate(ident, start=1):
        if _odd_in_id(ch):
            return ("error", _KEYWORD, f"column {column}: {_odd_id_char(ch)}")
    key_text = line[end:].lstrip("".join(RACOON_BLANKS))
    if not key_text:
        # the lone word may be a key whose ID went missing: it is not repeated here
        return ("warning", _KEYWORD, "an ID with no key after it; line ignored, as racoon does")
    shown = _shown(ident)
    try:
        key = _decode_key(key_text)
    except ValueError as exc:
        return ("error", ident, f'the key for "{shown}" {exc}')
    canonical = _canonical_id(ident)
    if canonical in table.keys:
        return ("warning", ident, f'"{shown}" appears again; the first wins')
    if WILDCARD in table.keys:
        # racoon's getpsk() takes the first line that is `*` or the name, top down
        return ("warning", ident, f'"{shown}" is never used: the "{WILDCARD}" line above it '
                                  "matches every peer first, as racoon reads the file")
    table.keys[canonical] = key
    return None


def _decode_key(text: str) -> bytes:
    """The key's bytes as racoon takes them; ValueError says what is wrong, never what the key
    is."""
    if text.startswith("0x"):  # racoon: only a lower-case 0x means hex
        digits = []
        for ch in text[2:]:
            if ch in _HEX_DIGITS:
                digits.append(ch)
            elif ch not in RACOON_BLANKS:  # str2val() skips blanks between the digits
                raise ValueError("is not valid hex (0x, then hex digits and blanks only)")
        if not digits:
            raise ValueError('is empty: "0x" with no hex digits after it')
        if len(digits) % 2:
            # str2val() refuses an odd count; racoon would then find no key for this ID
            raise ValueError("has an odd number of hex digits")
        return bytes.fromhex("".join(digits))
    for i, ch in enumerate(text):
        if ch == "\0":
            # fgets() keeps it, but racoon measures the key as a C string, which ends there
            raise ValueError("holds a NUL byte, where racoon would cut the key short: remove it")
        if ch != "\t" and unicodedata.category(ch) == "Cc":
            if ch == "\r" and i == len(text) - 1:
                raise ValueError("ends in U+000D (CARRIAGE RETURN), as in a file with CRLF line "
                                 "ends; racoon would keep it as part of the key: convert the "
                                 "file to LF line ends")
            raise ValueError(f"holds {_describe(ch)}; racoon would keep it as part of the key: "
                             "remove it")
    return text.encode("utf-8", errors="surrogateescape")


def _odd_in_id(ch: str) -> bool:
    return unicodedata.category(ch) in _ODD_IN_ID or ch.isspace()


def _odd_id_char(ch: str) -> str:
    """Why `ch` does not belong in an ID, and what to do instead."""
    if ch == "\0":
        return "a NUL byte, where racoon stops reading the line: remove it"
    what = _describe(ch)
    if ch == "\ufeff":
        what += ", a byte-order mark"
    fix = ("separate the ID from the key with spaces or tabs"
           if ch.isspace() or unicodedata.category(ch) == "Zs" else "remove it")
    return (f"{what} in the ID: racoon ends an ID only at a space, tab, VT, FF or CR, so this "
            f"character would be part of it; {fix}")


def _describe(ch: str) -> str:
    """`U+00A0 (NO-BREAK SPACE)`: a character named so that the message stays printable."""
    name = unicodedata.name(ch, "")
    if not name and unicodedata.category(ch) == "Cc":
        name = _CONTROL_NAMES.get(ch, "control character")
    return f"U+{ord(ch):04X} ({name})" if name else f"U+{ord(ch):04X}"


def _shown(text: str) -> str:
    """`text` with anything unprintable (undecodable bytes included) escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _canonical_id(ident: str) -> str:
    """Addresses in the canonical form the daemon looks them up by."""
    try:
        return str(ipaddress.ip_address(ident))
    except ValueError:
        return ident
