"""The sans-I/O IKEv1 engine: datagrams and the time in; datagrams, one timer and events out.

The engine is the manager of the exchanges. Their handlers live in one module each (phase1 and
aggressive for phase 1, quick, informational, natt), their transitions in states.py; this module
holds the indexes every per-message lookup goes through (cookies, peer address, message ID,
SPI), the deadline heap behind get_timer()/handle_timer(), the bounds on what unauthenticated
input may cost (limits.py), the one teardown path of each kind of state, and the control calls
the daemon uses.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict, deque
from collections.abc import Callable

from . import crypto, fragment
from .aggressive import AggressiveMixin
from .codec import (
    HEADER_LEN,
    CodecError,
    FragmentPayload,
    Header,
    decode_header,
    decode_payloads,
    encode_payloads,
)
from .constants import NON_ESP_MARKER, Exchange, Flag, Payload
from .events import (
    Event,
    InboundWithdrawn,
    NegotiationFailed,
    Phase1Down,
    Refused,
    SaDeleted,
    SaExpired,
)
from .fragment import Pool, Reassembler, Reassembly
from .ids import address_selector
from .informational import InformationalMixin
from .ingress import Priority
from .limits import (
    AGGRESSIVE_DH_BURST,
    AGGRESSIVE_DH_BURST_CONFIGURED,
    AGGRESSIVE_DH_RATE,
    AGGRESSIVE_DH_RATE_CONFIGURED,
    NOTIFY_BURST,
    NOTIFY_BURST_PER_SOURCE,
    NOTIFY_RATE,
    NOTIFY_RATE_PER_SOURCE,
    NOTIFY_SOURCES_TRACKED,
    FoldedEvents,
    HalfOpenPool,
    SourceBuckets,
    TokenBucket,
)
from .natt import KEEPALIVE, NattMixin
from .phase1 import NO_LOCAL_ADDRESS, ZERO_COOKIE, MainMode2, Phase1Mixin
from .policy import EngineConfig, RemotePolicy, TrafficSelector
from .quick import QuickMixin
from .sa import Address, Drop, Flight, PeerRecord, Phase1SA, Phase2SA, QuickExchange
from .states import QuickState
from .timers import DeadlineHeap

Rng = Callable[[int], bytes]

COUNTER_NAMES = (
    "received", "sent", "malformed", "decrypt_failed", "hash_mismatch", "unknown_sa",
    "unexpected", "duplicates", "resends", "timeouts", "crypto_errors", "internal_errors",
    "notifies_received", "keepalives", "half_open_evicted", "aggressive_paced",
    "replies_capped", "refused", "rejected",
    # IKE fragmentation (ikev1.fragment): fragments in and out, messages put back together, and
    # what was dropped: a repeated piece, a set that contradicts itself, a message over the
    # bounds, a buffer evicted for a newer one or given up at its timeout
    "frag_in", "frag_out", "frag_reassembled", "frag_duplicates", "frag_conflicts",
    "frag_oversize", "frag_evicted", "frag_timeouts",
)


# racoonctl's numeric phase-1 status (ipsec-tools handler.h): our last message sent, 9 = up
RACOON_PH1_STATE = {"I_MM1": 3, "R_MM2": 3, "I_AM1": 3, "R_AM2": 3, "I_MM3": 5, "R_MM4": 5,
                    "I_MM5": 7, "established": 9}

# (local, remote, mode, inbound SPI of the pair it renews, when it was asked for)
Acquire = tuple[TrafficSelector | None, TrafficSelector | None, str, int | None, float]
MODES = ("transport", "tunnel")


def _where(exc: BaseException) -> str:
    """The exception's type and innermost function and line: enough to find a bug, no data."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    return f"{type(exc).__name__} in {tb.tb_frame.f_code.co_name}:{tb.tb_lineno}"


_RemotesIndex = tuple[dict[str, RemotePolicy], RemotePolicy | None]


def _index_remotes(remotes: tuple[RemotePolicy, ...]) -> _RemotesIndex:
    """The first section for each address, and the first `anonymous` one (racoon's order).

    Keyed by the address's canonical text, the form a socket reports a source in, so a lookup
    per datagram parses nothing."""
    by_address: dict = {}
    anonymous = None
    for remote in remotes:
        if remote.remote == "anonymous":
            anonymous = anonymous or remote
            continue
        try:
            by_address.setdefault(str(ipaddress.ip_address(remote.remote)), remote)
        except ValueError:
            continue  # a name, not an address: it never matches a peer address
    return by_address, anonymous


