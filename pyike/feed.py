"""What the control socket's streaming verbs follow: racoon's admin-port events and SA changes.

The IKE process publishes a record for each engine event (`racoonctl show-event`,
`establish-sa -w`, `vpn-connect`/`vpn-disconnect`) and for each SA installed, removed or expired
(`pyike-setkey -x`); each listening connection has its own bounded queue. Records are plain,
JSON-ready dicts; an SA record never holds a key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ikev1 import events as ev

# racoon's event numbers (evt.h), which racoonctl's messages are keyed by
EVT_RACOON_QUIT = 0x0001
EVT_PHASE1_UP = 0x0100
EVT_PHASE1_DOWN = 0x0101
EVT_PHASE1_NO_RESPONSE = 0x0102
EVT_PHASE1_NO_PROPOSAL = 0x0103
EVT_PHASE1_AUTH_FAILED = 0x0104
EVT_PHASE1_DPD_TIMEOUT = 0x0105
EVT_PHASE1_PEER_DELETED = 0x0106
EVT_PHASE1_MODE_CFG = 0x0107
EVT_PHASE2_NO_PHASE1 = 0x0200
EVT_PHASE2_UP = 0x0201
EVT_PHASE2_DOWN = 0x0202
EVT_PHASE2_NO_RESPONSE = 0x0203

# what ends a wait for an SA (racoon closes the waiting connection: racoonctl exits 1)
FAILURES = frozenset({EVT_PHASE1_NO_RESPONSE, EVT_PHASE1_NO_PROPOSAL, EVT_PHASE1_AUTH_FAILED,
                      EVT_PHASE1_DPD_TIMEOUT, EVT_PHASE2_NO_PHASE1, EVT_PHASE2_NO_RESPONSE})

QUEUE_MAX = 1024  # records a slow listener may fall behind by before it is cut off

Record = dict[str, Any]


def _end(addr: tuple[str, int] | None) -> list | None:
    return None if addr is None else [addr[0], int(addr[1])]


def event(code: int, src: tuple[str, int] | None, dst: tuple[str, int] | None, *,
          reason: str = "", now: float | None = None) -> Record:
    """One racoon event: its number, the phase-1 endpoints (ours first) and pyike's reason."""
    return {"kind": "event", "type": code, "src": _end(src), "dst": _end(dst),
            "peer": dst[0] if dst else None, "reason": reason,
            "time": time.time() if now is None else now}


def _failure_code(phase: int, reason: str) -> int:
    """racoon names few failures; pyike's reason text is kept beside the number."""
    text = reason.lower()
    if phase == 1:
        if "proposal" in text:
            return EVT_PHASE1_NO_PROPOSAL
        if "auth" in text or "hash" in text or "key" in text:
            return EVT_PHASE1_AUTH_FAILED
        return EVT_PHASE1_NO_RESPONSE
    if "phase 1" in text:
        return EVT_PHASE2_NO_PHASE1
    return EVT_PHASE2_NO_RESPONSE


def engine_event(e: Any, local_for: Callable[[str], tuple[str, int] | None],
                 pair: ev.Phase2Up | None = None) -> list[Record]:
    """The racoon events an engine event is. `local_for(peer address)` gives our phase-1
    end where the event does not carry it; `pair` is the SA pair a phase-2 end concerns."""
    if isinstance(e, ev.Phase1Up):
        # racoon follows PHASE1_UP with MODE_CFG at once when the remote has no mode_cfg,
        # which pyike never has; `establish-sa -w isakmp` and `vpn-connect` wait for it
        return [event(EVT_PHASE1_UP, e.local, e.peer), event(EVT_PHASE1_MODE_CFG, e.local, e.peer)]
    if isinstance(e, ev.Phase1Down):
        code = EVT_PHASE1_PEER_DELETED if e.reason == "peer-deleted" else EVT_PHASE1_DOWN
        return [event(code, local_for(e.peer[0]), e.peer, reason=e.reason)]
    if isinstance(e, ev.Phase2Up):
        return [event(EVT_PHASE2_UP, e.local, e.peer)]
    if isinstance(e, ev.SaExpired | ev.SaDeleted):
        local = pair.local if pair is not None else local_for(e.peer[0])
        return [event(EVT_PHASE2_DOWN, local, e.peer, reason=getattr(e, "reason", "expired"))]
    if isinstance(e, ev.PeerDead):
        return [event(EVT_PHASE1_DPD_TIMEOUT, local_for(e.peer[0]), e.peer, reason="dead")]
    if isinstance(e, ev.NegotiationFailed):
        return [event(_failure_code(e.phase, e.reason), local_for(e.peer[0]), e.peer,
                      reason=e.reason)]
    return []


def sa_change(action: str, spi: int, src: str, dst: str, direction: str, *,
              state: str = "mature", enc: str = "", auth: str = "",
              now: float | None = None) -> Record:
    """An SA added, deleted or expired (soft: state dying): its algorithms, never its keys."""
    return {"kind": "sa", "action": action, "spi": spi, "src": src, "dst": dst,
            "direction": direction, "state": state, "enc": enc, "auth": auth,
            "time": time.time() if now is None else now}


class EventFeed:
    """Fan-out of records to the connections that follow them."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()

    def __len__(self) -> int:
        return len(self._queues)

    def publish(self, record: Record) -> None:
        for q in list(self._queues):
            if q.qsize() >= QUEUE_MAX - 1:  # the listener stopped reading: cut it off
                self._queues.discard(q)
                q.put_nowait(None)
            else:
                q.put_nowait(record)

    def close(self) -> None:
        """Shutdown: every listener gets racoon's quit event, then its stream ends."""
        self.publish(event(EVT_RACOON_QUIT, None, None))
        for q in self._queues:
            q.put_nowait(None)
        self._queues.clear()

    def records(self, accept: Callable[[Record], bool] = lambda r: True) -> Listener:
        """The records published from now on (the listener counts from this call, not from
        its first read) that `accept` takes, until the feed closes or the listener does."""
        listener = Listener(self, accept)
        self._queues.add(listener.queue)
        return listener

    def _forget(self, q: asyncio.Queue) -> None:
        self._queues.discard(q)


class Listener:
    """One connection's view of the feed: an async iterator of records."""

    def __init__(self, feed: EventFeed, accept: Callable[[Record], bool]) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_MAX)
        self._feed = feed
        self._accept = accept

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Record:
        while (record := await self.queue.get()) is not None:
            if self._accept(record):
                return record
        self._feed._forget(self.queue)
        raise StopAsyncIteration

    def close(self) -> None:
        self._feed._forget(self.queue)

    async def aclose(self) -> None:
        self.close()
