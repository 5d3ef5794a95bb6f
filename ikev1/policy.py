"""What the engine is told to negotiate: racoon's `remote` and `sainfo` blocks as plain data.

pyike's racoon.conf loader builds these; the engine only reads them. Defaults are racoon's
(ipsec-tools 0.8 cfparse.y / remoteconf.c / localconf.c).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

# psk.txt's `*` ID: the key of every peer that no entry names (racoon's getpsk())
PSK_WILDCARD = "*"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Identity:
    """An ISAKMP identity (RFC 2407 §4.6.2.1): kind is racoon's keyword."""

    kind: str  # "address" | "fqdn" | "user_fqdn" | "keyid"
    value: str


@dataclass(frozen=True)
class Phase1Proposal:
    """One `proposal { }` of a `remote` block."""

    encryption: str  # "aes" | "3des"
    hash: str  # "md5" | "sha1" | "sha256" | "sha384" | "sha512"
    dh_group: int  # MODP 1, 2, 5, 14-18; ECP 19-21
    key_length: int | None = None  # bits; None = the algorithm's default (aes: 128)
    auth_method: str = "pre_shared_key"
    lifetime_s: int = 28800  # racoon: lifetime time 8 hours unless the remote says otherwise


@dataclass(frozen=True)
class DpdSettings:
    """RFC 3706 as racoon configures it: delay 0 disables DPD."""

    delay: int = 0
    retry: int = 5
    maxfail: int = 5


@dataclass(frozen=True)
class RetransmitTimer:
    """racoon's `timer { counter; interval; persend; phase1; phase2; }`.

    phase1: how long an acquire waits for its ISAKMP SA before it is dropped (racoon's
    retry_checkph1); phase2: the longest a quick mode may take from its start (racoon's
    wait_ph2complete). 0 turns either off. Defaults are ipsec-tools 0.8's localconf.h.
    """

    counter: int = 5  # resends before giving up
    interval: float = 10.0  # seconds between resends
    persend: int = 1  # copies sent per (re)send
    phase1_timeout: float = 30.0
    phase2_timeout: float = 30.0
    natt_keepalive: float = 20.0


@dataclass(frozen=True)
class RemotePolicy:
    """A racoon `remote ADDRESS|anonymous { }` block."""

    remote: str  # the peer's address, or "anonymous"
    proposals: tuple[Phase1Proposal, ...]
    exchange_mode: tuple[str, ...] = ("main",)  # in preference order: "main", "aggressive"
    my_identifier: Identity | None = None  # None: our IP address
    # racoon's peers_identifier lines: with verify_identifier the peer's ID must be one of
    # them; () checks nothing
    peers_identifier: tuple[Identity, ...] = ()
    verify_identifier: bool = False
    initial_contact: bool = True
    dpd: DpdSettings = field(default_factory=DpdSettings)
    rekey: str = "on"  # "on" | "off" | "force"
    proposal_check: str = "strict"  # "obey" | "strict" | "claim" | "exact"
    nat_traversal: str = "off"  # "on" | "off" | "force"
    # racoon's ike_frag (ikev1.fragment): "on" announces IKE fragmentation as initiator,
    # "force" also fragments from the first message on; fragments are taken in any case
    ike_frag: str = "off"  # "on" | "off" | "force"
    passive: bool = False
    # racoon's support_proxy: quick mode always carries the client IDs, also where they would
    # only repeat the IKE addresses (racoon leaves them out there otherwise)
    support_proxy: bool = False
    # racoon's generate_policy, for the responder: a tunnel-mode quick mode that no policy
    # allows is taken, and the shell makes the policy pair from the negotiated selectors.
    # "require" (racoon's `on` is the same) or "unique" (the policies get a reqid of their own)
    generate_policy: str = "off"  # "off" | "require" | "unique"
    nonce_size: int = 16
    lifetime_s: int = 28800
    port: int = 500  # `remote ADDRESS [PORT]`: the peer's IKE port


@dataclass(frozen=True)
class TrafficSelector:
    """One side of a sainfo / quick-mode ID: a network, an upper-layer protocol, a port.

    protocol 0 and port 0 mean any (RFC 2407 §4.6.2).
    """

    network: IPNetwork
    protocol: int = 0
    port: int = 0


@dataclass(frozen=True)
class Phase2Route:
    """One IPsec policy of ours (an `out` policy of the SPD): traffic from `local` to `remote`
    goes in an SA of `mode`; a tunnel's end addresses are ours and the peer's, None where the
    policy names none. The responder looks a tunnel-mode quick mode's IDs up in these (racoon's
    getsp_r()); the initiator is told its selectors by the acquire."""

    local: TrafficSelector
    remote: TrafficSelector
    mode: str = "tunnel"  # "transport" | "tunnel"
    local_end: str | None = None
    remote_end: str | None = None


@dataclass(frozen=True)
class Phase2Policy:
    """A racoon `sainfo` block; local_id/remote_id None is `anonymous`."""

    local_id: TrafficSelector | None = None
    remote_id: TrafficSelector | None = None
    peer_identity: Identity | None = None  # `sainfo ... from ID`
    encryption: tuple[tuple[str, int | None], ...] = (("aes", None),)  # (name, key bits)
    authentication: tuple[str, ...] = ("hmac_sha1",)
    compression: tuple[str, ...] = ("deflate",)
    pfs_group: int | None = None
    lifetime_s: int = 3600
    lifetime_kb: int | None = None


@dataclass(frozen=True)
class EngineConfig:
    """Everything one engine needs, built once from the configuration files."""

    local_addresses: tuple[str, ...]
    remotes: tuple[RemotePolicy, ...]
    sainfos: tuple[Phase2Policy, ...]
    # psk.txt: address or identifier (or PSK_WILDCARD) -> key
    psk: Mapping[str, bytes] = field(repr=False)
    timer: RetransmitTimer = field(default_factory=RetransmitTimer)
    isakmp_port: int = 500
    natt_port: int = 4500
    pad_randomize: bool = False
    pad_strict_check: bool = False
    pad_randomize_length: bool = False  # racoon `padding { randomize_length; }`
    pad_max_length: int = 20  # `maximum_length`
    pad_exclusive_tail: bool = True  # `exclusive_tail`: last pad byte holds the pad length
    # the SPD's IPsec policies (setkey.conf): what a peer's tunnel-mode quick mode may ask for
    policies: tuple[Phase2Route, ...] = ()
