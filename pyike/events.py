"""What each engine event does outside the engine: racoon's log line, the `script` hook, the
records of the streaming control verbs, and for an IPsec SA pair its install in (or removal
from) the forwarding process, with the table of the pairs that are up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from forward.specs import SaSpec
from ikev1 import events as ev
from pyike.feed import EventFeed, engine_event, sa_change
from pyike.hooks import run_hook
from pyike.live import Live

log = logging.getLogger("pyike")


class EventHandler:
    """`send(*message)` goes to the forwarding process; `spawn(coro, what)` runs a hook in the
    background; `negotiated(peer)` is told when a negotiation with the peer ended, either way."""

    def __init__(self, live: Live, feed: EventFeed, send: Callable[..., None],
                 spawn: Callable[[Any, str], Any], negotiated: Callable[[str], None]) -> None:
        self.live = live
        self.feed = feed
        self.send = send
        self.spawn = spawn
        self.negotiated = negotiated
        self.pairs: dict[int, ev.Phase2Up] = {}  # inbound SPI -> the SA pair
        self.out_to_in: dict[int, int] = {}

    def pairs_with(self, dst: str, src: str | None = None) -> list[int]:
        """Inbound SPIs of the pairs between us (or `src`) and `dst`."""
        out = []
        for spi_in, pair in self.pairs.items():
            ends = {pair.outbound.src, pair.outbound.dst}
            if dst in ends and (src is None or src in ends):
                out.append(spi_in)
        return out

    def handle(self, e: Any) -> None:
        counters = self.live.counters
        if len(self.feed):
            pair = self.pairs.get(e.spi_in) if isinstance(e, ev.SaExpired | ev.SaDeleted) else None
            for record in engine_event(e, self.phase1_end, pair):
                self.feed.publish(record)
        if isinstance(e, ev.Phase1Up):
            counters["phase1_up"] += 1
            log.info("ISAKMP-SA established %s[%d]-%s[%d] spi:%s:%s", e.local[0], e.local[1],
                     e.peer[0], e.peer[1], e.icookie.hex(), e.rcookie.hex())
            self._hook("phase1_up", e.local, e.peer, e.peer_identity)
        elif isinstance(e, ev.Phase1Down):
            engine = self.live.config.engine
            port = e.peer[1] if e.peer[1] == engine.isakmp_port else engine.natt_port
            log.info("ISAKMP-SA %s %s[%d]-%s[%d] spi:%s:%s (%s)",
                     "expired" if e.reason == "expired" else "deleted",
                     self.live.local_for(e.peer[0]) or "?", port, e.peer[0], e.peer[1],
                     e.icookie.hex(), e.rcookie.hex(), e.reason)
            self._hook("phase1_down", None, e.peer, "")
        elif isinstance(e, ev.Phase2Up):
            self._install(e)
        elif isinstance(e, ev.InboundReady):  # the pair's Phase2Up keeps this SA
            self.send("install-inbound", sa_spec(e, e.inbound, "in"))
            log.debug("IPsec-SA inbound ready before its pair: ESP/%s %s->%s spi=%d(0x%08x)",
                      e.mode.capitalize(), e.inbound.src, e.inbound.dst, e.inbound.spi,
                      e.inbound.spi)
        elif isinstance(e, ev.InboundWithdrawn):
            self.send("withdraw", e.spi_in)
            log.debug("IPsec-SA inbound withdrawn, no pair came: ESP spi=%d(0x%08x)", e.spi_in,
                      e.spi_in)
        elif isinstance(e, ev.SaExpired | ev.SaDeleted):
            pair = self.pairs.get(e.spi_in)
            self._uninstall(e.spi_in, e.spi_out)
            what = "expired" if isinstance(e, ev.SaExpired) else "deleted"
            why = "" if isinstance(e, ev.SaExpired) else f" ({e.reason})"
            if pair is None:
                log.info("IPsec-SA %s: ESP spi=%d(0x%08x)%s", what, e.spi_in, e.spi_in, why)
            for keys in (pair.inbound, pair.outbound) if pair else ():
                log.info("IPsec-SA %s: ESP/%s %s[0]->%s[0] spi=%d(0x%08x)%s", what,
                         pair.mode.capitalize(), keys.src, keys.dst, keys.spi, keys.spi, why)
        elif isinstance(e, ev.PeerDead):
            counters["dead_peers"] += 1
            log.warning("DPD: remote %s[%d] seems to be dead", e.peer[0], e.peer[1])
            self.negotiated(e.peer[0])
            self._hook("phase1_dead", None, e.peer, "")
        elif isinstance(e, ev.NegotiationFailed):
            counters["negotiation_failed"] += 1
            log.warning("phase %d negotiation with %s[%d] failed: %s", e.phase, e.peer[0],
                        e.peer[1], e.reason)
            if e.phase == 1:
                # a refused quick mode fails at once: the acquire's guard then holds, so the
                # packets that keep coming retry it no more often than a kernel's larval SA
                # lets racoon (ACQUIRE_GUARD_S), not once a second
                self.negotiated(e.peer[0])
        elif isinstance(e, ev.Refused):  # unproven input: the engine folds these per reason
            more = f" ({e.folded} more since the last such line)" if e.folded else ""
            log.warning("refused from %s[%d], maybe forged: %s%s", e.peer[0], e.peer[1],
                        e.reason, more)

    def _install(self, e: ev.Phase2Up) -> None:
        self.live.counters["phase2_up"] += 1
        encap = e.encap_ports if e.encapsulation == "udp" else None
        specs = (sa_spec(e, e.inbound, "in"), sa_spec(e, e.outbound, "out"))
        self.send("install", specs)  # one message: forwarding never sees half a pair
        ports = {e.inbound.spi: encap[::-1], e.outbound.spi: encap} if encap else {}
        for keys in (e.inbound, e.outbound):
            sport, dport = ports.get(keys.spi, (0, 0))
            log.info("IPsec-SA established: ESP/%s %s[%d]->%s[%d] spi=%d(0x%08x)",
                     e.mode.capitalize(), keys.src, sport, keys.dst, dport, keys.spi, keys.spi)
        self.pairs[e.inbound.spi] = e
        self.out_to_in[e.outbound.spi] = e.inbound.spi
        if len(self.feed):
            for keys, direction in ((e.inbound, "in"), (e.outbound, "out")):
                self.feed.publish(sa_change("add", keys.spi, keys.src, keys.dst, direction,
                                            enc=keys.enc_alg, auth=keys.auth_alg))
        self.negotiated(e.peer[0])

    def _uninstall(self, spi_in: int, spi_out: int) -> None:
        pair = self.pairs.pop(spi_in, None)
        self.out_to_in.pop(spi_out, None)
        if pair is not None and len(self.feed):
            for keys, direction in ((pair.inbound, "in"), (pair.outbound, "out")):
                self.feed.publish(sa_change("delete", keys.spi, keys.src, keys.dst, direction,
                                            state="dead"))
        self.send("remove", spi_in, "in")
        self.send("remove", spi_out, "out")

    def _hook(self, event: str, local, peer, peer_id: str) -> None:
        path = self._script_for(event, peer[0] if peer else None)
        if path:
            env = {"REMOTE_ADDR": peer[0], "REMOTE_PORT": str(peer[1]), "REMOTE_ID": peer_id}
            if local:
                env.update(LOCAL_ADDR=local[0], LOCAL_PORT=str(local[1]))
            else:
                env.update(LOCAL_ADDR=self.live.local_for(peer[0]), LOCAL_PORT="500")
            self.spawn(run_hook(path, event, env), f"script {path} ({event})")

    def _script_for(self, event: str, peer: str | None) -> str | None:
        """The `script` of the peer's remote block (by address, else `anonymous`)."""
        scripts = self.live.config.scripts or {}
        for label, hooks in scripts.items():
            if peer is not None and label.split("[", 1)[0] == peer and event in hooks:
                return hooks[event]
        return scripts.get("anonymous", {}).get(event)

    def phase1_end(self, peer: str) -> tuple[str, int] | None:
        """Our IKE end towards `peer`, for events that name only the peer's."""
        local = self.live.local_for(peer)
        return (local, self.live.config.engine.isakmp_port) if local else None


def sa_spec(e: ev.Phase2Up | ev.InboundReady, keys: ev.EspKeys, direction: str) -> SaSpec:
    """One direction of an event's SA as the forwarding process installs it. The inbound one
    of an InboundReady and of the Phase2Up after it come out equal, which is how the
    forwarding core knows to keep the SA it has."""
    if isinstance(e, ev.Phase2Up):
        selectors = (e.local_selector, e.remote_selector)
        encap = e.encap_ports if e.encapsulation == "udp" else None
    else:
        selectors, encap = e.selectors, e.encap_ports
    return SaSpec(keys, direction, e.lifetime_s, (e.lifetime_kb or 0) * 1024, e.peer, selectors,
                  encap, e.mode, getattr(e, "generated_policy", False))
