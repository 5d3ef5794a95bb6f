"""psk.txt as racoon reads it (ipsec-tools localconf.c getpsk(), safefile.c).

One `ID KEY` per line: the ID is the first word, the key is everything after the blank
run that follows it, up to the end of the line (inner and trailing blanks included, as
racoon keeps them). A key starting with `0x` is hexadecimal. Lines starting with `#` are
comments. The first entry for an ID wins. The file must be a regular file owned by the
user running the daemon, with no permission bits for group or others.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field

from pyike.config.errors import ConfigError


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
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
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
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise PskFileRefused(f"cannot read {path}: {exc.strerror}") from None
    return parse_psk(text, path)


def parse_psk(text: str, filename: str) -> PskTable:
    table = PskTable()
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        ident = parts[0]
        if len(parts) < 2 or not parts[1].strip():
            table.warnings.append(
                ConfigError(filename, lineno, ident, f'"{ident}" has no key; line ignored')
            )
            continue
        # the key runs from the first non-blank after the ID to the end of the line
        key_text = line[len(ident) :].lstrip(" \t")
        try:
            key = _decode_key(key_text)
        except ValueError:
            table.errors.append(
                ConfigError(filename, lineno, ident, f'the key for "{ident}" is not valid hex')
            )
            continue
        ident = _canonical_id(ident)
        if ident in table.keys:
            table.warnings.append(
                ConfigError(filename, lineno, ident, f'"{ident}" appears again; the first wins')
            )
            continue
        table.keys[ident] = key
    return table


def _decode_key(text: str) -> bytes:
    if text.startswith("0x"):
        digits = text[2:].rstrip("\r \t")
        if len(digits) % 2:
            digits = "0" + digits
        if not digits:
            raise ValueError("empty hex key")
        return bytes.fromhex(digits)
    return text.encode("utf-8", errors="surrogateescape")


def _canonical_id(ident: str) -> str:
    """Addresses in the canonical form the daemon looks them up by."""
    try:
        return str(ipaddress.ip_address(ident))
    except ValueError:
        return ident
