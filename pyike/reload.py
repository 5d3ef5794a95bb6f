"""SIGHUP and reload-config: the configuration read again and applied in both processes, or
refused as a whole with the running one kept. SAs that a policy still covers stay, on the terms
they agreed; the others are deleted, the peer told.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from forward.specs import DeviceSpec, TunnelSpec
from pyike import logsetup
from pyike.acquires import IPPROTO_GRE
from pyike.events import EventHandler
from pyike.fwdclient import ForwardingClient
from pyike.ikesockets import listen_addresses
from pyike.live import (
    Live,
    config_spd,
    device_spec,
    engine_config,
    log_warnings,
    setkey_files,
    tunnel_specs,
)
from spd.policy import PROTO_ANY

log = logging.getLogger("pyike")


class Reloader:
    """`verbose`: -v/-d, debug logs whatever a reloaded `log` says; `service()` sends what
    the engine has to say once the new configuration is in."""

    def __init__(self, live: Live, engine, forwarding: ForwardingClient, events: EventHandler,
                 service: Callable[[], None], verbose: int = 0) -> None:
        self.live = live
        self.engine = engine
        self.forwarding = forwarding
        self.events = events
        self.service = service
        self.verbose = verbose

    async def reload(self) -> list[str]:
        """The errors that refused the new configuration; [] when it is in force."""
        from pyike import config as config_mod

        path = self.live.config_path
        try:
            new = config_mod.load(path)
            spd = config_spd(new)
        except Exception as exc:
            errors = [str(e) for e in getattr(exc, "errors", [exc])]
            for line in errors:
                log.error("reload refused: %s", line)
            return errors
        error = listen_change(self.live.config, new, path)
        if error:
            log.error("reload refused: %s", error)
            return [error]
        # always sent: the forwarding process also remakes a device deleted under it
        error = await self._retunnel(tunnel_specs(new))
        if error:
            log.error("reload refused: gre blocks: %s", error)
            return [f"gre blocks: {error}"]
        error = await self._redevice(device_spec(new))
        if error:
            log.error("reload refused: tunnel_device: %s", error)
            return [f"tunnel_device: {error}"]
        self.live.config = new
        self._apply_log_level(new)
        log_warnings(new)
        # live SAs keep the terms they agreed
        self.live.setkey_routes = None  # the setkey files apply again, in both processes
        self.engine.reconfigure(engine_config(new, self.live.tunnels), time.monotonic())
        self.forwarding.send("setkey", setkey_files(new))
        self._prune_unmatched(spd)
        log.info("configuration reloaded from %s", path)
        self.service()
        return []

    def _apply_log_level(self, config) -> None:
        """A changed `log` statement, in both processes (the line goes out at the old level)."""
        level = logsetup.level_for(config.log_level, self.verbose)
        if logging.getLogger().level != level:
            log.info("log level %s", logsetup.level_name(level))
        if logsetup.set_level(level):
            self.forwarding.send("log_level", level)

    async def _apply(self, verb: str, what) -> str | None:
        """A `tunnels` or `device` message the forwarding process answers: None when applied,
        else why not (its answer, or the pipe's failure)."""
        try:
            return await self.forwarding.ask(verb, what)
        except (RuntimeError, TimeoutError) as exc:
            return str(exc) or type(exc).__name__

    async def _retunnel(self, tunnels: list[TunnelSpec]) -> str | None:
        """Have the forwarding process apply changed `gre` blocks; None, or why it could not."""
        error = await self._apply("tunnels", tunnels)
        if error:
            return error
        old = {t.name: t for t in self.live.tunnels}
        new = {t.name: t for t in tunnels}
        for name in old.keys() - new.keys():
            log.info("%s: removed", name)
        for t in tunnels:
            if old.get(t.name) != t:
                log.info("%s: GRE %s->%s, %s peer %s, mtu %d (%s)", t.name, t.local, t.remote,
                         t.address, t.peer, t.mtu, "changed" if t.name in old else "created")
        self.live.tunnels = tunnels
        return None

    async def _redevice(self, device: DeviceSpec | None) -> str | None:
        """A changed `tunnel_device` statement, applied by the forwarding process."""
        if device == self.live.device:
            return None
        error = await self._apply("device", device)
        if error:
            return error
        if device is None:
            log.info("%s: removed", self.live.device.name)
        else:
            log.info("%s: ESP tunnel mode, mtu %d (%s)", device.name, device.mtu,
                     "changed" if self.live.device else "created")
        self.live.device = device
        return None

    def _prune_unmatched(self, spd) -> None:
        """Delete negotiated SAs that no `out` ipsec policy of the new SPD covers any more."""
        now = time.monotonic()
        for spi_in, pair in list(self.events.pairs.items()):
            if not still_wanted(spd, pair):
                log.info("policy for %s->%s gone: deleting its SAs", pair.outbound.src,
                         pair.outbound.dst)
                self.engine.delete_phase2(spi_in, now)


def listen_change(old, new, path: str) -> str | None:
    """Why `new` cannot be taken at a reload: the IKE sockets, the NAT-T port the forwarding
    process and its socket filter split ESP in UDP on, and the ports the engine floats to are
    all fixed at start. None when they stay as they are."""
    before, after = listen_addresses(old), listen_addresses(new)
    if before != after:
        return (f"{path}: listen: the IKE addresses and ports would change from "
                f"{_endpoints(before)} to {_endpoints(after)}; they change at a restart")
    ports = [(name, getattr(old.engine, name), getattr(new.engine, name))
             for name in ("isakmp_port", "natt_port")]
    for name, was, now in ports:
        if was != now:
            return (f"{path}: listen: the {name.replace('_', ' ')} would change from {was} "
                    f"to {now}; it changes at a restart")
    return None


def _endpoints(addresses: list[tuple[str, int]]) -> str:
    return ", ".join(f"{a}[{p}]" for a, p in addresses) or "none"


def still_wanted(spd, pair) -> bool:
    """Whether an `out` ipsec policy of `spd` still covers a negotiated pair (a Phase2Up): the
    GRE between its ends in transport mode; in tunnel mode its selectors, through a tunnel rule
    to the same far end. A pair whose policy the responder generated stays: that policy is the
    SA's own."""
    if pair.mode != "tunnel":
        p = spd.lookup("out", pair.outbound.src, pair.outbound.dst, IPPROTO_GRE, 0, 0, None)
        return p is not None and p.action == "ipsec"
    if getattr(pair, "generated_policy", False):
        return True
    (local, lproto, lport), (remote, rproto, rport) = pair.local_selector, pair.remote_selector
    p = spd.lookup("out", ipaddress.ip_network(local).network_address,
                   ipaddress.ip_network(remote).network_address, lproto or rproto or PROTO_ANY,
                   lport, rport)
    return (p is not None and p.action == "ipsec" and p.rules[0].mode == "tunnel"
            and str(p.rules[0].dst) == pair.outbound.dst)
