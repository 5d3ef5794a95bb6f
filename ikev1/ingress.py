"""Which received IKE datagram the engine works on next, when more arrive than it can handle.

A flood of forged first messages costs the engine tens of microseconds each (parse, choose a
proposal, answer). Taken in arrival order, every message of a real negotiation waits behind
the flood in the socket's queue, and is lost when that queue overflows. The shell instead reads
whatever the sockets hold into an IngressQueue and lets the engine take from it by priority:

1. EXCHANGE: a message under both cookies of an ISAKMP SA or exchange the engine holds for
   its sender's address, an authenticated one or one with an address a `remote ADDRESS`
   section names, and a reply to a first message of ours;
2. CONFIGURED: a first message from an address that a `remote ADDRESS` section names;
3. ANONYMOUS: a later message of a responder exchange with an address only `remote anonymous`
   takes. Its sender got our reply, which proves its address and nothing more: anyone can
   open such exchanges from an address of its own and flood under their cookies, and a flood
   ranked with EXCHANGE would shed the messages of configured and authenticated peers;
4. OTHER: any other first message, and whatever the engine will drop anyway.

A first message sent again ranks as it did the first time: its cookie is the sender's own
choice, so a repeat proves nothing (a spoofer repeating one forged message would otherwise
reach EXCHANGE without ever seeing a reply).

Each priority has a queue of its own, bounded; a full queue drops its oldest entry (those are
the stalest, and a real peer resends). Sorting costs a header read and two dictionary lookups
(`Engine.ingress_priority`), so the shell can read a flood at the rate it arrives and spend
what is left on first messages, as strongSwan's receiver sheds IKE_SA_INIT under job load.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import IntEnum

from .sa import Address


class Priority(IntEnum):
    EXCHANGE = 0
    CONFIGURED = 1
    ANONYMOUS = 2
    OTHER = 3


# Datagrams held per priority. Messages of known exchanges are few and cheap; the room for
# first messages is what the engine works through in a few milliseconds, so a queued one is
# still fresh when its turn comes.
QUEUE_LIMITS = {Priority.EXCHANGE: 1024, Priority.CONFIGURED: 128, Priority.ANONYMOUS: 256,
                Priority.OTHER: 64}
READ_LIMIT = 512  # datagrams the shell reads from its sockets before the engine's next turn
# Datagrams the engine handles before the shell reads its sockets again. A real peer's message
# that arrives during a turn waits for the rest of it: at ~80 µs per forged first message, 4 keep
# that wait near 0.3 ms, while a turn's own cost (one empty read per socket, the output flushed)
# stays a few per cent of it (benchmarks/attack.py: bring-up under 10,000 forged MM1/s 1.6-1.7x
# its unflooded time with 4, 2.2x with 8, 3.6-4.8x with 16).
TURN = 4

Datagram = tuple[bytes, Address, Address]  # data, local, peer


class IngressQueue:
    """Received datagrams in three bounded queues; pop() gives the most urgent, oldest first."""

    def __init__(self, classify: Callable[[bytes, Address, Address], Priority],
                 limits: dict[Priority, int] | None = None) -> None:
        self._classify = classify
        self._limits = dict(limits or QUEUE_LIMITS)
        self._queues: tuple[deque[Datagram], ...] = tuple(deque() for _ in Priority)
        self.shed: dict[str, int] = {p.name.lower(): 0 for p in Priority}  # dropped when full

    def push(self, data: bytes, local: Address, peer: Address) -> Priority:
        priority = self._classify(data, local, peer)
        queue = self._queues[priority]
        if len(queue) >= self._limits[priority]:
            queue.popleft()
            self.shed[priority.name.lower()] += 1
        queue.append((data, local, peer))
        return priority

    def pop(self) -> Datagram | None:
        for queue in self._queues:
            if queue:
                return queue.popleft()
        return None

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues)

    def __bool__(self) -> bool:
        return any(self._queues)
