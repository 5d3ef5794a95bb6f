"""The engine's state records: ISAKMP SAs, quick-mode exchanges, IPsec SA pairs, flights."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .codec import IdPayload, SaPayload
from .crypto import DHPrivate, Phase1Keys
from .events import EspKeys
from .policy import Phase2Policy, RemotePolicy, TrafficSelector
from .proposals import Phase1Suite, Phase2Suite
from .states import Phase1State, QuickState

Address = tuple[str, int]


class Drop(Exception):
    """Internal: the datagram is dropped; `counter` names the counter it adds to."""

    def __init__(self, counter: str) -> None:
        super().__init__(counter)
        self.counter = counter


@dataclass(eq=False)
class Flight:
    """What we last sent in one exchange, for resends, and what we last got, for duplicates.

    A quiet flight is sent again only when the peer repeats itself; its timer just ends it.
    """

    local: Address
    peer: Address
    datagrams: list[bytes] = field(default_factory=list)
    resend_at: float | None = None
    resends_left: int = 0
    last_in: bytes | None = None
    quiet: bool = False
    frag_id: int | None = None  # sent in fragments under this ID (ikev1.fragment)


class MessageIds:
    """Message IDs the peer used on one ISAKMP SA, the latest `keep` of them (RFC 2408 §3.1:
    each phase-2 or informational exchange has its own); a repeat is a replay."""

    def __init__(self, keep: int = 4096) -> None:
        self._set: set[int] = set()
        self._order: deque[int] = deque()
        self._keep = keep

    def __contains__(self, msgid: int) -> bool:
        return msgid in self._set

    def add(self, msgid: int) -> None:
        if msgid in self._set:
            return
        self._set.add(msgid)
        self._order.append(msgid)
        if len(self._order) > self._keep:
            self._set.discard(self._order.popleft())


@dataclass(eq=False)
class DpdState:
    """RFC 3706 bookkeeping for one ISAKMP SA."""

    seq_out: int = 0
    next_probe: float | None = None
    waiting_seq: int | None = None
    ack_deadline: float | None = None
    fails: int = 0


@dataclass(eq=False)
class Phase1SA:
    icookie: bytes
    rcookie: bytes
    local: Address
    peer: Address
    initiator: bool
    exchange: str  # "main" | "aggressive"
    remote: RemotePolicy
    created: float
    flight: Flight
    state: Phase1State = Phase1State.I_MM1
    suite: Phase1Suite | None = None
    sa_b: bytes = b""  # the initiator's SA payload body (RFC 2409 §5 SAi_b)
    dh: DHPrivate | None = None
    gxi: bytes = b""
    gxr: bytes = b""
    ni_b: bytes = b""
    nr_b: bytes = b""
    id_local: IdPayload | None = None
    id_peer: IdPayload | None = None
    peer_identity: str = ""
    keys: Phase1Keys | None = None
    iv: bytes = b""  # the running phase-1 CBC IV (RFC 2409 App. B)
    established_at: float | None = None
    expires_at: float | None = None
    rekey_at: float | None = None
    vendor_ids: list[str] = field(default_factory=list)
    peer_dpd: bool = False
    dpd: DpdState = field(default_factory=DpdState)
    phase2_count: int = 0
    natt: str | None = None  # "rfc" | "draft": NAT-T agreed by vendor IDs (RFC 3947 §3.1)
    nat_local: bool = False  # we are behind a NAT
    nat_peer: bool = False  # the peer is
    keepalive_at: float | None = None
    peer_frag: bool = False  # the peer announced IKE fragmentation: we fragment towards it
    frag_ids: int = 0  # the last fragment ID we used
    problem: str | None = None  # why the last message was refused: a timeout's reason
    contact_honoured: bool = False  # INITIAL-CONTACT acted on under this SA (at most once)
    seen_msgids: MessageIds = field(default_factory=MessageIds)  # quick modes, informationals
    sent_msgids: MessageIds = field(default_factory=MessageIds)  # the ones we began
    # what hangs off it, for its teardown (repr=False: no cycles, nothing long in a log line)
    quicks: dict[int, QuickExchange] = field(default_factory=dict, repr=False)  # by message ID
    phase2: dict[int, Phase2SA] = field(default_factory=dict, repr=False)  # by inbound SPI

    @property
    def established(self) -> bool:
        return self.state is Phase1State.ESTABLISHED

    @property
    def spi(self) -> bytes:
        """The 16-byte ISAKMP SPI of notifies and deletes (RFC 2408 §2.5.3)."""
        return self.icookie + self.rcookie


@dataclass(eq=False)
class QuickExchange:
    p1: Phase1SA
    msgid: int
    initiator: bool
    iv: bytes
    flight: Flight
    created: float
    state: QuickState = QuickState.I_QM1
    sainfo: Phase2Policy | None = None
    suite: Phase2Suite | None = None
    spi_in: int = 0
    spi_out: int = 0
    ni_b: bytes = b""
    nr_b: bytes = b""
    dh: DHPrivate | None = None
    gxy: bytes | None = field(default=None, repr=False)  # the PFS shared secret
    id_ci: IdPayload | None = None
    id_cr: IdPayload | None = None
    local_sel: TrafficSelector | None = None
    remote_sel: TrafficSelector | None = None
    rekey_of: int | None = None
    mode: str = "transport"  # "transport" | "tunnel": asked for (initiator) or chosen
    generated_policy: bool = False  # responder: a tunnel no policy allows, by generate_policy
    proposals_sa: SaPayload | None = None
    forget_at: float | None = None  # a finished exchange is kept to answer duplicates
    connected_wait: bool = False  # commit bit: Phase2Up waits for CONNECTED (RFC 2408 §3.1)
    # responder: the inbound SA made live with message 2 (InboundReady) until the pair takes
    # it at message 3; still set when the exchange ends, it is withdrawn
    early_inbound: EspKeys | None = field(default=None, repr=False)


@dataclass(eq=False)
class Phase2SA:
    """An installed ESP SA pair, as the engine tracks its lifetime."""

    local: Address
    peer: Address
    spi_in: int
    spi_out: int
    suite: Phase2Suite
    local_sel: TrafficSelector
    remote_sel: TrafficSelector
    initiator: bool
    created: float
    p1_icookie: bytes
    soft_at: float
    hard_at: float
    rekeying: bool = False
    replaced: bool = False
    ids: tuple[TrafficSelector | None, TrafficSelector | None] = (None, None)  # as acquired
    owner: Phase1SA | None = field(default=None, repr=False)  # the ISAKMP SA that made it


@dataclass(eq=False)
class PeerRecord:
    """What the engine holds for one peer address, so that no lookup scans other peers.

    Only authenticated state and our own exchanges are here: a half-open responder exchange,
    which anyone can start with a spoofed address, is not, so it never stands in for ours.
    """

    initiating: Phase1SA | None = None  # our phase-1 exchange towards the peer, not yet up
    phase1: dict[Phase1SA, None] = field(default_factory=dict)  # established, oldest first
    phase2: dict[int, Phase2SA] = field(default_factory=dict)  # by inbound SPI

    def empty(self) -> bool:
        return self.initiating is None and not self.phase1 and not self.phase2
