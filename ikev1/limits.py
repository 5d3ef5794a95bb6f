"""What unauthenticated input may cost: half-open exchanges, replies, Diffie-Hellman work, events.

A first message's source address proves nothing (UDP can be spoofed from anywhere), so nothing
it costs may grow without bound or crowd out a configured peer:

- Half-open responder exchanges (a first message answered, the peer not yet authenticated) are
  bounded per source address and in all. When a room is full the oldest unproven exchange in it
  is evicted for the new one, so a flood ages its own entries out instead of locking real peers
  out. Each address that a `remote ADDRESS` block names has a room of its own, outside the
  shared pool that other addresses (`remote anonymous`) draw from. An exchange is unproven
  until the peer's second message arrives: one that got it came from an address that receives
  our replies, and is evicted before an unproven one only from a room that proven ones fill
  more than half of (anyone proves exchanges from addresses of its own where psk.txt has `*`).
- Aggressive mode computes a Diffie-Hellman value for its first message; that work is paced by
  token buckets: one shared by all sources, and one of its own for each configured address,
  which draws on the shared one when it is empty.
- Replies that unauthenticated input causes beyond the one answer per first message (error
  notifies) are capped per source and in all.
- Events about refused input are folded: one per reason per interval, with a count.
- A message sent in fragments (ikev1.fragment) is held until its last piece arrives, in a
  buffer bounded in fragments and bytes, for a bounded time; the buffers are bounded per
  ISAKMP SA and in all, and a first message's (no SA yet) in a pool of their own, per source
  address and in all, so a flood of forged fragments evicts only its own kind. What anyone can
  fill stays apart from what real peers need, as for half-open exchanges: a first message
  from a configured address has a room of its own outside the shared pool, and buffers under
  cookies that anyone can get (an unauthenticated exchange with a `remote anonymous` peer,
  whose message 2 went to an address the attacker may own) have a pool of their own beside
  that of ISAKMP SAs whose cookies only the peer knows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

HALF_OPEN_SHARED = 512  # unproven exchanges from addresses no `remote ADDRESS` names, in all
HALF_OPEN_PER_SOURCE = 8  # of those, from one address
HALF_OPEN_RESERVED = 64  # the room of each address a `remote ADDRESS` names
# (a spoofed flood from a configured peer's own address churns that room: the peer's real
# exchange survives HALF_OPEN_RESERVED forged first messages, 6 ms at 10,000 per second, which
# is longer than its round trip for message 3 on any link it would bring up)

AGGRESSIVE_DH_RATE = 50.0  # aggressive-mode first messages answered per second, all sources
AGGRESSIVE_DH_BURST = 50.0
AGGRESSIVE_DH_RATE_CONFIGURED = 5.0  # per configured address, beside the shared bucket
AGGRESSIVE_DH_BURST_CONFIGURED = 10.0

NOTIFY_RATE_PER_SOURCE = 1.0  # unprotected error notifies per second to one address
NOTIFY_BURST_PER_SOURCE = 5.0
NOTIFY_RATE = 100.0  # and to all addresses together
NOTIFY_BURST = 200.0
NOTIFY_SOURCES_TRACKED = 4096  # per-source buckets kept; the least recent are forgotten

FRAGMENTS_PER_MESSAGE = 32  # racoon sends 512 bytes a fragment: 16 KiB, far above what PSK
FRAGMENTED_MESSAGE_BYTES = 16384  # phase 1 and quick mode with an 8192-bit group ever need
REASSEMBLY_TIMEOUT_S = 15.0  # a set arrives within milliseconds; a lost piece comes back with
# the peer's resend of the whole set (racoon: every 10 s), which starts a buffer afresh
REASSEMBLIES_PER_SA = 2  # messages of one ISAKMP SA being reassembled at once
REASSEMBLIES = 256  # of all ISAKMP SAs together; as many again for unproven anonymous ones
REASSEMBLIES_FIRST_PER_SOURCE = 2  # first messages (no SA yet) from one anonymous address
REASSEMBLIES_FIRST = 64  # first messages from all anonymous addresses
REASSEMBLIES_FIRST_NAMED = 8  # first messages from one address a `remote ADDRESS` names

EVENT_INTERVAL_S = 60.0  # one Refused event per reason per minute, with what it folded


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; take() spends one if there is one."""

    rate: float
    burst: float
    tokens: float = -1.0  # full at the first take
    at: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class SourceBuckets:
    """A token bucket per source address beside one for all, remembering `keep` sources."""

    def __init__(self, rate: float, burst: float, total_rate: float, total_burst: float,
                 keep: int) -> None:
        self._rate, self._burst, self._keep = rate, burst, keep
        self._total = TokenBucket(total_rate, total_burst)
        self._by_source: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, source: str, now: float) -> bool:
        bucket = self._by_source.pop(source, None) or TokenBucket(self._rate, self._burst)
        self._by_source[source] = bucket  # most recent last
        if len(self._by_source) > self._keep:
            self._by_source.popitem(last=False)
        return bucket.take(now) and self._total.take(now)


