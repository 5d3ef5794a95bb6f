"""Events the engine hands to its I/O shell (next_event()): small, frozen, plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Phase1Up:
    local: tuple[str, int]
    peer: tuple[str, int]
    icookie: bytes
    rcookie: bytes
    initiator: bool
    exchange: str  # "main" | "aggressive"
    encryption: str  # e.g. "aes-128"
    hash: str
    dh_group: int
    lifetime_s: int
    peer_identity: str


@dataclass(frozen=True)
class Phase1Down:
    peer: tuple[str, int]
    icookie: bytes
    rcookie: bytes
    reason: str  # "expired" | "deleted" | "peer-deleted" | "initial-contact" | "dead"


@dataclass(frozen=True)
class EspKeys:
    """One direction of an ESP SA, as the data plane installs it."""

    spi: int
    src: str
    dst: str
    enc_alg: str  # "aes-cbc" | "3des-cbc"
    enc_key: bytes = field(repr=False)  # keys never reach a log through repr()
    # "hmac-sha1" | "hmac-sha256" (128-bit ICV) | "hmac-sha256-96" | "hmac-sha384" |
    # "hmac-sha512" | "hmac-md5"
    auth_alg: str
    auth_key: bytes = field(repr=False)


@dataclass(frozen=True)
class Phase2Up:
    peer: tuple[str, int]
    local: tuple[str, int]
    inbound: EspKeys  # peer -> us; SPI chosen by us
    outbound: EspKeys  # us -> peer; SPI chosen by the peer
    mode: str  # "transport" | "tunnel"
    encapsulation: str  # "none" | "udp" (RFC 3948, NAT-T)
    encap_ports: tuple[int, int] | None  # (local, peer) UDP ports when encapsulated
    lifetime_s: int
    lifetime_kb: int | None
    local_selector: tuple[str, int, int]  # (network, protocol, port) as negotiated
    remote_selector: tuple[str, int, int]
    pfs_group: int | None
    initiator: bool
    rekey_of: int | None = None  # inbound SPI of the SA pair this one replaces
    # responder: a tunnel no policy of ours covered, taken under `generate_policy`; the shell
    # makes the policy pair from the selectors (racoon's pk_sendspdadd2())
    generated_policy: bool = False


@dataclass(frozen=True)
class InboundReady:
    """Responder: quick mode's message 2 is sent, after a HASH(1) that proved message 1, and
    the inbound SA of the pair to come is live from now on. The initiator installs its pair
    and sends when it sends message 3, so its first packets may arrive before message 3 is
    handled here. Then Phase2Up with the same inbound keys (the shell keeps the SA installed
    now, counters and replay window included), or InboundWithdrawn. Never an outbound SA:
    nothing is sent under the pair before HASH(3) is checked."""

    peer: tuple[str, int]
    inbound: EspKeys  # peer -> us; SPI chosen by us
    mode: str  # "transport" | "tunnel"
    lifetime_s: int
    lifetime_kb: int | None
    # (local, remote), each (network, protocol, port): Phase2Up's selectors
    selectors: tuple[tuple[str, int, int], tuple[str, int, int]]
    encap_ports: tuple[int, int] | None = None  # (local, peer) UDP ports of ESP in UDP
    generated_policy: bool = False  # as Phase2Up's: the `in` policy comes with this SA


@dataclass(frozen=True)
class InboundWithdrawn:
    """The quick mode of an InboundReady ended without its pair (the phase-2 timeout, its
    ISAKMP SA gone, a flush, a refusal): that inbound SA leaves the data plane. The reason is
    the NegotiationFailed that follows, when there is one."""

    peer: tuple[str, int]
    spi_in: int


@dataclass(frozen=True)
class SaExpired:
    """A phase-2 SA pair reached its hard lifetime; the data plane removes it."""

    peer: tuple[str, int]
    spi_in: int
    spi_out: int


@dataclass(frozen=True)
class SaDeleted:
    """A phase-2 SA pair is gone (peer delete, our delete, INITIAL-CONTACT, dead peer)."""

    peer: tuple[str, int]
    spi_in: int
    spi_out: int
    reason: str


@dataclass(frozen=True)
class PeerDead:
    """DPD (RFC 3706) gave up on the peer; its SAs are purged (SaDeleted events precede this)."""

    peer: tuple[str, int]


@dataclass(frozen=True)
class NegotiationFailed:
    peer: tuple[str, int]
    phase: int
    reason: str  # e.g. "NO-PROPOSAL-CHOSEN", "timeout", "authentication failed"


@dataclass(frozen=True)
class Refused:
    """Input from an unproven source was refused (no proposal chosen, a half-open exchange
    evicted or timed out, aggressive mode paced, ...). One per reason per interval: `folded`
    more of the same reason were counted since the last one. Nothing was changed by it."""

    peer: tuple[str, int]  # the latest source; it may be spoofed
    reason: str
    folded: int


Event = (Phase1Up | Phase1Down | Phase2Up | InboundReady | InboundWithdrawn | SaExpired
         | SaDeleted | PeerDead | NegotiationFailed | Refused)
