"""racoon.conf(5) as ipsec-tools 0.8 reads it, plus pyike's `setkey`, `gre` and `tunnel_device`
statements.

The parser walks every file (`include` pulls others in, globbed, relative to
`path include`), records every error with its file and line and carries on, so that
`pyike -t` lists all mistakes at once. Relative paths in `path` and `setkey` statements are
taken from the main file's directory (racoon takes them from its working directory, which a
daemon does not keep).
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
from dataclasses import dataclass, field

from ikev1.policy import Phase2Policy, RemotePolicy
from pyike.config import names
from pyike.config.cursor import (
    Abort,
    Cursor,
    UnexpectedEof,
    dispatch,
    fail,
    run_block,
    skip_statement,
)
from pyike.config.errors import ConfigError
from pyike.config.lexer import EOF, LBRACE, PORT, RBRACE, STRING, WORD, Token, tokenize
from pyike.config.model import (
    DEFAULT_ADMINSOCK,
    DEFAULT_ADMINSOCK_MODE,
    GreTunnel,
    TunnelDevice,
)
from pyike.config.remote import RemoteParser
from pyike.config.sainfo import SainfoParser

MAX_INCLUDE_DEPTH = 10  # racoon's cftoken.l: includes nest at most this deep
# racoon has no bound on the number of files read. Without one, includes that repeat (each
# file including the next one twice, ten levels deep) or a glob that matches the file that
# holds it make the work grow exponentially; no real configuration comes near this many.
MAX_FILES_READ = 256
ISAKMP_PORT = 500
NATT_PORT = 4500  # RFC 3947 §4
PATH_TYPES = ("include", "pre_shared_key", "certificate", "script", "backupsa", "pidfile")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ - 1
MTU_MIN = 68  # RFC 791: every link carries 68 octets
MTU_MAX = 65535  # RFC 791: the total length is a 16-bit field

_TOP_NOT_SUPPORTED = {
    "mode_cfg": "mode config",
    "ldapcfg": "LDAP",
    "radiuscfg": "RADIUS",
    "gss_id_enc": "GSSAPI",
}


@dataclass
class ParsedConfig:
    """Everything read from racoon.conf and its includes, before psk.txt and setkey files."""

    main_file: str
    sources: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    path_tokens: dict[str, Token] = field(default_factory=dict)
    listen_isakmp: list[tuple[str, int]] = field(default_factory=list)
    listen_natt: list[tuple[str, int]] = field(default_factory=list)
    adminsock: str | None = DEFAULT_ADMINSOCK
    adminsock_mode: int = DEFAULT_ADMINSOCK_MODE
    adminsock_owner: str | None = None
    adminsock_group: str | None = None
    # racoon's localconf.h defaults (ipsec-tools 0.8)
    timer: dict[str, float] = field(
        default_factory=lambda: {
            "counter": 5,
            "interval": 10,
            "persend": 1,
            "phase1_timeout": 30,
            "phase2_timeout": 30,
            "natt_keepalive": 20,
        }
    )
    padding: dict[str, object] = field(
        default_factory=lambda: {
            "pad_randomize": True,
            "pad_randomize_length": False,
            "pad_max_length": 20,
            "pad_strict_check": False,
            "pad_exclusive_tail": True,
        }
    )
    log_level: str = "notify"
    remotes: list[RemotePolicy] = field(default_factory=list)
    scripts: dict[str, dict[str, str]] = field(default_factory=dict)
    remote_names: dict[str, str] = field(default_factory=dict)  # `remote NAME`: its address
    sainfos: list[Phase2Policy] = field(default_factory=list)
    setkey_files: list[tuple[str, Token]] = field(default_factory=list)
    gre_tunnels: list[GreTunnel] = field(default_factory=list)
    tunnel_device: TunnelDevice | None = None
    psk_first_use: Token | None = None
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)


def parse_config(path: str) -> ParsedConfig:
    """Read racoon.conf at `path` and everything it includes."""
    return _Parser(path).run()


class _Parser:
    def __init__(self, path: str) -> None:
        self.out = ParsedConfig(main_file=path)
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.errors = self.out.errors
        self.remotes = RemoteParser(self.errors, self.warn, self.resolve, self._read_id_file)
        self.sainfos = SainfoParser(self.errors, self.remotes.identity, self.warn)
        # (real path, path) of each file being read, the main file first
        self._reading: list[tuple[str, str]] = []
        self._files_read = 0
        self._include_errors_at: set[tuple[str, int]] = set()
        self._files_bound_said = False
        self._tunnel_device_at: Token | None = None  # the name of the `tunnel_device` read
        self._handlers = {
            "privsep": self._privsep,
            "path": self._path,
            "include": self._include,
            "log": self._log,
            "padding": self._padding,
            "listen": self._listen,
            "timer": self._timer,
            "remote": self.remotes.statement,
            "sainfo": self.sainfos.statement,
            "setkey": self._setkey,
            "gre": self._gre,
            "tunnel_device": self._tunnel_device,
            "pfkey_buffer": self._pfkey_buffer,
            "complex_bundle": self._complex_bundle,
        }

    def run(self) -> ParsedConfig:
        self.parse_file(self.out.main_file, None)
        # a file read twice (a repeated include) reports its mistakes once
        self.errors[:] = dict.fromkeys(self.errors)
        self.out.remotes = self.remotes.policies
        self.out.scripts = self.remotes.scripts
        self.out.remote_names = self.remotes.addresses_by_name()
        self.out.sainfos = self.sainfos.policies
        self.out.psk_first_use = self.remotes.first_psk_use
        self._check_device_names()
        return self.out

    def warn(self, tok: Token, message: str) -> None:
        # kept in DaemonConfig.warnings; the daemon logs them once it has set up logging
        self.out.warnings.append(ConfigError(tok.file, tok.line, tok.value, message))

    def resolve(self, kind: str, name: str) -> str:
        """A file named in the configuration: absolute, or under `path KIND`."""
        name = os.path.expanduser(name)
        if os.path.isabs(name):
            return name
        return os.path.join(self.out.paths.get(kind, self.base_dir), name)

    def parse_file(self, path: str, via: Token | None) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            where = (via.file, via.line) if via else (path, 0)
            reason = getattr(exc, "strerror", None) or str(exc)
            self.errors.append(ConfigError(*where, "include", f"cannot read {path}: {reason}"))
            return
        self._files_read += 1
        if "\0" in text:
            # racoon's flex scanner would end a word or path at it; pyike reads none of it
            line = text.count("\n", 0, text.index("\0")) + 1
            self.errors.append(ConfigError(
                path, line, "\\0", "a NUL byte: a configuration file is text, so nothing in "
                "this file is used"))
            return
        self.out.sources.append(path)
        tokens, lex_errors = tokenize(text, path)
        self.errors.extend(lex_errors)
        cur = Cursor(tokens)
        self._reading.append((os.path.realpath(path), path))
        try:
            while cur.peek().kind != EOF:
                tok = cur.peek()
                try:
                    dispatch(cur, tok, "configuration", self._handlers, _TOP_NOT_SUPPORTED)
                except Abort as abort:
                    self.errors.append(abort.error)
                    skip_statement(cur)
                    if cur.peek() is tok and tok.kind == RBRACE:
                        cur.next()  # a stray "}" at the top level
        except UnexpectedEof:
            pass
        finally:
            self._reading.pop()

    # -- top-level statements ------------------------------------------------------------

    def _privsep(self, cur: Cursor, kw: Token) -> None:
        def value(c: Cursor, k: Token) -> None:
            tok = c.next()
            if tok.kind not in (STRING, WORD):
                raise fail(tok, f"{k.value}: expected a name in quotes or a number")
            c.end(k)

        handlers = {"user": value, "group": value, "chroot": value}
        run_block(cur, kw, "privsep block", handlers, {}, self.errors)
        self.warn(kw, "privsep: pyike neither chroots nor changes user; the block is ignored")

    def _path(self, cur: Cursor, kw: Token) -> None:
        kind = cur.word("a path type")
        if kind.value not in PATH_TYPES:
            raise fail(kind, f"path: unknown path type {kind.value}")
        value = cur.string("the path in quotes")
        cur.end(kw)
        name = os.path.expanduser(value.value)
        if kind.value != "pidfile":
            name = os.path.join(self.base_dir, name)
        self.out.paths[kind.value] = name
        self.out.path_tokens[kind.value] = kind
        if kind.value == "backupsa":
            self.warn(kind, "path backupsa: pyike does not save or restore SAs")

    def _include(self, cur: Cursor, kw: Token) -> None:
        name = cur.string("the file name in quotes")
        pattern = self.resolve("include", name.value)
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise fail(name, f'include "{name.value}": no file matches {pattern}', "include")
        cur.end(kw)
        if len(self._reading) > MAX_INCLUDE_DEPTH:
            chain = " -> ".join(p for _, p in self._reading)
            self._include_problem(
                kw, f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels ({chain})")
            return
        for match in matches:
            real = os.path.realpath(match)
            open_files = [r for r, _ in self._reading]
            if real in open_files:
                cycle = [p for _, p in self._reading[open_files.index(real) :]] + [match]
                self._include_problem(kw, f'include "{name.value}": an include cycle '
                                      f"({' -> '.join(cycle)}); {match} is not read again")
                continue
            if self._files_read >= MAX_FILES_READ:
                if not self._files_bound_said:  # said once, where it first happens
                    self._files_bound_said = True
                    self.errors.append(ConfigError(
                        kw.file, kw.line, "include", f'include "{name.value}": more than '
                        f"{MAX_FILES_READ} files read through includes, so {match} and the "
                        "rest are not read (are the same files included more than once?)"))
                return
            self.parse_file(match, kw)

    def _include_problem(self, kw: Token, message: str) -> None:
        """One error per include statement: a file read many times (through a cycle or a glob
        that matches itself) would otherwise repeat it once per path that reaches it."""
        if (kw.file, kw.line) not in self._include_errors_at:
            self._include_errors_at.add((kw.file, kw.line))
            self.errors.append(ConfigError(kw.file, kw.line, "include", message))

    def _log(self, cur: Cursor, kw: Token) -> None:
        level = cur.choice("a log level", names.LOG_LEVELS)
        cur.end(kw)
        self.out.log_level = level

    def _padding(self, cur: Cursor, kw: Token) -> None:
        pad = self.out.padding

        def switch(name: str):
            return lambda c, k: _store(pad, name, c.switch(), c, k)

        handlers = {
            "randomize": switch("pad_randomize"),
            "randomize_length": switch("pad_randomize_length"),
            "maximum_length": lambda c, k: _store(
                pad, "pad_max_length", c.number("maximum_length", 1, 255), c, k
            ),
            "strict_check": switch("pad_strict_check"),
            "exclusive_tail": switch("pad_exclusive_tail"),
        }
        run_block(cur, kw, "padding block", handlers, {}, self.errors)

    def _listen(self, cur: Cursor, kw: Token) -> None:
        out = self.out

        def isakmp(c: Cursor, k: Token) -> None:
            address = c.address("an IP address")
            port = c.optional_port(ISAKMP_PORT)
            c.end(k)
            out.listen_isakmp.append((address, port))

        def isakmp_natt(c: Cursor, k: Token) -> None:
            address = c.address("an IP address")
            given = c.peek().kind == PORT
            # racoon's ike_port: no port is ISAKMP_PORT for isakmp_natt too (cfparse.y)
            port = c.optional_port(ISAKMP_PORT)
            c.end(k)
            if not given:
                self.warn(k, f"isakmp_natt {address} has no port, so it listens on "
                             f"{ISAKMP_PORT} as racoon does, not on the NAT-T port; write "
                             f"{address} [{NATT_PORT}] for NAT traversal")
            out.listen_natt.append((address, port))

        def strict_address(c: Cursor, k: Token) -> None:
            # racoon then fails when a listen address cannot be bound, which pyike always does
            c.end(k)

        handlers = {
            "isakmp": isakmp,
            "isakmp_natt": isakmp_natt,
            "adminsock": self._adminsock,
            "strict_address": strict_address,
        }
        run_block(cur, kw, "listen block", handlers, {"admin": "the TCP admin port"}, self.errors)

    def _adminsock(self, cur: Cursor, kw: Token) -> None:
        if cur.at_word("disabled"):
            cur.next()
            cur.end(kw)
            self.out.adminsock = None
            return
        path = cur.string('the socket path in quotes, or "disabled"')
        owner = group = None
        mode = DEFAULT_ADMINSOCK_MODE
        if cur.peek().kind == STRING:  # racoon's `adminsock PATH OWNER GROUP MODE`
            owner = _socket_owner(cur.next(), "owner")
            group = _socket_owner(cur.string("the group in quotes"), "group")
            mode = _octal_mode(cur.word("the mode (e.g. 0660)"))
        cur.end(kw)
        self.out.adminsock = self.resolve("adminsock", path.value)
        self.out.adminsock_owner, self.out.adminsock_group = owner, group
        self.out.adminsock_mode = mode

    def _timer(self, cur: Cursor, kw: Token) -> None:
        timer = self.out.timer

        def count(name: str, low: int):
            return lambda c, k: _store(timer, name, c.number(k.value, low), c, k)

        def seconds(name: str):
            return lambda c, k: _store(timer, name, c.seconds(k.value), c, k)

        handlers = {
            "counter": count("counter", 0),
            "interval": seconds("interval"),
            "persend": count("persend", 1),
            "phase1": seconds("phase1_timeout"),
            "phase2": seconds("phase2_timeout"),
            "natt_keepalive": seconds("natt_keepalive"),
        }
        run_block(cur, kw, "timer block", handlers, {}, self.errors)

    def _setkey(self, cur: Cursor, kw: Token) -> None:
        name = cur.string("the setkey file name in quotes")
        cur.end(kw)
        path = os.path.join(self.base_dir, os.path.expanduser(name.value))
        self.out.setkey_files.append((path, name))

    def _pfkey_buffer(self, cur: Cursor, kw: Token) -> None:
        cur.number("the buffer size")
        cur.end(kw)
        self.warn(kw, "pfkey_buffer has no effect: pyike keeps its SAs itself")

    def _complex_bundle(self, cur: Cursor, kw: Token) -> None:
        cur.switch()
        cur.end(kw)
        self.warn(kw, "complex_bundle has no effect: pyike proposes ESP alone")

    def _gre(self, cur: Cursor, kw: Token) -> None:
        name = _device_name(cur, kw)
        fields: dict[str, object] = {"name": name.value}

        def addr(key: str):
            def handler(c: Cursor, k: Token) -> None:
                value = c.address("an IP address")
                c.end(k)
                fields[key] = (value, k)

            return handler

        def address(c: Cursor, k: Token) -> None:
            own = c.address("the tunnel's own address")
            peer_kw = c.word('"peer"')
            if peer_kw.value != "peer":
                raise fail(peer_kw, f'gre address: expected "peer", found {peer_kw.value}')
            peer = c.address("the far end's address")
            c.end(k)
            fields["address"], fields["peer"] = (own, k), (peer, k)

        def mtu(c: Cursor, k: Token) -> None:
            fields["mtu"] = _mtu(c, k)

        def key(c: Cursor, k: Token) -> None:
            fields["key"] = _gre_key(c.word("the GRE key (a number or dotted quad)"))
            c.end(k)

        handlers = {
            "local": addr("local"),
            "remote": addr("remote"),
            "address": address,
            "mtu": mtu,
            "key": key,
        }
        before = len(self.errors)
        run_block(cur, kw, "gre block", handlers, {}, self.errors)
        if len(self.errors) > before:
            return
        try:
            self.out.gre_tunnels.append(self._gre_tunnel(name, fields))
        except Abort as abort:
            self.errors.append(abort.error)

    def _gre_tunnel(self, name: Token, fields: dict[str, object]) -> GreTunnel:
        for need in ("local", "remote", "address"):
            if need not in fields:
                raise fail(name, f'gre "{name.value}": missing the "{need}" statement', "gre")
        if any(t.name == name.value for t in self.out.gre_tunnels):
            raise fail(name, f'gre "{name.value}" is defined twice', "gre")
        outer = [fields["local"], fields["remote"]]
        inner = [fields["address"], fields["peer"]]
        for pair in (outer, inner):
            versions = {ipaddress.ip_address(value).version for value, _ in pair}
            if len(versions) > 1:
                tok = pair[1][1]
                raise fail(tok, f"gre: {pair[0][0]} and {pair[1][0]} are of different families")
        return GreTunnel(
            name=name.value,
            local=outer[0][0],
            remote=outer[1][0],
            address=inner[0][0],
            peer=inner[1][0],
            mtu=fields.get("mtu"),
            key=fields.get("key"),
        )

    def _tunnel_device(self, cur: Cursor, kw: Token) -> None:
        """`tunnel_device "NAME";` or `tunnel_device "NAME" { mtu N; }`: one at most."""
        name = _device_name(cur, kw)
        fields: dict[str, int] = {}
        if cur.peek().kind == LBRACE:
            def mtu(c: Cursor, k: Token) -> None:
                fields["mtu"] = _mtu(c, k)

            before = len(self.errors)
            run_block(cur, kw, "tunnel_device block", {"mtu": mtu}, {}, self.errors)
            if len(self.errors) > before:
                return
        else:
            cur.end(kw)
        first = self._tunnel_device_at
        if first is not None:
            raise fail(kw, f"tunnel_device is defined twice (first at {first.file}:{first.line})")
        self._tunnel_device_at = name
        self.out.tunnel_device = TunnelDevice(name.value, fields.get("mtu"))

    def _check_device_names(self) -> None:
        """The tunnel_device and a gre block would both make one TUN device of that name."""
        at = self._tunnel_device_at
        if at is not None and any(t.name == at.value for t in self.out.gre_tunnels):
            self.errors.append(ConfigError(
                at.file, at.line, "tunnel_device",
                f'tunnel_device "{at.value}": a gre block names the same device'))

    def _read_id_file(self, tok: Token, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().rstrip("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(tok, f"cannot read the key id file {path}: {exc}") from None
        self.out.sources.append(path)
        return value


def _device_name(cur: Cursor, kw: Token) -> Token:
    """The TUN device name in quotes after `gre` or `tunnel_device`, an interface name."""
    name = cur.string('the TUN device name in quotes (e.g. "tun0")')
    if not _IFNAME_RE.match(name.value):
        raise fail(name, f'{kw.value}: "{name.value}" is not a valid interface name', kw.value)
    return name


def _mtu(cur: Cursor, kw: Token) -> int:
    """`mtu N;` of a TUN device (a `gre` or `tunnel_device` block)."""
    value = cur.number("the MTU", MTU_MIN, MTU_MAX)
    cur.end(kw)
    return value


def _store(target: dict, name: str, value: object, cur: Cursor, kw: Token) -> None:
    cur.end(kw)
    target[name] = value


def _octal_mode(tok: Token) -> int:
    """racoon reads the adminsock mode as a decimal number whose digits are meant as octal
    (660 and 0660 are both 0660); a digit above 7 or a number above 777 it refuses. (racoon
    turns an execute bit into a write bit there; pyike sets the mode as written.)"""
    if not (tok.value.isdigit() and int(tok.value) <= 777 and set(tok.value) <= set("01234567")):
        raise fail(tok, f"adminsock mode {tok.value} is not a mode like 600, 660 or 0660")
    return int(tok.value, 8)


def _socket_owner(tok: Token, kind: str) -> str:
    """racoon looks the adminsock's owner and group up as it reads them (a number is taken as
    it is): an unknown name is an error here, not at start."""
    from pyike.admin import group_id, user_id

    try:
        (user_id if kind == "owner" else group_id)(tok.value)
    except KeyError:
        raise fail(tok, f'adminsock: {"user" if kind == "owner" else "group"} '
                        f'"{tok.value}" does not exist', "adminsock") from None
    return tok.value


def _gre_key(tok: Token) -> int:
    """A 32-bit GRE key (RFC 2890 §2.1), as a number or in dotted-quad form like setkey."""
    if tok.value.isdigit() and int(tok.value) < 2**32:
        return int(tok.value)
    try:
        return int(ipaddress.IPv4Address(tok.value))
    except ValueError:
        raise fail(tok, f"gre key {tok.value} is not a 32-bit number or dotted quad") from None