class _Room:
    """One room's entries, oldest first: unproven ones go before proven ones."""

    __slots__ = ("unproven", "proven")

    def __init__(self) -> None:
        self.unproven: OrderedDict[Hashable, None] = OrderedDict()
        self.proven: OrderedDict[Hashable, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.unproven) + len(self.proven)

    def oldest(self, cap: int) -> Hashable:
        """The entry a full room of `cap` evicts. Proven entries go last only while they
        hold at most half of it: with psk.txt's `*` anyone proves exchanges from addresses of
        its own, and a room full of those would leave a real peer's fresh exchange the one
        that each forged first message evicts."""
        if self.unproven and len(self.proven) <= cap // 2:
            return next(iter(self.unproven))
        return next(iter(self.proven or self.unproven))


class HalfOpenPool:
    """Responder exchanges not yet authenticated, in rooms: one per configured address, and
    the shared pool with a per-source cap for every other address. Entries are any hashable
    objects; the pool only orders and counts them, all in constant time.

    An entry is unproven until the peer's second message shows its address receives our
    replies (promote()). A full room evicts its oldest unproven entry, and a proven one only
    when proven ones hold more than half of it: a spoofed flood ages out its own entries, and a
    peer that answered is shielded from it, yet answering from addresses of one's own cannot
    shield a whole room. admit() names the entry to evict for a new one; the caller tears it
    down, which calls remove(), and then add()s the new one.
    """

    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}  # source -> its entries
        self._shared = _Room()  # every entry of unconfigured sources
        self._source: dict[Hashable, tuple[str, bool]] = {}  # entry -> (source, configured)

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, entry: Hashable) -> bool:
        return entry in self._source

    def admit(self, source: str, configured: bool) -> list[Hashable]:
        room = self._rooms.get(source)
        cap = HALF_OPEN_RESERVED if configured else HALF_OPEN_PER_SOURCE
        if room is not None and len(room) >= cap:
            return [room.oldest(cap)]
        if not configured and len(self._shared) >= HALF_OPEN_SHARED:
            return [self._shared.oldest(HALF_OPEN_SHARED)]
        return []

    def add(self, entry: Hashable, source: str, configured: bool) -> None:
        room = self._rooms.get(source)
        if room is None:
            room = self._rooms[source] = _Room()
        room.unproven[entry] = None
        self._source[entry] = (source, configured)
        if not configured:
            self._shared.unproven[entry] = None

    def promote(self, entry: Hashable) -> None:
        """The peer answered our reply from that address: evicted last from now on."""
        where = self._source.get(entry)
        if where is None:
            return
        source, configured = where
        for room in (self._rooms[source], *(() if configured else (self._shared,))):
            if entry in room.unproven:
                del room.unproven[entry]
                room.proven[entry] = None

    def remove(self, entry: Hashable) -> None:
        """Evicted, timed out, or authenticated: out of the pool."""
        where = self._source.pop(entry, None)
        if where is None:
            return
        source, configured = where
        room = self._rooms[source]
        for r in (room, *(() if configured else (self._shared,))):
            r.unproven.pop(entry, None)
            r.proven.pop(entry, None)
        if not room:
            del self._rooms[source]


@dataclass
class FoldedEvents:
    """One event per key per interval: allow() says how many it folded since the last one, or
    None while the interval runs."""

    interval: float = EVENT_INTERVAL_S
    _next: dict[Hashable, float] = field(default_factory=dict)
    _folded: dict[Hashable, int] = field(default_factory=dict)

    def allow(self, key: Hashable, now: float) -> int | None:
        if now < self._next.get(key, float("-inf")):
            self._folded[key] = self._folded.get(key, 0) + 1
            return None
        self._next[key] = now + self.interval
        return self._folded.pop(key, 0)

