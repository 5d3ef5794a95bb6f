"""One deadline heap for every timer of the engine: each owner (an ISAKMP SA, a quick mode, an
IPsec SA pair, a peer's waiting acquires) is in it at its earliest deadline, so the next timer
and the owners due cost O(log n), never a scan of every SA.

Lazy: an owner whose deadline moved later keeps its earlier entry; when that comes due the
engine finds nothing to do yet and schedules the owner again at its real deadline. An owner
whose deadline moves earlier must be scheduled again at once (schedule() keeps the earlier).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class DeadlineHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._at: dict[Hashable, float] = {}  # each owner's live entry
        self._order = itertools.count()  # ties in time: first scheduled first; owners unordered

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, owner: Hashable, when: float | None) -> None:
        """`owner` is due at `when` (None: nothing due); an earlier entry it has stands."""
        if when is None:
            return
        current = self._at.get(owner)
        if current is not None and current <= when:
            return
        self._at[owner] = when
        heapq.heappush(self._heap, (when, next(self._order), owner))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._at):
            self._compact()  # superseded entries never outnumber live ones for long

    def forget(self, owner: Hashable) -> None:
        self._at.pop(owner, None)

    def next_time(self) -> float | None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # superseded or forgotten
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """The owners due by `now`, each once, taken out: the caller schedules them again."""
        due = []
        while (when := self.next_time()) is not None and when <= now:
            _, _, owner = heapq.heappop(self._heap)
            del self._at[owner]
            due.append(owner)
        return due

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._at.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
