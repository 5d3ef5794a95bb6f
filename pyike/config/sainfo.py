"""racoon's `sainfo` block (phase 2) as Phase2Policy.

`sainfo SRC DST [from IDTYPE ID] { ... }` where each side is `anonymous` or
`address|subnet ADDR[/prefix] [port] PROTO` (cfparse.y sainfo_id). The source side is ours.
racoon requires encryption, authentication and compression algorithms; lifetime defaults to
one hour (RFC 2407 §4.5 default, racoon's newsainfo()).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from ikev1.policy import Identity, Phase2Policy, TrafficSelector
from pyike.config import names
from pyike.config.cursor import Abort, Cursor, fail, parse_address, run_block, unsupported
from pyike.config.errors import ConfigError
from pyike.config.lexer import COMMA, LBRACE, PORT, PREFIX, STRING, WORD, Token
from pyike.config.remote import Algorithm, algorithm, dh_group, left_out

_NOT_SUPPORTED = {
    "remoteid": "ph1id / remoteid matching",
    "my_identifier": "per-sainfo identifiers",
}
_ANONYMOUS = None


class SainfoParser:
    def __init__(
        self,
        errors: list[ConfigError],
        identity: Callable[[Cursor, Token], Identity | None],
        warn: Callable[[Token, str], None],
    ):
        self.errors = errors
        self._warn = warn
        self._identity = identity  # reads `IDTYPE [ID]` like my_identifier does
        self.policies: list[Phase2Policy] = []
        self._seen: set[tuple[object, object, object]] = set()

    def statement(self, cur: Cursor, kw: Token) -> None:
        local = self._side(cur)
        remote = _ANONYMOUS
        if local is not _ANONYMOUS or not _at_params(cur):
            remote = self._side(cur)
        peer_identity = None
        if cur.at_word("from"):
            from_kw = cur.next()
            peer_identity = self._identity(cur, from_kw)
            if peer_identity is None:
                raise fail(from_kw, "sainfo ... from address needs the peer's address")
        if cur.at_word("group"):
            raise unsupported(cur.peek(), "XAuth groups")
        fields: dict[str, object] = {}
        handlers = {
            "pfs_group": lambda c, k: _set(fields, "pfs_group", _pfs_group(c), c, k),
            "lifetime": lambda c, k: _lifetime(c, k, fields),
            "encryption_algorithm": lambda c, k: self._algorithms(c, k, fields, "encryption"),
            "authentication_algorithm": lambda c, k: self._algorithms(
                c, k, fields, "authentication"
            ),
            "compression_algorithm": lambda c, k: self._algorithms(c, k, fields, "compression"),
        }
        before = len(self.errors)
        run_block(cur, kw, "sainfo block", handlers, _NOT_SUPPORTED, self.errors)
        if len(self.errors) > before:  # the block's own errors say it all
            return
        try:
            self._add(kw, local, remote, peer_identity, fields)
        except Abort as abort:
            self.errors.append(abort.error)

    def _add(
        self,
        kw: Token,
        local: TrafficSelector | None,
        remote: TrafficSelector | None,
        peer_identity: Identity | None,
        fields: dict[str, object],
    ) -> None:
        label = _label(local, remote)
        for need in ("encryption", "authentication", "compression"):
            if need not in fields:
                raise fail(kw, f"sainfo {label}: no {need}_algorithm", keyword="sainfo")
        key = (local, remote, peer_identity)
        if key in self._seen and local is not _ANONYMOUS:
            raise fail(kw, f"sainfo {label} is defined twice", keyword="sainfo")
        self._seen.add(key)
        self.policies.append(
            Phase2Policy(local_id=local, remote_id=remote, peer_identity=peer_identity, **fields)
        )

    def _algorithms(
        self, cur: Cursor, kw: Token, fields: dict[str, object], klass: str
    ) -> None:
        """A comma-separated list; the names pyike cannot do are dropped with one warning."""
        found: list[Algorithm] = []
        while True:
            found.append(algorithm(cur, _CLASSES[klass], key_length=klass == "encryption"))
            if cur.peek().kind != COMMA:
                break
            cur.next()
        usable = [a for a in found if a.supported]
        if not usable:  # raised before the ";", which the error recovery skips to
            words = ", ".join(a.token.value for a in found)
            raise fail(kw, f"{kw.value}: pyike can do none of {words} "
                           f"(it can do {_CLASSES[klass].usable})")
        cur.end(kw)
        left_out(self._warn, kw, [a for a in found if not a.supported], "the proposals")
        if klass == "encryption":
            fields[klass] = tuple(dict.fromkeys((a.name, a.key_bits) for a in usable))
        else:
            fields[klass] = tuple(dict.fromkeys(a.name for a in usable))

    def _side(self, cur: Cursor) -> TrafficSelector | None:
        tok = cur.peek()
        if cur.at_word("anonymous"):
            cur.next()
            return _ANONYMOUS
        if cur.at_word("clientaddr"):
            raise unsupported(tok, "mode config client addresses")
        if not cur.at_word("address", "subnet"):
            if tok.kind == WORD and tok.value in names.IDENTIFIER_TYPES | {"asn1dn"}:
                raise unsupported(tok, "sainfo IDs other than address/subnet")
            found = tok.describe()
            raise fail(tok, f"sainfo: expected anonymous, address or subnet, found {found}")
        cur.next()
        return _selector(cur)


def _selector(cur: Cursor) -> TrafficSelector:
    tok = cur.peek()
    if tok.kind == STRING:
        raise unsupported(tok, "sainfo IDs other than address/subnet")
    addr_tok = cur.word("an address")
    if "-" in addr_tok.value:
        raise unsupported(addr_tok, "address ranges in sainfo")
    address = ipaddress.ip_address(parse_address(addr_tok, "an address"))
    prefix = address.max_prefixlen
    if cur.peek().kind == PREFIX:
        ptok = cur.next()
        prefix = int(ptok.value)
        if prefix > address.max_prefixlen:
            raise fail(ptok, f"prefix /{prefix} is too long for {address}")
    port = 0
    if cur.peek().kind == PORT:
        ptok = cur.next()
        port = 0 if ptok.value == "any" else int(ptok.value)
        if port > 65535:
            raise fail(ptok, f"port {port} is out of range 0..65535")
    ptok = cur.word("an upper-layer protocol (any, gre, tcp, udp, icmp, ... or a number)")
    if ptok.value.isdigit():
        proto = int(ptok.value)
        if proto > 255:
            raise fail(ptok, f"protocol {proto} is out of range 0..255")
    elif ptok.value in names.UL_PROTOCOLS:
        proto = names.UL_PROTOCOLS[ptok.value]
    else:
        raise fail(ptok, f"unknown upper-layer protocol {ptok.value}")
    if proto in (1, 58) and port:
        raise fail(ptok, 'port number must be "any" for icmp')
    if (proto == 1 and address.version == 6) or (proto == 58 and address.version == 4):
        raise fail(ptok, f"{ptok.value} does not match the address family of {address}")
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return TrafficSelector(network=network, protocol=proto, port=port)


def _at_params(cur: Cursor) -> bool:
    return cur.peek().kind == LBRACE or cur.at_word("from", "group")


def _lifetime(cur: Cursor, kw: Token, fields: dict[str, object]) -> None:
    kind = cur.choice("time or byte", ("time", "byte"))
    if kind == "time":
        fields["lifetime_s"] = cur.seconds("the lifetime")
    else:
        count = cur.byte_count("the lifetime")
        if count < 1024:
            # The SA Life Duration in kilobytes (RFC 2407 §4.5): at least one.
            raise fail(kw, "a byte lifetime must be at least 1024 bytes (1 KB)")
        fields["lifetime_kb"] = count // 1024
    cur.end(kw)


_CLASSES = {
    "encryption": names.ESP_CIPHERS,
    "authentication": names.ESP_AUTHS,
    "compression": names.COMPRESSION,
}


def _pfs_group(cur: Cursor) -> int:
    group = dh_group(cur)
    if not group.supported:
        # Leaving PFS out would weaken the SA without a word: nothing usable remains.
        raise fail(group.token, f"pfs_group {group.token.value}: pyike cannot do this group")
    return int(group.name)


def _set(fields: dict[str, object], name: str, value: object, cur: Cursor, kw: Token) -> None:
    cur.end(kw)
    fields[name] = value


def _label(local: TrafficSelector | None, remote: TrafficSelector | None) -> str:
    def side(sel: TrafficSelector | None) -> str:
        return "anonymous" if sel is None else f"{sel.network}[{sel.port}] {sel.protocol}"

    return f"{side(local)} {side(remote)}"
