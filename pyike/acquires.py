"""What the forwarding process asks of IKE, as the kernel asks racoon over PF_KEY: an acquire
(traffic for a GRE tunnel or a tunnel-mode policy with no SA: negotiate a pair for its GRE, or
for the policy's selectors in tunnel mode) and a lifetime expiry (soft: negotiate the next pair;
hard: the pair is gone).
"""

from __future__ import annotations

import ipaddress
import logging
import time

from forward.events import Acquire
from ikev1.policy import TrafficSelector
from pyike.events import EventHandler
from pyike.feed import EventFeed, sa_change
from pyike.live import NO_LOCAL_ADDRESS, Live, engine_config

log = logging.getLogger("pyike")

IPPROTO_GRE = 47
ACQUIRE_GUARD_S = 30.0  # an acquire for a pair already being negotiated is ignored this long


class Acquires:
    def __init__(self, live: Live, engine, events: EventHandler, feed: EventFeed) -> None:
        self.live = live
        self.engine = engine
        self.events = events
        self.feed = feed
        self.acquiring: dict[Acquire, float] = {}

    def acquire(self, request: Acquire) -> bool:
        """racoon's acquire; False when no negotiation could start (logged once per guard)."""
        now = time.monotonic()
        if now - self.acquiring.get(request, -ACQUIRE_GUARD_S) < ACQUIRE_GUARD_S:
            return True  # already under way
        self.acquiring[request] = now
        self.live.counters["acquires"] += 1
        local, remote = request.local, request.remote
        if not self.have_local_address(now):
            log.warning("cannot negotiate with %s: %s", remote, NO_LOCAL_ADDRESS)
            return False
        local_sel, remote_sel = selectors(request)
        log.info("initiate new phase 2 negotiation: %s[0]<=>%s[0] (%s %s <=> %s)", local,
                 remote, request.mode, local_sel.network, remote_sel.network)
        try:
            self.engine.initiate(remote, now, local_selector=local_sel,
                                 remote_selector=remote_sel, mode=request.mode)
        except Exception as exc:
            log.warning("cannot negotiate with %s: %s", remote, exc)
            return False
        return True

    def acquire_now(self, local: str, remote: str) -> bool:
        """An acquire the operator asked for (a GRE tunnel's): the guard of an earlier one does
        not hold it."""
        request = Acquire(local, remote)
        self.acquiring.pop(request, None)
        return self.acquire(request)

    def negotiated(self, peer: str) -> None:
        """A negotiation with `peer` ended (up, failed or the peer dead): the next acquire
        for it counts again."""
        for request in [r for r in self.acquiring if r.remote == peer]:
            del self.acquiring[request]

    def have_local_address(self, now: float) -> bool:
        """The engine needs our address to start phase 1; one may have appeared since."""
        if self.engine.config.local_addresses:
            return True
        cfg = engine_config(self.live.config, self.live.tunnels, self.live.setkey_routes)
        if not cfg.local_addresses:
            return False
        self.engine.reconfigure(cfg, now)
        log.info("local addresses: %s", " ".join(cfg.local_addresses))
        return True

    def expire(self, spi: int, direction: str, kind: str) -> None:
        events = self.events
        spi_in = events.out_to_in.get(spi) if direction == "out" else spi
        pair = events.pairs.get(spi_in)
        if len(self.feed):
            keys = None if pair is None else (pair.outbound if direction == "out" else pair.inbound)
            self.feed.publish(sa_change("expire", spi, keys.src if keys else "",
                                        keys.dst if keys else "", direction,
                                        state="dead" if kind == "hard" else "dying"))
        if pair is None:
            return  # a manual SA, or one the engine already removed
        now = time.monotonic()
        if kind == "hard":
            self.engine.sa_hard_expired(spi_in, now)
        elif pair.lifetime_kb:  # time lifetimes are the engine's own; bytes only we can see
            self.engine.sa_soft_expired(spi_in, now)


def selectors(request: Acquire) -> tuple[TrafficSelector, TrafficSelector]:
    """The client IDs quick mode proposes: in transport mode the GRE between the two ends (the
    seed article's policy), in tunnel mode the policy's networks, protocol and ports."""
    if request.mode == "tunnel":
        return (TrafficSelector(ipaddress.ip_network(request.local_net), request.protocol,
                                request.local_port),
                TrafficSelector(ipaddress.ip_network(request.remote_net), request.protocol,
                                request.remote_port))
    return (TrafficSelector(ipaddress.ip_network(request.local), IPPROTO_GRE, 0),
            TrafficSelector(ipaddress.ip_network(request.remote), IPPROTO_GRE, 0))
