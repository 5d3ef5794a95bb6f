"""The security association database: inbound SAs by SPI, outbound SAs by (src, dst, group).

An outbound SA's group tells apart SAs between the same two ends that carry different traffic:
None for transport mode (GRE), and for tunnel mode the selector it was negotiated for, so that
two subnet pairs over one peer pair each keep their own SA (RFC 4301 §4.4.2).

Lookups are single dict reads; the choice among several outbound SAs for one group is made
when SAs come, go or change state, not per packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Iterator
from typing import Literal

from esp.sa import EspSA

ExpiryKind = Literal["soft", "hard"]
_RANK = {"mature": 2, "dying": 1, "dead": 0}


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address))


class SAD:
    def __init__(self) -> None:
        self._inbound: dict[int, EspSA] = {}
        # inbound(spi): the SA by SPI, or None. The dict's own get, bound once: the forwarding
        # core calls it per ESP packet, and a Python method around it costs a frame.
        self.inbound: Callable[[int], EspSA | None] = self._inbound.get
        self._outbound: dict[tuple, list[EspSA]] = {}  # (src, dst, group) -> SAs
        self._best: dict[tuple, EspSA] = {}
        self._group: dict[int, Hashable] = {}  # id(sa) -> group, for outbound SAs not in None
        self._state: dict[int, str] = {}  # id(sa) -> last state reported by expire()
        self._order: list[EspSA] = []  # installation order, for dumps

    def add(self, sa: EspSA, group: Hashable = None) -> None:
        """Install `sa`; an inbound SA replaces any inbound SA with the same SPI. `group`: see
        the module docstring (outbound only)."""
        if sa.direction == "in":
            old = self._inbound.get(sa.spi)
            if old is not None:
                self._forget(old)
            self._inbound[sa.spi] = sa
        else:
            if group is not None:
                self._group[id(sa)] = group
            self._outbound.setdefault(self._key(sa), []).append(sa)
        self._order.append(sa)
        self._state[id(sa)] = sa.lifetime_state(sa.created)
        if sa.direction == "out":
            self._choose(self._key(sa))

    def _key(self, sa: EspSA) -> tuple:
        return (sa.src, sa.dst, self._group.get(id(sa)))

    def remove(self, spi: int | EspSA, direction: str | None = None) -> list[EspSA]:
        """Remove the given SA, or every SA with SPI `spi` (optionally only one direction).

        An outbound SPI is chosen by the peer and can equal one of ours, hence `direction`.
        Returns what was removed.
        """
        if isinstance(spi, EspSA):
            victims = [spi] if spi in self._order else []
        else:
            victims = [
                sa for sa in self._order
                if sa.spi == spi and (direction is None or sa.direction == direction)
            ]
        for sa in victims:
            self._forget(sa)
        return victims

    def _forget(self, sa: EspSA) -> None:
        self._order = [other for other in self._order if other is not sa]
        self._state.pop(id(sa), None)
        if sa.direction == "in":
            if self._inbound.get(sa.spi) is sa:
                del self._inbound[sa.spi]
            return
        key = self._key(sa)
        self._group.pop(id(sa), None)
        group = [other for other in self._outbound.get(key, ()) if other is not sa]
        if group:
            self._outbound[key] = group
        else:
            self._outbound.pop(key, None)
        self._choose(key)

    def _choose(self, key: tuple) -> None:
        """Newest mature SA wins; a dying one serves only while no mature one exists."""
        best = None
        for sa in self._outbound.get(key, ()):
            rank = _RANK[self._state.get(id(sa), "mature")]
            if rank and (best is None or (rank, sa.created) >= best[0]):
                best = ((rank, sa.created), sa)
        if best is None:
            self._best.pop(key, None)
        else:
            self._best[key] = best[1]

    def outbound(self, src: str, dst: str, group: Hashable = None) -> EspSA | None:
        sa = self._best.get((src, dst, group))
        if sa is None:
            try:
                sa = self._best.get((_canonical(src), _canonical(dst), group))
            except ValueError:
                return None
        return sa

    def groups(self, src: str, dst: str) -> list[tuple[Hashable, EspSA]]:
        """(group, chosen SA) of every group between the two ends but None's: what tunnel mode
        chooses among, once per flow."""
        return [(key[2], sa) for key, sa in self._best.items()
                if key[2] is not None and key[0] == src and key[1] == dst]

    def expire(self, now: float) -> list[tuple[EspSA, ExpiryKind]]:
        """Lifetime transitions since the last call: 'soft' (rekey) and 'hard' (remove), each
        reported once per SA, soft before hard."""
        events: list[tuple[EspSA, ExpiryKind]] = []
        changed: set[tuple] = set()
        for sa in self._order:
            before = self._state.get(id(sa), "mature")
            after = sa.lifetime_state(now)
            if after == before:
                continue
            self._state[id(sa)] = after
            if before == "mature":
                events.append((sa, "soft"))
            if after == "dead":
                events.append((sa, "hard"))
            if sa.direction == "out":
                changed.add(self._key(sa))
        for key in changed:
            self._choose(key)
        return events

    def state(self, sa: EspSA) -> str:
        """The state last seen by expire() (or at install): mature, dying or dead."""
        return self._state.get(id(sa), "mature")

    def __iter__(self) -> Iterator[EspSA]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def flush(self) -> None:
        """Remove every SA (setkey's `flush`)."""
        self._inbound.clear()
        self._outbound.clear()
        self._best.clear()
        self._group.clear()
        self._state.clear()
        self._order.clear()
