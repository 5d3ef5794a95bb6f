"""What the control verbs (pyike.control) may ask of the IKE process: its SAs and timers,
deletions and negotiations, live setkey runs, a reload and the status report. The verbs see this
and nothing else of the daemon.

After a change (`delete_*`, `initiate_phase1`, `acquire_now`) a verb calls `service()`, which
sends what the engine has to say (deletes, first messages) and re-arms its timer.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyike.feed import Record, sa_change
from pyike.live import tunnel_routes

if TYPE_CHECKING:
    from pyike.daemon import Daemon


class Operations:
    def __init__(self, d: Daemon) -> None:
        self._d = d
        self._engine = d.engine
        self._events = d.events
        self._acquires = d.acquires
        self._forwarding = d.forwarding
        self._feed = d.feed

    # --- reading -------------------------------------------------------------------------------

    def phase1_sas(self) -> list[dict[str, Any]]:
        """The engine's ISAKMP SAs (rows with monotonic times)."""
        return self._engine.phase1_sas()

    def schedule(self) -> list[dict[str, Any]]:
        """The engine's timers (rows with monotonic times)."""
        return self._engine.schedule()

    def pairs_with(self, dst: str, src: str | None = None) -> list[int]:
        """Inbound SPIs of the negotiated pairs between us (or `src`) and `dst`."""
        return self._events.pairs_with(dst, src)

    def remote_address(self, name: str) -> str | None:
        """The address of the `remote` block labelled `name` (or "anonymous"); None if none."""
        names = getattr(self._d.config, "remote_names", {}) or {}
        return names.get(name)

    def local_for(self, peer: str) -> str:
        """Our end of the `gre` tunnel towards `peer`; "" when none goes there."""
        return self._d.live.local_for(peer)

    def have_local_address(self, now: float) -> bool:
        return self._acquires.have_local_address(now)

    def follow(self, wanted: Callable[[Record], bool]) -> AsyncIterator[Record]:
        """The feed's records that `wanted` takes, from now on (close it when done)."""
        return self._feed.records(wanted)

    def query(self, what: str) -> Awaitable[Any]:
        """A dump or the counters of the forwarding process (pyike.dataplane's queries)."""
        return self._forwarding.query(what)

    # --- changing ------------------------------------------------------------------------------

    def delete_phase1(self, peer: str, now: float, *, ipsec: bool = True) -> None:
        self._engine.delete_phase1(peer, now, ipsec=ipsec)

    def delete_phase2(self, spi_in: int, now: float) -> None:
        self._engine.delete_phase2(spi_in, now)

    def initiate_phase1(self, peer: str, now: float) -> None:
        self._engine.initiate_phase1(peer, now)

    def acquire_now(self, local: str, remote: str) -> bool:
        """Negotiate a pair for the GRE between `local` and `remote` now, whatever an earlier
        acquire; False when it cannot start (logged)."""
        return self._acquires.acquire_now(local, remote)

    def service(self) -> None:
        self._d.service()

    async def run_setkey(self, sk) -> dict[str, list]:
        """Have the forwarding process run the setkey commands `sk`: `{"added": [...],
        "removed": [...]}` of `(spi, src, dst, direction)`, or `{"error": ...}`. The
        negotiated SAs it removed are deleted in the engine too (the peer told), so that
        traffic negotiates afresh."""
        changes = await self._forwarding.ask("setkey-run", sk)
        if "error" in changes:
            return changes
        now = time.monotonic()
        # the responder's tunnel policies follow the SPD at once, as racoon's follow the
        # kernel's (its getsp_r() looks each quick mode up there)
        live = self._d.live
        live.setkey_routes = tunnel_routes(changes.pop("policies"))
        self._engine.reconfigure(
            dataclasses.replace(self._engine.config, policies=live.setkey_routes), now)
        pairs, out_to_in = self._events.pairs, self._events.out_to_in
        for spi, src, dst, direction in changes["removed"]:
            spi_in = spi if direction == "in" else out_to_in.get(spi)
            if spi_in in pairs:
                self._engine.delete_phase2(spi_in, now)
            else:
                self._feed.publish(sa_change("delete", spi, src, dst, direction, state="dead"))
        for spi, src, dst, direction in changes["added"]:
            self._feed.publish(sa_change("add", spi, src, dst, direction))
        self.service()
        return changes

    def reload(self) -> Awaitable[list[str]]:
        """reload-config: as SIGHUP; the errors that refused the configuration, or []."""
        return self._d.reload()

    async def status(self) -> dict[str, Any]:
        """The status report's data."""
        d = self._d
        dp = await self.query("counters")
        engine_counters = getattr(self._engine, "counters", {})
        if not isinstance(engine_counters, dict):
            engine_counters = dict(getattr(engine_counters, "__dict__", {}))
        return {
            "pid": os.getpid(), "forwarding_pid": self._forwarding.pid,
            "config": d.live.config_path, "uptime": round(time.time() - d.started_wall, 1),
            "phase1": self._engine.phase1_count(), "phase2": len(self._events.pairs),
            # the ingress queue's shed counts beside the IKE process's own: datagrams read
            # and dropped before the engine saw them
            "daemon": {**d.live.counters, **d.sockets.shed()}, "engine": engine_counters,
            "dataplane": dp["counters"], "tunnels": dp["tunnels"],
            "device": dp.get("device"),  # the tunnel-mode device, None without one
        }
