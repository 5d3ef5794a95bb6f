"""IKE fragmentation as ipsec-tools (racoon) and Cisco do it in IKEv1: a message too long for one
datagram goes as several, each an ISAKMP header and one fragment payload (type 132, codec's
FragmentPayload); the receiver puts the pieces back together and handles the message as if it
had come whole. A peer announces that it takes fragments with the FRAGMENTATION vendor ID: the
MD5 of "FRAGMENTATION" and a 32-bit capability word.

racoon's behaviour, which pyike follows:
- `ike_frag on|force` puts the vendor ID in the initiator's first message; `off` leaves it out.
- A responder whose peer announced fragmentation (for the exchange it runs) answers with the
  vendor ID and fragments its messages from then on, whatever its own `ike_frag` says.
- `force` fragments the initiator's messages from the first one on, before the peer said
  anything; racoon.conf(5) has the sender side always on, used once the peer has announced it,
  so an initiator fragments after the responder's vendor ID too.
- Only a message longer than MAX_LEN goes in fragments, each at most MAX_LEN - 4 bytes long; under
  one ISAKMP SA this holds for every exchange, quick mode and informational included.
- Fragments are taken whatever `ike_frag` says (racoon reassembles whenever it is built with
  fragmentation), within the bounds of limits.py: a buffer holds a bounded number of pieces and
  bytes for a bounded time, and the buffers are bounded per SA and in all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum

from . import vendor
from .codec import FragmentPayload, Header, decode_header, encode_message
from .constants import HEADER_LEN, Flag
from .limits import (
    FRAGMENTED_MESSAGE_BYTES,
    FRAGMENTS_PER_MESSAGE,
    REASSEMBLIES,
    REASSEMBLIES_FIRST,
    REASSEMBLIES_FIRST_NAMED,
    REASSEMBLIES_FIRST_PER_SOURCE,
    REASSEMBLIES_PER_SA,
    REASSEMBLY_TIMEOUT_S,
)
from .sa import Drop
from .timers import DeadlineHeap

MAX_LEN = 552  # racoon's ISAKMP_FRAG_MAXLEN: a longer message is sent in fragments
# what a fragment adds around its piece: the ISAKMP header, the payload's generic header and
# its 4 bytes (ID, number, flags), and 4 bytes racoon keeps free and never fills
OVERHEAD = HEADER_LEN + 4 + 4 + 4

# racoon's capability bits (VENDORID_FRAG_IDENT, _AGG, _BASE); Cisco sends 0xc0000000
CAPABILITY = {"main": 0x80000000, "aggressive": 0x80000000}
_CAPABILITY_LEN = 4


def vendor_id(exchange: str) -> bytes:
    """The FRAGMENTATION vendor ID announcing fragments for `exchange` ("main"/"aggressive")."""
    return vendor.FRAGMENTATION + CAPABILITY[exchange].to_bytes(_CAPABILITY_LEN, "big")


def peer_capable(vid: bytes, exchange: str) -> bool:
    """A peer's vendor ID announces fragments for `exchange`: racoon wants the capability word
    present and its bit set (a bare hash announces nothing)."""
    prefix = len(vendor.FRAGMENTATION)
    if len(vid) < prefix + _CAPABILITY_LEN or not vid.startswith(vendor.FRAGMENTATION):
        return False
    return bool(int.from_bytes(vid[prefix:prefix + _CAPABILITY_LEN], "big") & CAPABILITY[exchange])


def split(message: bytes, frag_id: int, max_len: int = MAX_LEN) -> list[bytes]:
    """The fragment datagrams of `message` (an encoded ISAKMP message longer than `max_len`).

    Each carries the message's cookies, exchange type and message ID; its flags without the
    encryption bit, since the fragment payload itself is not encrypted (only the message it
    carries may be)."""
    hdr = decode_header(message)
    room = max_len - OVERHEAD
    if room <= 0:
        raise ValueError("fragment size leaves no room for data")
    out_hdr = Header(hdr.icookie, hdr.rcookie, 0, hdr.exchange, hdr.flags & ~Flag.ENCRYPTION,
                     hdr.message_id)
    count = -(-len(message) // room)
    if count > FRAGMENTS_PER_MESSAGE:
        raise ValueError("message too long for the fragments a receiver takes")
    return [encode_message(out_hdr, [FragmentPayload(frag_id, i + 1, i + 1 == count,
                                                     message[i * room:(i + 1) * room])])
            for i in range(count)]


class Pool(Enum):
    """Which bounds a buffer counts against (limits.py): what anyone can fill never evicts
    what a configured or authenticated peer's message needs."""

    FIRST = "first"  # a first message from an address only `remote anonymous` takes
    FIRST_NAMED = "first-named"  # a first message from an address a `remote ADDRESS` names
    SA_ANONYMOUS = "sa-anonymous"  # an exchange whose cookies anyone can get (Engine._vouched)
    SA = "sa"  # an ISAKMP SA or exchange whose cookies only its peer knows