class Engine(Phase1Mixin, AggressiveMixin, QuickMixin, InformationalMixin, NattMixin):
    def __init__(self, config: EngineConfig, *, rng: Rng = os.urandom,
                 fragment_len: int = fragment.MAX_LEN) -> None:
        self.config = config
        self._rng = rng
        self._fragment_len = fragment_len  # longer messages go in fragments of at most this
        # every ISAKMP SA and phase-1 exchange, oldest first, and the indexes to reach them
        self._phase1: dict[Phase1SA, None] = {}
        self._by_cookies: dict[tuple[bytes, bytes], Phase1SA] = {}  # both cookies known
        self._initiating: dict[bytes, Phase1SA] = {}  # our first message out, by our cookie
        self._first_seen: dict[tuple[bytes, str], Phase1SA] = {}  # responder, before message 3
        self._peers: dict[str, PeerRecord] = {}  # authenticated state and our own exchanges
        self._p2: dict[int, Phase2SA] = {}  # by inbound SPI
        self._quick: dict[tuple[bytes, bytes, int], QuickExchange] = {}  # cookies, message ID
        self._spis_pending: set[int] = set()  # inbound SPIs of quick modes in progress
        self._acquires: dict[str, list[Acquire]] = {}  # waiting for phase 1, by peer
        self._contacted: set[str] = set()  # peers we sent INITIAL-CONTACT
        self._timers = DeadlineHeap()
        self._half_open = HalfOpenPool()
        self._aggressive_dh = TokenBucket(AGGRESSIVE_DH_RATE, AGGRESSIVE_DH_BURST)
        self._aggressive_dh_configured: dict[str, TokenBucket] = {}
        self._notify_replies = SourceBuckets(NOTIFY_RATE_PER_SOURCE, NOTIFY_BURST_PER_SOURCE,
                                             NOTIFY_RATE, NOTIFY_BURST, NOTIFY_SOURCES_TRACKED)
        self._refusals = FoldedEvents()
        self._mm2_cache: OrderedDict[tuple[int, bytes], MainMode2 | None] = OrderedDict()
        self._out: list[tuple[bytes, Address, Address]] = []
        self._events: deque[Event] = deque()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._reassembly = Reassembler(self._timers, self.counters)
        self.last_internal_error: str | None = None  # for the shell to log once; no data in it
        # remote sections by peer address, rebuilt when the configuration's remotes change
        self._remotes_index: tuple[tuple[RemotePolicy, ...], _RemotesIndex] | None = None

    # --- the I/O shell's calls ----------------------------------------------------------

    def receive_datagram(self, data: bytes, local: Address, peer: Address, now: float) -> None:
        """One UDP payload from `peer` to `local`; never raises on bad input."""
        self.counters["received"] += 1
        try:
            if local[1] == self.config.natt_port:
                if data == KEEPALIVE:
                    self.counters["keepalives"] += 1
                    return
                if data[:4] != NON_ESP_MARKER:
                    raise Drop("unexpected")  # RFC 3948 §2.2: ESP, not IKE
                data = data[4:]
            self._receive(bytes(data), local, peer, now)
        except Drop as drop:
            self.counters[drop.counter] += 1
        except CodecError:
            self.counters["malformed"] += 1
        except crypto.CryptoError:
            self.counters["crypto_errors"] += 1
        except Exception as exc:  # noqa: BLE001 - a bug must not take the daemon down
            self.counters["internal_errors"] += 1
            self.last_internal_error = _where(exc)

    def ingress_priority(self, data: bytes, local: Address, peer: Address) -> Priority:
        """How urgent a received datagram is (ikev1.ingress); reads the header's cookies only,
        so the shell can sort a flood at the rate it arrives."""
        if local[1] == self.config.natt_port:
            if data[:4] != NON_ESP_MARKER:
                return Priority.OTHER  # a keepalive, or ESP: nothing of an exchange
            data = data[4:4 + HEADER_LEN]
        if len(data) < HEADER_LEN:
            return Priority.OTHER
        icookie, rcookie = data[:8], data[8:16]
        if rcookie == ZERO_COOKIE:
            ours = self._initiating.get(icookie)
            if ours is not None and ours.peer[0] == peer[0]:
                return Priority.EXCHANGE  # the responder's notify before it chose a cookie
            # a first message, new or sent again: the same rank, as its cookie is the sender's
            remote = self._remote_for(peer[0])
            if remote is not None and remote.remote != "anonymous":
                return Priority.CONFIGURED
            return Priority.OTHER
        p1 = self._p1_of(icookie, rcookie, peer[0])
        if p1 is None:
            return Priority.OTHER  # no such SA for this address: dropped at once
        return Priority.EXCHANGE if self._vouched(p1) else Priority.ANONYMOUS  # ikev1.ingress

    def datagrams_to_send(self) -> list[tuple[bytes, Address, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self._timers.next_time()

    def handle_timer(self, now: float) -> None:
        for owner in self._timers.pop_due(now):
            if isinstance(owner, Phase1SA):
                if owner in self._phase1:
                    self._p1_timers(owner, now)
            elif isinstance(owner, QuickExchange):
                if self._quick.get(self._quick_key(owner)) is owner:
                    self._quick_timers(owner, now)
            elif isinstance(owner, Phase2SA):
                if self._p2.get(owner.spi_in) is owner:
                    self._p2_timers(owner, now)
            elif isinstance(owner, Reassembly):
                self._reassembly.expire(owner)
            else:  # ("acquires", peer address)
                self._acquire_timers(owner[1], now)
            self._schedule(owner)

    def initiate(self, peer_address: str, now: float,
                 local_selector: TrafficSelector | None = None,
                 remote_selector: TrafficSelector | None = None,
                 mode: str = "transport") -> None:
        """An acquire: quick mode for the selectors in `mode` ("transport" or "tunnel"), after
        phase 1 if there is none yet. A tunnel always sends the selectors as client IDs.

        Like a kernel ACQUIRE it is ignored while a live SA pair covers the selectors in that
        mode."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        local_address = self._local_for(peer_address)
        if local_address is None:
            self._fail((peer_address, self.config.isakmp_port), 1, NO_LOCAL_ADDRESS)
            return
        local = local_selector or address_selector(local_address)
        remote = remote_selector or address_selector(peer_address)
        record = self._peers.get(peer_address)
        for sa in record.phase2.values() if record else ():
            if not sa.replaced and (sa.local_sel, sa.remote_sel, sa.suite.mode) == (
                    local, remote, mode):
                return
        if self._responding(peer_address, local, remote, mode):
            return
        self._acquire(peer_address, now, local_selector, remote_selector, mode, None)

    def initiate_phase1(self, peer_address: str, now: float) -> None:
        """An ISAKMP SA alone (`racoonctl establish-sa isakmp`): no quick mode follows. Nothing
        is started while one is up or under way towards the peer."""
        remote = self._remote_for(peer_address)
        if remote is None:
            self._fail((peer_address, self.config.isakmp_port), 1, "no remote configuration")
            return
        if self._newest_p1(peer_address) is not None or self._initiating_with(peer_address):
            return
        if remote.passive:
            self._fail((peer_address, remote.port), 1, "passive")
            return
        self._start_phase1(peer_address, remote, now)

    # --- control ------------------------------------------------------------------------

    def reconfigure(self, config: EngineConfig, now: float) -> None:
        """A reloaded configuration: new negotiations use it; live SAs keep what they agreed.

        The timeouts it sets (racoon's `phase1`, `phase2`) apply to what is waiting now: those
        deadlines may have moved earlier, so their owners are scheduled again."""
        self.config = config
        for peer_address in self._acquires:
            self._schedule(("acquires", peer_address))
        for qx in self._quick.values():
            self._schedule(qx)

    def delete_phase2(self, spi_in: int, now: float) -> None:
        sa = self._p2.get(spi_in)
        if sa is not None:
            self._delete_p2(sa, now, "deleted", notify_peer=True)

    def delete_phase1(self, peer: Address | str, now: float, *, ipsec: bool = True) -> None:
        """`racoonctl delete-sa`: the peer's ISAKMP SAs and, as racoon's purge_remote() does,
        the IPsec SAs with it; each one's delete goes out under the ISAKMP SA while it is up,
        so a peer that keeps IPsec SAs after an ISAKMP delete does not keep these. With
        `ipsec=False` (`racoonctl flush-sa isakmp`) the ISAKMP SAs alone."""
        addr = peer if isinstance(peer, str) else peer[0]
        record = self._peers.get(addr)
        if record is None:
            return
        for sa in list(record.phase2.values()) if ipsec else ():
            self._delete_p2(sa, now, "deleted", notify_peer=True)
        for p1 in [*record.phase1, *([record.initiating] if record.initiating else [])]:
            self._drop_p1(p1, now, "deleted", notify_peer=p1.established)

    def flush(self, now: float) -> None:
        for sa in list(self._p2.values()):
            self._delete_p2(sa, now, "flushed", notify_peer=True)
        for p1 in list(self._phase1):
            self._drop_p1(p1, now, "deleted", notify_peer=p1.established)

    def sa_soft_expired(self, spi_in: int, now: float) -> None:
        """The data plane saw a byte lifetime's soft limit: rekey as at the soft time."""
        sa = self._p2.get(spi_in)
        if sa is not None:
            sa.soft_at = min(sa.soft_at, now)
            self._p2_timers(sa, now)
            self._schedule(sa)

    def sa_hard_expired(self, spi_in: int, now: float) -> None:
        sa = self._p2.get(spi_in)
        if sa is not None:
            sa.hard_at = min(sa.hard_at, now)
            self._p2_timers(sa, now)

    def phase1_sas(self) -> list[dict]:
        return [{
            "src": p1.local[0], "dst": p1.peer[0], "src_port": p1.local[1],
            "dst_port": p1.peer[1], "icookie": p1.icookie.hex(), "rcookie": p1.rcookie.hex(),
            "state": str(p1.state), "racoon_state": RACOON_PH1_STATE.get(p1.state, 1),
            "side": "initiator" if p1.initiator else "responder",
            "exchange": p1.exchange, "created": p1.created,
            "established": p1.established_at, "expires": p1.expires_at,
            "encryption": p1.suite.label if p1.suite else None,
            "hash": p1.suite.hash if p1.suite else None,
            "dh_group": p1.suite.dh_group if p1.suite else None,
            "peer_identity": p1.peer_identity, "vendor_ids": list(p1.vendor_ids),
            "dpd": p1.peer_dpd and p1.remote.dpd.delay > 0,
            "phase2": len(p1.phase2),
            "nat_traversal": p1.natt, "nat_local": p1.nat_local, "nat_peer": p1.nat_peer,
        } for p1 in self._phase1]

    def phase1_count(self) -> int:
        """ISAKMP SAs and phase-1 exchanges held, half-open ones included."""
        return len(self._phase1)

    def phase2_sas(self) -> list[dict]:
        return [{
            "src": sa.local[0], "dst": sa.peer[0], "spi_in": sa.spi_in, "spi_out": sa.spi_out,
            "enc": sa.suite.enc_alg, "key_bits": sa.suite.enc_key_len * 8,
            "auth": sa.suite.auth_alg, "mode": sa.suite.mode, "pfs_group": sa.suite.pfs_group,
            "created": sa.created, "soft": sa.soft_at, "hard": sa.hard_at,
            "lifetime_s": sa.suite.lifetime_s, "side": "initiator" if sa.initiator
            else "responder", "local_selector": str(sa.local_sel.network),
            "remote_selector": str(sa.remote_sel.network), "protocol": sa.local_sel.protocol,
        } for sa in self._p2.values()]

    # --- dispatch -----------------------------------------------------------------------

    def _receive(self, data: bytes, local: Address, peer: Address, now: float) -> None:
        hdr = decode_header(data)
        data = data[:hdr.length]
        if hdr.next_payload == Payload.FRAGMENT:
            self._receive_fragment(hdr, data, local, peer, now)
            return
        if hdr.exchange in (Exchange.MAIN, Exchange.AGGRESSIVE):
            self._receive_phase1(hdr, data, local, peer, now)
            return
        p1 = self._by_cookies.get((hdr.icookie, hdr.rcookie))
        if p1 is None and hdr.rcookie == ZERO_COOKIE:
            p1 = self._initiating.get(hdr.icookie)  # a reply to our first message, in clear
        if p1 is None or p1.peer[0] != peer[0]:
            raise Drop("unknown_sa")
        if hdr.exchange == Exchange.QUICK:
            self._receive_quick(p1, hdr, data, now)
        elif hdr.exchange == Exchange.INFORMATIONAL:
            self._receive_informational(p1, hdr, data, now)
        else:
            raise Drop("unexpected")

    def _receive_fragment(self, hdr: Header, data: bytes, local: Address, peer: Address,
                          now: float) -> None:
        """One piece of a message sent in fragments; the whole message, once its last piece is
        in, is handled as if it had come in one datagram (racoon's frag_handler()).

        Pieces are kept only for an exchange we hold, or for a first message from an address a
        remote section takes: nothing else may fill a buffer."""
        payloads = decode_payloads(hdr.next_payload, data[HEADER_LEN:])
        if len(payloads) != 1 or not isinstance(payloads[0], FragmentPayload):
            raise Drop("malformed")
        piece = payloads[0]
        room: object
        if hdr.rcookie == ZERO_COOKIE:  # a first message, sent in fragments by `ike_frag force`
            remote = self._remote_for(peer[0])
            if (hdr.exchange not in (Exchange.MAIN, Exchange.AGGRESSIVE)
                    or hdr.icookie in self._initiating or remote is None):
                raise Drop("unknown_sa")
            room = peer[0]
            pool = Pool.FIRST if remote.remote == "anonymous" else Pool.FIRST_NAMED
        else:
            p1 = self._p1_of(hdr.icookie, hdr.rcookie, peer[0])
            if p1 is None:
                raise Drop("unknown_sa")
            room, pool = p1, Pool.SA if self._vouched(p1) else Pool.SA_ANONYMOUS
        self.counters["frag_in"] += 1
        key = (peer[0], hdr.icookie, hdr.rcookie, hdr.exchange, hdr.message_id, piece.frag_id)
        message = self._reassembly.add(key, room, pool, piece, now)
        if message is None:
            return
        inner = decode_header(message)
        if ((inner.icookie, inner.rcookie, inner.exchange) != (hdr.icookie, hdr.rcookie,
                                                                hdr.exchange)
                or inner.next_payload == Payload.FRAGMENT or inner.length != len(message)):
            raise Drop("malformed")  # racoon: the pieces carry the message's own exchange
        self.counters["frag_reassembled"] += 1
        self._receive(message, local, peer, now)

    @staticmethod
    def _vouched(p1: Phase1SA) -> bool:
        """Whether only the peer (or an eavesdropper) knows both cookies of `p1`: our own
        exchange, an authenticated ISAKMP SA, or one with an address a `remote ADDRESS` names,
        whose message 2 went to that address. Those of an unauthenticated exchange with a
        `remote anonymous` peer anyone can get, by opening it from an address of its own."""
        return p1.initiator or p1.established or p1.remote.remote != "anonymous"

    # --- the indexes: every piece of state enters and leaves through these ---------------

    def _p1_of(self, icookie: bytes, rcookie: bytes, address: str) -> Phase1SA | None:
        """The ISAKMP SA or exchange of these cookies (our own first message's, before the
        responder's cookie was known, by ours alone), if `address` is its peer's: a message
        under its cookies from anywhere else is not its."""
        p1 = self._by_cookies.get((icookie, rcookie)) or self._initiating.get(icookie)
        return p1 if p1 is not None and p1.peer[0] == address else None

    def _peer(self, address: str) -> PeerRecord:
        record = self._peers.get(address)
        if record is None:
            record = self._peers[address] = PeerRecord()
        return record

    def _tidy_peer(self, address: str) -> None:
        record = self._peers.get(address)
        if record is not None and record.empty():
            del self._peers[address]

    def _add_initiator_p1(self, p1: Phase1SA) -> None:
        self._phase1[p1] = None
        self._initiating[p1.icookie] = p1
        self._peer(p1.peer[0]).initiating = p1
        self._schedule(p1)

    def _add_responder_p1(self, p1: Phase1SA, configured: bool) -> None:
        self._phase1[p1] = None
        self._by_cookies[(p1.icookie, p1.rcookie)] = p1
        self._first_seen[(p1.icookie, p1.peer[0])] = p1
        self._half_open.add(p1, p1.peer[0], configured)
        self._schedule(p1)

    def _p1_answered(self, p1: Phase1SA) -> None:
        """Our first message got its reply: from now on both cookies name the exchange."""
        if self._initiating.get(p1.icookie) is p1:
            del self._initiating[p1.icookie]
            self._by_cookies[(p1.icookie, p1.rcookie)] = p1

    def _p1_proven(self, p1: Phase1SA) -> None:
        """The peer answered our reply: its address is real; it is evicted last from now on."""
        self._half_open.promote(p1)
        if self._first_seen.get((p1.icookie, p1.peer[0])) is p1:
            del self._first_seen[(p1.icookie, p1.peer[0])]

    def _p1_established(self, p1: Phase1SA) -> None:
        self._p1_proven(p1)
        self._half_open.remove(p1)
        record = self._peer(p1.peer[0])
        if record.initiating is p1:
            record.initiating = None
        record.phase1[p1] = None

    def _remove_p1(self, p1: Phase1SA) -> bool:
        """Take an ISAKMP SA or phase-1 exchange out of every index; False if it was gone."""
        if p1 not in self._phase1:
            return False
        del self._phase1[p1]
        self._timers.forget(p1)
        self._reassembly.discard_room(p1)
        self._p1_proven(p1)
        self._half_open.remove(p1)
        if self._initiating.get(p1.icookie) is p1:
            del self._initiating[p1.icookie]
        if self._by_cookies.get((p1.icookie, p1.rcookie)) is p1:
            del self._by_cookies[(p1.icookie, p1.rcookie)]
        record = self._peers.get(p1.peer[0])
        if record is not None:
            record.phase1.pop(p1, None)
            if record.initiating is p1:
                record.initiating = None
            self._tidy_peer(p1.peer[0])
        return True

    def _quick_key(self, qx: QuickExchange) -> tuple[bytes, bytes, int]:
        return (qx.p1.icookie, qx.p1.rcookie, qx.msgid)

    def _add_quick(self, qx: QuickExchange) -> None:
        self._quick[self._quick_key(qx)] = qx
        qx.p1.quicks[qx.msgid] = qx
        self._spis_pending.add(qx.spi_in)
        self._schedule(qx)

    def _remove_quick(self, qx: QuickExchange) -> bool:
        if self._quick.get(self._quick_key(qx)) is not qx:
            return False
        del self._quick[self._quick_key(qx)]
        qx.p1.quicks.pop(qx.msgid, None)
        self._spis_pending.discard(qx.spi_in)
        self._timers.forget(qx)
        if qx.early_inbound is not None:  # it ends without its pair: so does its inbound SA
            qx.early_inbound = None
            self._emit(InboundWithdrawn(qx.p1.peer, qx.spi_in))
        return True

    def _add_p2(self, sa: Phase2SA) -> None:
        self._p2[sa.spi_in] = sa
        self._peer(sa.peer[0]).phase2[sa.spi_in] = sa
        if sa.owner is not None:
            sa.owner.phase2[sa.spi_in] = sa
        self._schedule(sa)

    def _remove_p2(self, sa: Phase2SA) -> bool:
        if self._p2.get(sa.spi_in) is not sa:
            return False
        del self._p2[sa.spi_in]
        self._timers.forget(sa)
        if sa.owner is not None:
            sa.owner.phase2.pop(sa.spi_in, None)
        record = self._peers.get(sa.peer[0])
        if record is not None:
            record.phase2.pop(sa.spi_in, None)
            self._tidy_peer(sa.peer[0])
        return True

    def _peer_p2(self, peer_address: str) -> list[Phase2SA]:
        record = self._peers.get(peer_address)
        return list(record.phase2.values()) if record else []

    def _peer_p1(self, peer_address: str) -> list[Phase1SA]:
        """The peer's established ISAKMP SAs, oldest first."""
        record = self._peers.get(peer_address)
        return list(record.phase1) if record else []

    def _drop_acquires(self, peer_address: str) -> list[Acquire]:
        self._timers.forget(("acquires", peer_address))
        return self._acquires.pop(peer_address, [])

    def _responding(self, peer_address: str, local: TrafficSelector, remote: TrafficSelector,
                    mode: str) -> bool:
        """Whether the peer's quick mode for these selectors waits for its message 3, its
        inbound SA live: the pair is coming, and what our side sends before it (a reply to
        the peer's first packets) waits in the data plane rather than start a second pair
        (racoon ignores an acquire whose policy has a phase 2 under way, getph2byspid())."""
        for p1 in self._peer_p1(peer_address):
            for qx in p1.quicks.values():
                if (qx.early_inbound is not None and qx.mode == mode
                        and self._selectors(qx) == (local, remote)):
                    return True
        return False

    def _initiating_with(self, peer_address: str) -> Phase1SA | None:
        record = self._peers.get(peer_address)
        return record.initiating if record else None

    # --- the deadline heap --------------------------------------------------------------

    def _schedule(self, owner) -> None:
        """(Re)enter `owner` in the heap at its earliest deadline; after any change to it."""
        due = [t for _name, t in self._deadlines(owner)]
        self._timers.schedule(owner, min(due) if due else None)

    def _deadlines(self, owner) -> list[tuple[str, float]]:
        """The named deadlines `owner` has now (none once it left the engine): the heap holds
        their earliest, `schedule()` lists them all."""
        if isinstance(owner, Phase1SA):
            if owner not in self._phase1:
                return []
            dpd = owner.dpd
            times = (("phase1-resend", owner.flight.resend_at),
                     ("phase1-lifetime", owner.expires_at), ("phase1-rekey", owner.rekey_at),
                     ("dpd-probe", dpd.next_probe), ("dpd-ack", dpd.ack_deadline),
                     ("natt-keepalive", owner.keepalive_at))
        elif isinstance(owner, QuickExchange):
            if self._quick.get(self._quick_key(owner)) is not owner:
                return []
            limit = self.config.timer.phase2_timeout
            times = (("phase2-resend", owner.flight.resend_at),
                     ("phase2-forget", owner.forget_at),
                     ("phase2-timeout", owner.created + limit
                      if owner.forget_at is None and limit > 0 else None))
        elif isinstance(owner, Phase2SA):
            if self._p2.get(owner.spi_in) is not owner:
                return []
            soft = owner.soft_at if not owner.rekeying and not owner.replaced else None
            times = (("ipsec-hard-lifetime", owner.hard_at), ("ipsec-soft-lifetime", soft))
        elif isinstance(owner, Reassembly):
            times = (("fragment-reassembly", owner.expires_at),) \
                if self._reassembly.holds(owner) else ()
        else:  # ("acquires", peer address)
            pending = self._acquires.get(owner[1])
            wait = self.config.timer.phase1_timeout
            times = ((("acquire-timeout", min(since for *_, since in pending) + wait),)
                     if pending and wait > 0 else ())
        return [(name, t) for name, t in times if t is not None]

    def schedule(self) -> list[dict]:
        """Every pending timer, soonest first (`racoonctl show-schedule`): what it is, whose
        it is, when the owner was made and when it is due, on the engine's clock."""
        owners: list[tuple[object, str, float | None]] = [
            (p1, p1.peer[0], p1.created) for p1 in self._phase1]
        owners += [(qx, qx.p1.peer[0], qx.created) for qx in self._quick.values()]
        owners += [(sa, sa.peer[0], sa.created) for sa in self._p2.values()]
        owners += [(("acquires", peer), peer, min((a[-1] for a in pending), default=None))
                   for peer, pending in self._acquires.items()]
        rows = [{"timer": name, "peer": peer, "created": created, "due": when}
                for owner, peer, created in owners for name, when in self._deadlines(owner)]
        rows.sort(key=lambda r: r["due"])
        return rows

    # --- shared helpers -----------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _refused(self, peer: Address, reason: str, now: float, *, fold: str | None = None
                 ) -> None:
        """Unauthenticated input refused: counted always, an event once per kind (`fold`,
        else the reason itself) and interval with the number folded into it (a forged flood
        costs no log line each)."""
        self.counters["refused"] += 1
        folded = self._refusals.allow(fold or reason, now)
        if folded is not None:
            self._emit(Refused(peer, reason, folded))

    def _local_for(self, peer_address: str) -> str | None:
        """Our first address of the peer's family; None when we have none (an IPv4 address
        cannot talk to an IPv6 peer)."""
        version = ipaddress.ip_address(peer_address).version
        for addr in self.config.local_addresses:
            if ipaddress.ip_address(addr).version == version:
                return addr
        return None

    def _remote_for(self, peer_address: str) -> RemotePolicy | None:
        index = self._remotes_index
        if index is None or index[0] is not self.config.remotes:
            index = self._remotes_index = (self.config.remotes, _index_remotes(self.config.remotes))
            self._mm2_cache.clear()  # its keys name sections of the configuration it replaced
        by_address, anonymous = index[1]
        remote = by_address.get(peer_address)
        if remote is not None:
            return remote
        if ":" not in peer_address:
            return anonymous  # IPv4 text from a socket has one spelling only
        try:  # another spelling of the same IPv6 address (case, zeros)
            return by_address.get(str(ipaddress.ip_address(peer_address)), anonymous)
        except ValueError:
            return anonymous

    def _aggressive_dh_allowed(self, peer_address: str, configured: bool, now: float) -> bool:
        """Aggressive mode does a Diffie-Hellman before the peer is proven: paced."""
        if not configured:
            return self._aggressive_dh.take(now)
        bucket = self._aggressive_dh_configured.get(peer_address)
        if bucket is None:  # one per configured address: bounded by the configuration
            bucket = self._aggressive_dh_configured[peer_address] = TokenBucket(
                AGGRESSIVE_DH_RATE_CONFIGURED, AGGRESSIVE_DH_BURST_CONFIGURED)
        # its own bucket first, then the shared one: a flood spoofing the address must
        # exhaust both to hold the real peer off
        return bucket.take(now) or self._aggressive_dh.take(now)

    def _new_spi(self) -> int:
        while True:
            spi = int.from_bytes(self._rng(4), "big")
            if spi >= 256 and spi not in self._p2 and spi not in self._spis_pending:
                return spi  # RFC 4303 §2.1: SPIs 1..255 are reserved

    def _new_msgid(self, p1: Phase1SA) -> int:
        """A message ID not yet used on this ISAKMP SA by either side (RFC 2408 §3.1): a peer
        that drops replays would drop a repeat of ours."""
        while True:
            mid = int.from_bytes(self._rng(4), "big")
            if (mid and mid not in p1.quicks and mid not in p1.sent_msgids
                    and mid not in p1.seen_msgids):
                p1.sent_msgids.add(mid)
                return mid

    def _claim_msgid(self, p1: Phase1SA, msgid: int) -> None:
        """A peer's new exchange, its HASH(1) already checked: Drop a replay, and one of our own
        messages sent back to us, which HASH(1) cannot tell apart (it names no direction)."""
        if msgid in p1.seen_msgids or msgid in p1.sent_msgids:
            raise Drop("duplicates")
        p1.seen_msgids.add(msgid)

    def _send(self, flight: Flight, datagrams: list[bytes], now: float, *, under: Phase1SA,
              expect_reply: bool, quiet: bool = False) -> None:
        """Send a flight (persend copies each) and arm its resend timer if a reply is due;
        in fragments if the ISAKMP SA it goes `under` fragments and a datagram is too long
        (each resend keeps the fragment ID, so a receiver's partial set is filled by it).

        The flight's owner is scheduled by whoever changed it (the dispatcher after a message,
        the starter of a new exchange)."""
        flight.datagrams, flight.quiet = datagrams, quiet
        flight.frag_id = self._frag_id(under, datagrams)
        timer = self.config.timer
        flight.resends_left = timer.counter if expect_reply else 0
        flight.resend_at = now + timer.interval if expect_reply else None
        self._transmit(flight)

    def _transmit(self, flight: Flight) -> None:
        for dgram in flight.datagrams:
            pieces = self._pieces(dgram, flight.frag_id)
            for _ in range(max(1, self.config.timer.persend)):
                for piece in pieces:
                    self._put(piece, flight.local, flight.peer)

    def _frag_id(self, p1: Phase1SA, datagrams: list[bytes]) -> int | None:
        """A new fragment ID if these datagrams go in fragments under `p1`, else None."""
        if not (p1.peer_frag or (p1.initiator and p1.remote.ike_frag == "force")):
            return None
        if all(len(d) <= self._fragment_len for d in datagrams):
            return None  # racoon: only what exceeds the size goes in pieces
        p1.frag_ids = p1.frag_ids % 0xFFFF + 1  # 16 bits, from 1 (racoon sends 1 always)
        return p1.frag_ids

    def _pieces(self, dgram: bytes, frag_id: int | None) -> list[bytes]:
        """A message as it goes on the wire: whole, or in fragments when it has a fragment ID."""
        if frag_id is None or len(dgram) <= self._fragment_len:
            return [dgram]
        try:
            pieces = fragment.split(dgram, frag_id, self._fragment_len)
        except ValueError:
            return [dgram]  # more pieces than a receiver takes: whole is its only chance
        self.counters["frag_out"] += len(pieces)
        return pieces

    def _put(self, dgram: bytes, local: Address, peer: Address) -> None:
        if local[1] == self.config.natt_port:
            dgram = NON_ESP_MARKER + dgram  # RFC 3948 §2.2
        self.counters["sent"] += 1
        self._out.append((dgram, local, peer))

    def _flight_due(self, flight: Flight, now: float) -> bool:
        """Resend a flight whose time has come; True when it has run out of resends."""
        if flight.resend_at is None or now < flight.resend_at:
            return False
        if flight.resends_left <= 0:
            flight.resend_at = None
            self.counters["timeouts"] += 1
            return True
        flight.resends_left -= 1
        flight.resend_at = now + self.config.timer.interval
        if not flight.quiet:
            self.counters["resends"] += 1
            self._transmit(flight)
        return False

    def _is_duplicate(self, flight: Flight, data: bytes) -> bool:
        """RFC 2408 §5: a repeated request gets the stored reply, never reprocessing."""
        if flight.last_in is not None and data == flight.last_in:
            self.counters["duplicates"] += 1
            if flight.datagrams:
                self._transmit(flight)
            return True
        return False

    def _encrypt(self, p1: Phase1SA, header: Header, payloads: list, iv: bytes
                 ) -> tuple[bytes, bytes]:
        """(datagram, next IV): the payloads CBC-encrypted under the phase-1 key."""
        assert p1.keys is not None and p1.suite is not None
        first, body = encode_payloads(payloads)
        block = crypto.block_size(p1.suite.encryption)
        extra = 0
        if self.config.pad_randomize_length:  # racoon `randomize_length`, up to maximum_length
            extra = self._rng(1)[0] % (max(self.config.pad_max_length, block) // block)
        padded = crypto.pad(body, block, self._rng if self.config.pad_randomize else None, extra,
                            self.config.pad_exclusive_tail)
        ct = crypto.encrypt(p1.suite.encryption, p1.keys.enc_key, iv, padded)
        hdr = Header(header.icookie, header.rcookie, first, header.exchange,
                     header.flags | Flag.ENCRYPTION, header.message_id)
        return hdr.encode(len(ct)) + ct, ct[-block:]

    def _decrypt(self, p1: Phase1SA, hdr: Header, data: bytes, iv: bytes
                 ) -> tuple[list, bytes, bytes]:
        """(payloads, plaintext chain, next IV) of an encrypted message; Drop if it is not."""
        if not hdr.flags & Flag.ENCRYPTION or p1.keys is None or p1.suite is None:
            raise Drop("unexpected")
        ct = data[HEADER_LEN:]
        block = crypto.block_size(p1.suite.encryption)
        if not ct or len(ct) % block:
            raise Drop("malformed")
        plain = crypto.decrypt(p1.suite.encryption, p1.keys.enc_key, iv, ct)
        if self.config.pad_strict_check:
            plain = crypto.unpad(plain, True, self.config.pad_exclusive_tail)
        try:
            payloads = decode_payloads(hdr.next_payload, plain, padded=True)
        except CodecError:
            raise Drop("decrypt_failed") from None
        return payloads, plain, ct[-block:]

    # --- phase-2 SA lifetimes -----------------------------------------------------------

    def _p2_timers(self, sa: Phase2SA, now: float) -> None:
        if self._p2.get(sa.spi_in) is not sa:
            return
        if now >= sa.hard_at:
            self._remove_p2(sa)
            self._emit(SaExpired(sa.peer, sa.spi_in, sa.spi_out))
            self._send_delete_esp(sa, now)
            return
        if now >= sa.soft_at and not sa.rekeying and not sa.replaced:
            sa.rekeying = True
            if sa.initiator:  # racoon: the SA's initiator renegotiates at the soft lifetime
                # the same IDs and mode as before
                self._acquire(sa.peer[0], now, *sa.ids, sa.suite.mode, sa.spi_in)

    def _delete_p2(self, sa: Phase2SA, now: float, reason: str, *, notify_peer: bool) -> None:
        if not self._remove_p2(sa):
            return
        self._emit(SaDeleted(sa.peer, sa.spi_in, sa.spi_out, reason))
        if notify_peer:
            self._send_delete_esp(sa, now)

    def _drop_p1(self, p1: Phase1SA, now: float, reason: str, *, notify_peer: bool) -> None:
        """The one teardown path of an ISAKMP SA or phase-1 exchange: out of every index, its
        quick modes ended, the peer told if asked and the SA was up."""
        if not self._remove_p1(p1):
            return
        if notify_peer and p1.established:
            self._send_delete_isakmp(p1)
        for qx in list(p1.quicks.values()):
            self._remove_quick(qx)
            if qx.state is not QuickState.DONE:
                self._fail(p1.peer, 2, f"phase 1 {reason}")
        if p1.established:
            self._emit(Phase1Down(p1.peer, p1.icookie, p1.rcookie, reason))

    def _fail(self, peer: Address, phase: int, reason: str) -> None:
        self._emit(NegotiationFailed(peer, phase, reason))
