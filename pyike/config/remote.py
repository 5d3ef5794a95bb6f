"""racoon's `remote` block (phase 1) and its `proposal` sub-blocks, as RemotePolicy.

Defaults are racoon's (ipsec-tools 0.8 remoteconf.c newrmconf(), oakley.c): main mode must
be named, lifetime 8 hours, DPD off (dpd_delay 0) with retry 5 / maxfail 5, rekey on,
initial_contact on, proposal_check strict, nat_traversal off, ike_frag off, nonce 16 bytes.
`ike_frag` is racoon's IKE fragmentation (ikev1.fragment: `on` announces it, `force` fragments
as initiator from the first message on); `generate_policy` (on = require, unique) lets the
engine answer a tunnel-mode quick mode that no policy of setkey.conf covers, as racoon does.
`inherit` copies the parent block; a `proposal` in the child replaces the inherited ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from ikev1.policy import DpdSettings, Identity, Phase1Proposal, RemotePolicy
from pyike.config import names
from pyike.config.cursor import Abort, Cursor, fail, parse_address, run_block, unsupported
from pyike.config.errors import ConfigError
from pyike.config.lexer import COMMA, SEMI, STRING, WORD, Token

ISAKMP_PORT = 500  # RFC 2408 §2.5.1 / IANA

_NOT_SUPPORTED = {
    "certificate_type": "certificates: pyike authenticates with pre-shared keys only",
    "peers_certfile": "certificates: pyike authenticates with pre-shared keys only",
    "ca_type": "certificates: pyike authenticates with pre-shared keys only",
    "xauth_login": "XAuth",
    "ph1id": "ph1id / remoteid matching",
}
_CERT_SWITCHES = ("verify_cert", "send_cert", "send_cr", "match_empty_cr")
# racoon.conf(5): `on` and `require` mean the same (cftoken.l: on is 1, GENERATE_POLICY_REQUIRE)
_GENERATE_LEVELS = {"on": "require", "off": "off", "require": "require", "unique": "unique"}
SCRIPT_EVENTS = ("phase1_up", "phase1_down", "phase1_dead")


@dataclass
class ProposalDraft:
    token: Token
    encryption: str | None = None
    key_length: int | None = None
    hash: str | None = None
    auth_method: str | None = None
    dh_group: int | None = None
    lifetime_s: int | None = None  # None: the remote's lifetime, resolved at the end
    unusable: bool = False  # names an algorithm pyike cannot do: left out of the proposals


@dataclass
class RemoteDraft:
    token: Token
    remote: str
    port: int
    settings: dict[str, object] = field(default_factory=dict)
    dpd: dict[str, int] = field(default_factory=dict)
    proposals: list[ProposalDraft] = field(default_factory=list)
    proposals_inherited: bool = False
    peers_identifiers: list[Identity] = field(default_factory=list)
    peers_identifiers_inherited: bool = False
    scripts: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.remote, self.port)


class RemoteParser:
    """Parses `remote` statements; keeps the drafts so that later blocks can inherit."""

    def __init__(
        self,
        errors: list[ConfigError],
        warn: Callable[[Token, str], None],
        resolve_path: Callable[[str, str], str],
        read_id_file: Callable[[Token, str], str],
    ) -> None:
        self.errors = errors
        self._warn = warn
        self._resolve = resolve_path  # (kind, name) -> absolute path
        self._read_id_file = read_id_file  # (token, path) -> str
        self.drafts: dict[tuple[str, int], RemoteDraft] = {}
        self._named: dict[str, RemoteDraft] = {}
        self.policies: list[RemotePolicy] = []
        self.scripts: dict[str, dict[str, str]] = {}
        self.first_psk_use: Token | None = None

    # -- the statement -----------------------------------------------------------------

    def statement(self, cur: Cursor, kw: Token) -> None:
        name, draft = self._index(cur, kw)
        if cur.at_word("inherit"):
            cur.next()
            parent = self._parent(cur)
            draft = _inherit(parent, draft)
            if cur.peek().kind == SEMI:  # inheritance without overrides
                cur.next()
                self._finish(draft, name)
                return
        before = len(self.errors)
        self._block(cur, draft)
        if len(self.errors) == before:  # otherwise the block's own errors say it all
            self._finish(draft, name)

    def _index(self, cur: Cursor, kw: Token) -> tuple[str | None, RemoteDraft]:
        tok = cur.peek()
        if tok.kind == STRING:
            cur.next()
            if tok.value in self._named:
                raise fail(tok, f'a remote named "{tok.value}" already exists')
            return tok.value, RemoteDraft(tok, remote="", port=ISAKMP_PORT)
        if cur.at_word("anonymous"):
            cur.next()
            return None, RemoteDraft(tok, "anonymous", cur.optional_port(ISAKMP_PORT))
        address = cur.address("the peer's address or anonymous")
        return None, RemoteDraft(tok, address, cur.optional_port(ISAKMP_PORT))

    def _parent(self, cur: Cursor) -> RemoteDraft:
        tok = cur.peek()
        if tok.kind == STRING:
            cur.next()
            parent = self._named.get(tok.value)
        else:
            if cur.at_word("anonymous"):
                cur.next()
                key = ("anonymous", cur.optional_port(ISAKMP_PORT))
            else:
                key = (cur.address("the parent remote's address"), cur.optional_port(ISAKMP_PORT))
            parent = self.drafts.get(key)
        if parent is None:
            raise fail(tok, f"inherit: no remote {tok.describe()} is defined above this line")
        return parent

    def _block(self, cur: Cursor, d: RemoteDraft) -> None:
        def flag(name: str):
            return lambda c, k: _set(d, name, c.switch(), c, k)

        handlers = {
            "remote_address": lambda c, k: self._remote_address(c, k, d),
            "exchange_mode": lambda c, k: self._exchange_mode(c, k, d),
            "doi": lambda c, k: _only(c, k, "ipsec_doi"),
            "situation": lambda c, k: _only(c, k, "identity_only"),
            "my_identifier": lambda c, k: _set(d, "my_identifier", self.identity(c, k), c, k),
            "peers_identifier": lambda c, k: self._peers_identifier(c, k, d),
            "verify_identifier": flag("verify_identifier"),
            # RFC 2409 §5: nonces of 8 to 256 bytes
            "nonce_size": lambda c, k: _set(d, "nonce_size", c.number("nonce size", 8, 256), c, k),
            "dh_group": _dh_group_here,
            "passive": flag("passive"),
            "ike_frag": lambda c, k: _set(
                d, "ike_frag", c.choice("on, off or force", ("on", "off", "force")), c, k
            ),
            "esp_frag": lambda c, k: self._ignored(c, k, "ESP fragmentation is the kernel's"),
            "script": lambda c, k: self._script(c, k, d),
            "mode_cfg": _mode_cfg,
            "weak_phase1_check": lambda c, k: self._ignored_switch(c, k),
            "generate_policy": lambda c, k: self._generate_policy(c, k, d),
            "support_proxy": flag("support_proxy"),
            "initial_contact": flag("initial_contact"),
            "nat_traversal": lambda c, k: _set(
                d, "nat_traversal", c.choice("on, off or force", ("on", "off", "force")), c, k
            ),
            "dpd": lambda c, k: self._dpd_switch(c, k, d),
            "dpd_delay": lambda c, k: _set_dpd(d, "delay", c.number("dpd_delay"), c, k),
            "dpd_retry": lambda c, k: _set_dpd(d, "retry", c.number("dpd_retry"), c, k),
            "dpd_maxfail": lambda c, k: _set_dpd(d, "maxfail", c.number("dpd_maxfail"), c, k),
            "rekey": lambda c, k: _set(
                d, "rekey", c.choice("on, off or force", ("on", "off", "force")), c, k
            ),
            "lifetime": lambda c, k: _set(d, "lifetime_s", _lifetime(c, "phase 1"), c, k),
            "proposal_check": lambda c, k: _set(
                d,
                "proposal_check",
                c.choice("a check level", ("obey", "strict", "claim", "exact")),
                c,
                k,
            ),
            "proposal": lambda c, k: self._proposal(c, k, d),
        }
        for name in _CERT_SWITCHES:
            handlers[name] = lambda c, k: self._ignored_switch(c, k)
        run_block(cur, d.token, "remote block", handlers, _NOT_SUPPORTED, self.errors)

    def addresses_by_name(self) -> dict[str, str]:
        """`remote NAME { remote_address A; }` blocks: NAME -> A (racoonctl's `es -n NAME`)."""
        return {name: d.remote for name, d in self._named.items()}

    # -- remote statements -----------------------------------------------------------

    def _remote_address(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        if d.remote:
            raise fail(kw, "remote_address: this remote already has an address")
        d.remote = cur.address("the peer's address")
        d.port = cur.optional_port(ISAKMP_PORT)
        cur.end(kw)

    def _exchange_mode(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        modes: list[str] = []
        base: Token | None = None
        while cur.peek().kind != SEMI:
            if cur.peek().kind == COMMA:  # racoon's lexer skips commas here
                cur.next()
                continue
            tok = cur.word("main, aggressive or base")
            if tok.value == "base":  # racoon's base mode: pyike has none
                base = tok
            elif tok.value not in ("main", "aggressive"):
                raise fail(tok, f"exchange_mode: expected main, aggressive or base, found "
                                f"{tok.value}")
            elif tok.value not in modes:
                modes.append(tok.value)
        if not modes:
            if base is not None:
                raise unsupported(base, "base mode: use main or aggressive")
            raise fail(kw, "exchange_mode needs main and/or aggressive")
        cur.end(kw)
        if base is not None:
            self._warn(kw, f"exchange_mode: pyike has no base mode; it is left out "
                           f"({', '.join(modes)} remain)")
        d.settings["exchange_mode"] = tuple(modes)

    def identity(self, cur: Cursor, kw: Token) -> Identity | None:
        kind = cur.word("an identifier type (address, fqdn, user_fqdn, keyid)")
        if kind.value in names.IDENTIFIER_TYPES_UNSUPPORTED:
            raise unsupported(kind, "identifier type; use address, fqdn, user_fqdn or keyid")
        if kind.value not in names.IDENTIFIER_TYPES:
            raise fail(kind, f"{kw.value}: unknown identifier type {kind.value}")
        qualifier = None
        if kind.value == "keyid" and cur.at_word("file", "tag"):
            qualifier = cur.next().value
        tok = cur.peek()
        value = None
        if tok.kind in (STRING, WORD):
            value = cur.next()
        if kind.value == "address":
            if value is None:
                return None  # our own address, the default
            return Identity("address", parse_address(value, "an IP address"))
        if value is None:
            raise fail(tok, f"{kw.value} {kind.value} needs a value")
        if kind.value == "keyid" and qualifier != "tag":
            path = self._resolve("certificate", value.value)
            return Identity("keyid", self._read_id_file(value, path))
        return Identity(kind.value, value.value)

    def _peers_identifier(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        ident = self.identity(cur, kw)
        cur.end(kw)
        if d.peers_identifiers_inherited:  # the child's own identifier replaces the parent's
            d.peers_identifiers = []
            d.peers_identifiers_inherited = False
        # `peers_identifier address;` alone: the peer's own address (filled in at the end)
        d.peers_identifiers.append(ident or Identity("address", ""))

    def _generate_policy(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        level = cur.choice("on, off, require or unique", tuple(_GENERATE_LEVELS))
        _set(d, "generate_policy", _GENERATE_LEVELS[level], cur, kw)

    def _dpd_switch(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        if not cur.switch():
            d.dpd["delay"] = 0  # no DPD (RFC 3706 §5.1 vendor ID not announced)
        cur.end(kw)

    def _script(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        path = cur.string("the script's path in quotes")
        event = cur.word("phase1_up, phase1_down or phase1_dead")
        if event.value not in SCRIPT_EVENTS:
            raise fail(event, f"script: unknown event {event.value}")
        cur.end(kw)
        d.scripts[event.value] = self._resolve("script", path.value)

    def _ignored(self, cur: Cursor, kw: Token, why: str) -> None:
        while cur.peek().kind != SEMI:
            cur.next()
        cur.end(kw)
        self._warn(kw, f'"{kw.value}" has no effect in pyike ({why})')

    def _ignored_switch(self, cur: Cursor, kw: Token) -> None:
        cur.switch()
        cur.end(kw)
        self._warn(kw, f'"{kw.value}" has no effect in pyike (pre-shared keys only)')

    def _proposal(self, cur: Cursor, kw: Token, d: RemoteDraft) -> None:
        if d.proposals_inherited:
            d.proposals = []
            d.proposals_inherited = False
        p = ProposalDraft(kw)
        handlers = {
            "encryption_algorithm": lambda c, k: self._p1_algorithm(c, k, p, "encryption"),
            "hash_algorithm": lambda c, k: self._p1_algorithm(c, k, p, "hash"),
            "authentication_method": lambda c, k: self._auth_method(c, k, p),
            "dh_group": lambda c, k: self._p1_algorithm(c, k, p, "dh_group"),
            "lifetime": lambda c, k: _set_attr(p, "lifetime_s", _lifetime(c, "phase 1"), c, k),
        }
        gss = {"gss_id": "GSSAPI", "gssapi_id": "GSSAPI"}
        run_block(cur, kw, "proposal block", handlers, gss, self.errors)
        d.proposals.append(p)

    def _p1_algorithm(self, cur: Cursor, kw: Token, p: ProposalDraft, attr: str) -> None:
        if attr == "encryption":
            alg = algorithm(cur, names.P1_CIPHERS, key_length=True)
            p.key_length = alg.key_bits
        elif attr == "hash":
            alg = algorithm(cur, names.P1_HASHES)
        else:
            alg = dh_group(cur)
        cur.end(kw)
        setattr(p, attr, int(alg.name) if attr == "dh_group" else alg.name)
        if not alg.supported:  # racoon.conf(5): list what you might accept; pyike skips it
            p.unusable = True
            left_out(self._warn, kw, [alg], "the proposals (this proposal block is dropped)")

    def _auth_method(self, cur: Cursor, kw: Token, p: ProposalDraft) -> None:
        tok = cur.peek()
        p.auth_method = cur.lookup(
            "an authentication method",
            {m: m for m in names.AUTH_METHODS},
            names.AUTH_METHODS_UNSUPPORTED,
            "authentication method; pyike supports pre_shared_key",
        )
        cur.end(kw)
        if self.first_psk_use is None:
            self.first_psk_use = tok

    # -- end of block: racoon's process_rmconf() checks ---------------------------------

    def _finish(self, d: RemoteDraft, name: str | None) -> None:
        """Record the policy, or the error; the block's tokens are consumed already."""
        try:
            self._add(d, name)
        except Abort as abort:
            self.errors.append(abort.error)

    def _add(self, d: RemoteDraft, name: str | None) -> None:
        if not d.remote:
            raise fail(d.token, f'remote "{name}": needs a remote_address')
        if d.key in self.drafts:
            raise fail(d.token, f"remote {_label(d)} is defined twice")
        if "exchange_mode" not in d.settings:
            raise fail(d.token, f"remote {_label(d)}: no exchange_mode specified")
        if not d.proposals:
            raise fail(d.token, f"remote {_label(d)}: no proposal block")
        lifetime = int(d.settings.get("lifetime_s", RemotePolicy.lifetime_s))
        built = [(p, _proposal_policy(p, lifetime)) for p in d.proposals]
        proposals = tuple(policy for p, policy in built if not p.unusable)
        if not proposals:
            lines = ", ".join(str(p.token.line) for p in d.proposals)
            raise fail(d.token, f"remote {_label(d)}: no proposal pyike can do (each of the "
                                f"proposals at line {lines} names an algorithm it lacks)")
        modes = d.settings["exchange_mode"]
        if "aggressive" in modes and len({p.dh_group for p in proposals}) > 1:
            # Aggressive mode sends KE in the first message: one group only (RFC 2409 §5.4).
            raise fail(d.token, "aggressive mode needs the same dh_group in every proposal")
        settings = dict(d.settings)
        settings["dpd"] = DpdSettings(**{**_dpd_defaults(), **d.dpd})
        if d.peers_identifiers:
            # racoon keeps every peers_identifier line and takes a peer matching any of them
            wanted = tuple(_peer_identity(i, d.remote) for i in d.peers_identifiers)
            # for an anonymous remote `address;` alone is any address: nothing left to check
            settings["peers_identifier"] = () if None in wanted else tuple(dict.fromkeys(wanted))
        policy = RemotePolicy(remote=d.remote, port=d.port, proposals=proposals, **settings)
        self.drafts[d.key] = d
        if name is not None:
            self._named[name] = d
        self.policies.append(policy)
        if d.scripts:
            self.scripts[_label(d)] = dict(d.scripts)


# -- helpers shared with sainfo ----------------------------------------------------------


@dataclass(frozen=True)
class Algorithm:
    """One algorithm as written: racoon's word, pyike's canonical name, whether pyike can do it."""

    token: Token
    name: str
    key_bits: int | None
    supported: bool


def algorithm(cur: Cursor, klass: names.AlgorithmClass, key_length: bool = False) -> Algorithm:
    """A name of racoon's `klass`, with a key length after it where `key_length` allows one.

    A name racoon does not take here is an error (racoon: "algorithm mismatched"); one racoon
    takes and pyike cannot do comes back unsupported, for the caller to leave out.
    """
    tok = cur.word(f"an {klass.what}")
    name = klass.racoon.get(tok.value)
    if name is None:
        raise fail(tok, f"{tok.value} is not an {klass.what} (pyike can do {klass.usable})")
    supported = name in klass.supported
    bits = None
    if key_length and cur.at_word() and cur.peek().value.isdigit():
        size = cur.next()
        bits = int(size.value)
        allowed = klass.key_bits.get(name)
        if supported and allowed is None:
            raise fail(size, f"{tok.value} takes no key length")
        if supported and bits not in allowed:
            raise fail(size, f"{tok.value}: key length must be one of {allowed}")
    return Algorithm(tok, name, bits, supported)


def dh_group(cur: Cursor) -> Algorithm:
    """`dh_group` / `pfs_group`: racoon's group names and numbers, and the engine's groups."""
    tok = cur.word("a DH group")
    number = int(tok.value) if tok.value.isdigit() else names.DH_GROUP_NAMES.get(tok.value, -1)
    if number not in names.DH_GROUPS_RACOON | names.DH_GROUPS_SUPPORTED:
        usable = ", ".join(str(g) for g in sorted(names.DH_GROUPS_SUPPORTED))
        raise fail(tok, f"{tok.value} is not a DH group (pyike can do {usable}, or modpNNNN)")
    return Algorithm(tok, str(number), None, number in names.DH_GROUPS_SUPPORTED)


def left_out(warn: Callable[[Token, str], None], kw: Token, dropped: list[Algorithm],
             where: str) -> None:
    """The one warning for the algorithms of a statement that pyike cannot do."""
    if dropped:
        words = ", ".join(a.token.value for a in dropped)
        warn(kw, f"{kw.value}: pyike cannot do {words}; left out of {where}")


def _lifetime(cur: Cursor, phase: str) -> int:
    kind = cur.choice("time or byte", ("time", "byte"))
    if kind == "byte":
        raise fail(
            cur.peek(), f"byte lifetimes are not supported in {phase} (racoon too)", keyword="byte"
        )
    return cur.seconds("the lifetime")


def _proposal_policy(p: ProposalDraft, remote_lifetime: int) -> Phase1Proposal:
    for attr, what in (
        ("encryption", "encryption_algorithm"),
        ("hash", "hash_algorithm"),
        ("auth_method", "authentication_method"),
        ("dh_group", "dh_group"),
    ):
        if getattr(p, attr) is None:
            raise fail(p.token, f"proposal: {what} is required")
    return Phase1Proposal(
        encryption=p.encryption,
        hash=p.hash,
        dh_group=p.dh_group,
        key_length=p.key_length,
        auth_method=p.auth_method,
        lifetime_s=p.lifetime_s if p.lifetime_s is not None else remote_lifetime,
    )


def _peer_identity(ident: Identity, remote: str) -> Identity | None:
    """`peers_identifier address;` alone is the peer's own address; None: any address."""
    if ident != Identity("address", ""):
        return ident
    return None if remote == "anonymous" else Identity("address", remote)


def _inherit(parent: RemoteDraft, child: RemoteDraft) -> RemoteDraft:
    new = copy.deepcopy(parent)
    new.token, new.remote, new.port = child.token, child.remote, child.port
    new.proposals_inherited = new.peers_identifiers_inherited = True
    return new


def _dpd_defaults() -> dict[str, int]:
    base = DpdSettings()
    return {"delay": base.delay, "retry": base.retry, "maxfail": base.maxfail}


def _label(d: RemoteDraft) -> str:
    return d.remote if d.port == ISAKMP_PORT else f"{d.remote}[{d.port}]"


def _set(d: RemoteDraft, name: str, value: object, cur: Cursor, kw: Token) -> None:
    cur.end(kw)
    d.settings[name] = value


def _set_dpd(d: RemoteDraft, name: str, value: int, cur: Cursor, kw: Token) -> None:
    cur.end(kw)
    d.dpd[name] = value


def _set_attr(obj: object, name: str, value: object, cur: Cursor, kw: Token) -> None:
    cur.end(kw)
    setattr(obj, name, value)


def _only(cur: Cursor, kw: Token, allowed: str) -> None:
    tok = cur.word(allowed)
    if tok.value != allowed:
        raise unsupported(tok, f"{kw.value}: pyike supports {allowed} only")
    cur.end(kw)


def _dh_group_here(cur: Cursor, kw: Token) -> None:
    raise fail(kw, "dh_group belongs inside a proposal block")


def _mode_cfg(cur: Cursor, kw: Token) -> None:
    if cur.switch():
        raise unsupported(kw, "mode config")
    cur.end(kw)