@dataclass(eq=False)
class Reassembly:
    """The pieces of one message received so far."""

    key: Hashable  # the message: peer, cookies, exchange, message ID, fragment ID
    room: Hashable  # what it counts against: an ISAKMP SA, or a first message's source
    pool: Pool
    expires_at: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    last: int | None = None  # the LAST fragment's number, once seen
    size: int = 0


class _Buffers:
    """Reassemblies oldest first, at most `per_room` in one room and `total` in all (None: as
    many as there are rooms, which the configuration bounds)."""

    def __init__(self, per_room: int, total: int | None) -> None:
        self.per_room, self.total = per_room, total
        self.order: OrderedDict[Reassembly, None] = OrderedDict()
        self.rooms: dict[Hashable, OrderedDict[Reassembly, None]] = {}

    def victims(self, room: Hashable) -> list[Reassembly]:
        """Who goes to make place for one more in `room`."""
        mine = self.rooms.get(room)
        if mine is not None and len(mine) >= self.per_room:
            return [next(iter(mine))]
        if self.total is not None and len(self.order) >= self.total:
            return [next(iter(self.order))]
        return []

    def add(self, r: Reassembly) -> None:
        self.order[r] = None
        self.rooms.setdefault(r.room, OrderedDict())[r] = None

    def remove(self, r: Reassembly) -> None:
        self.order.pop(r, None)
        mine = self.rooms.get(r.room)
        if mine is not None:
            mine.pop(r, None)
            if not mine:
                del self.rooms[r.room]


class Reassembler:
    """Every message being reassembled, each in the engine's deadline heap at its expiry.

    add() takes one fragment and gives back the whole message once its last piece is in; a
    fragment it refuses raises Drop naming the counter. Side effects (a buffer evicted or given
    up on) are counted in `counters`."""

    def __init__(self, timers: DeadlineHeap, counters: dict[str, int]) -> None:
        self._timers = timers
        self._counters = counters
        self._live: dict[Hashable, Reassembly] = {}
        self._pools = {Pool.SA: _Buffers(REASSEMBLIES_PER_SA, REASSEMBLIES),
                       Pool.SA_ANONYMOUS: _Buffers(REASSEMBLIES_PER_SA, REASSEMBLIES),
                       Pool.FIRST: _Buffers(REASSEMBLIES_FIRST_PER_SOURCE, REASSEMBLIES_FIRST),
                       Pool.FIRST_NAMED: _Buffers(REASSEMBLIES_FIRST_NAMED, None)}

    def __len__(self) -> int:
        return len(self._live)

    def holds(self, r: Reassembly) -> bool:
        return self._live.get(r.key) is r

    def add(self, key: Hashable, room: Hashable, pool: Pool, frag: FragmentPayload,
            now: float) -> bytes | None:
        if frag.number > FRAGMENTS_PER_MESSAGE:
            raise Drop("frag_oversize")
        r = self._live.get(key)
        if r is not None and self._conflicts(r, frag):
            # another message under the same ID (a forgery, or a peer that moved on after a
            # piece was lost): the old pieces go, the new message starts over
            self._counters["frag_conflicts"] += 1
            self.discard(r)
            r = None
        if r is None:
            r = self._open(key, room, pool, now)
        elif frag.number in r.pieces:
            raise Drop("frag_duplicates")  # a resent set fills only what was missing
        r.size += len(frag.data)
        if r.size > FRAGMENTED_MESSAGE_BYTES:
            self.discard(r)
            raise Drop("frag_oversize")
        r.pieces[frag.number] = frag.data
        if frag.last:
            r.last = frag.number
        if r.last is None or len(r.pieces) != r.last:
            return None
        self.discard(r)
        return b"".join(r.pieces[n] for n in range(1, r.last + 1))

    def expire(self, r: Reassembly) -> None:
        """Its deadline came (the heap says when): still incomplete, it is given up."""
        if self.holds(r):
            self._counters["frag_timeouts"] += 1
            self.discard(r)

    def discard(self, r: Reassembly) -> None:
        if self._live.get(r.key) is r:
            del self._live[r.key]
            self._pools[r.pool].remove(r)
            self._timers.forget(r)

    def discard_room(self, room: Hashable) -> None:
        """An ISAKMP SA went: whatever was being reassembled for it goes too."""
        for pool in self._pools.values():
            for r in list(pool.rooms.get(room, ())):
                self.discard(r)

    @staticmethod
    def _conflicts(r: Reassembly, frag: FragmentPayload) -> bool:
        held = r.pieces.get(frag.number)
        if held is not None:
            return held != frag.data  # the same number with other bytes
        if r.last is not None and (frag.last or frag.number > r.last):
            return True  # a second end, or a piece beyond the end
        return frag.last and bool(r.pieces) and max(r.pieces) > frag.number

    def _open(self, key: Hashable, room: Hashable, kind: Pool, now: float) -> Reassembly:
        pool = self._pools[kind]
        for victim in pool.victims(room):
            self._counters["frag_evicted"] += 1
            self.discard(victim)
        r = Reassembly(key, room, kind, now + REASSEMBLY_TIMEOUT_S)
        self._live[key] = r
        pool.add(r)
        self._timers.schedule(r, r.expires_at)
        return r
