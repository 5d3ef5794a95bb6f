"""What the parts of the IKE process share: the configuration in force, its tunnels and the
counters `status` shows; and what the parts derive from a configuration.

A reload replaces `config` and `tunnels` here, and every part reads them here, so no part holds
a configuration older than the others.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Iterable
from typing import Any

from forward.specs import DeviceSpec, TunnelSpec
from ikev1.policy import Phase2Route, TrafficSelector
from pyike.tun import (
    DEFAULT_OUTER_MTU,
    host_addresses,
    inner_mtu,
    outer_mtu_towards,
    tunnel_mode_mtu,
)
from spd.policy import PROTO_ANY, Policy

log = logging.getLogger("pyike")

NO_LOCAL_ADDRESS = ("no local address known: no `listen isakmp` line, no `gre` block and no "
                    "global address on any interface")


def counters() -> dict[str, int]:
    """The IKE process's own counters (each part counts its own), in the order `status` shows."""
    # esp_in_udp_woken: ESP-in-UDP datagrams the kernel's socket filter let through to this
    # process (pyike.sockfilter); stays 0 where the filter is in place.
    return {"ike_in": 0, "ike_out": 0, "ike_send_errors": 0, "acquires": 0, "phase1_up": 0,
            "phase2_up": 0, "negotiation_failed": 0, "dead_peers": 0, "engine_exceptions": 0,
            "esp_in_udp_woken": 0}


@dataclasses.dataclass
class Live:
    config: Any
    config_path: str
    tunnels: list[TunnelSpec]
    counters: dict[str, int] = dataclasses.field(default_factory=counters)
    device: DeviceSpec | None = None  # the tunnel-mode device in force
    # The engine's tunnel routes once a pyike-setkey command changed the SPD (the SPD in force
    # then, as racoon reads the kernel's); None: the configuration's setkey files', as after a
    # reload, which applies those files again.
    setkey_routes: tuple[Phase2Route, ...] | None = None

    def local_for(self, peer: str) -> str:
        """Our end of the `gre` tunnel towards `peer`; "" when no tunnel goes there."""
        for t in self.tunnels:
            if t.remote == peer:
                return t.local
        return ""


def tunnel_specs(config) -> list[TunnelSpec]:
    """TunnelSpecs for the `gre` blocks; the default MTU leaves room for GRE and ESP."""
    specs = []
    for g in getattr(config, "gre_tunnels", ()):
        key = getattr(g, "key", None)
        mtu = getattr(g, "mtu", None) or inner_mtu(
            outer_mtu_towards(str(g.remote)), ipv6=ipaddress.ip_address(str(g.remote)).version == 6,
            gre_key=key is not None)
        specs.append(TunnelSpec(g.name, str(g.local), str(g.remote), str(g.address), str(g.peer),
                                int(mtu), key))
    return specs


def device_spec(config) -> DeviceSpec | None:
    """The tunnel-mode device of the `tunnel_device` statement, None without one. Its default
    MTU leaves room for ESP tunnel mode towards the nearest-MTU far end of the tunnel policies
    (Ethernet's when there is none yet)."""
    statement = config.tunnel_device
    if statement is None:
        return None
    mtu = statement.mtu
    if mtu is None:
        ends = {rule.dst for p in config_spd(config).policies("out")
                if p.action == "ipsec" for rule in p.rules[:1] if rule.mode == "tunnel"}
        mtu = min((tunnel_mode_mtu(outer_mtu_towards(str(end)), ipv6=end.version == 6)
                   for end in ends), default=tunnel_mode_mtu(DEFAULT_OUTER_MTU))
    return DeviceSpec(statement.name, int(mtu))


def setkey_files(config) -> list:
    return [sf for _path, sf in getattr(config, "setkey", ())]


def engine_config(config, tunnels: list[TunnelSpec],
                  routes: tuple[Phase2Route, ...] | None = None):
    """The engine's configuration, with the tunnel policies of the setkey files (`routes`
    in their place: those of the SPD a setkey command changed, Live.setkey_routes); without
    `listen` addresses the engine is told ours (the GRE tunnels' local ends first), as racoon
    takes them from the interfaces. The list stays empty only when the host has no global
    address yet: the daemon then refuses to initiate."""
    if routes is None:
        routes = tunnel_routes(config_spd(config).policies("out"))
    engine = dataclasses.replace(config.engine, policies=routes)
    if engine.local_addresses:
        return engine
    known = [t.local for t in tunnels] + host_addresses()
    return dataclasses.replace(engine, local_addresses=tuple(dict.fromkeys(known)))


def config_spd(config):
    """The SPD the configuration's setkey files make; raises what the forwarding process would
    refuse in them (pyike.sadb.setkey_state, which loading the configuration also runs)."""
    from pyike.sadb import setkey_state

    local = [str(g.local) for g in getattr(config, "gre_tunnels", ())]
    return setkey_state(setkey_files(config), local, time.monotonic())[0]


def tunnel_routes(out_policies: Iterable[Policy]) -> tuple[Phase2Route, ...]:
    """What a peer's tunnel-mode quick mode may ask of us: each `out` policy whose ESP request
    is in tunnel mode, its selectors ours then the peer's, its tunnel's ends ours then the
    peer's (racoon looks the `in` twin up, getsp_r(); the two name the same pair), in the SPD's
    lookup order. Ports stay as the SPD holds them (an ICMP type in a port, as racoon's IDs
    carry it); IPsec's protocol `any` is the IDs' 0."""
    routes = []
    for policy in out_policies:
        rule = next((r for r in policy.rules if r.protocol == "esp" and r.mode == "tunnel"),
                    None)
        if policy.action != "ipsec" or rule is None:
            continue
        proto = 0 if policy.proto == PROTO_ANY else policy.proto
        routes.append(Phase2Route(
            TrafficSelector(policy.src, proto, policy.sport),
            TrafficSelector(policy.dst, proto, policy.dport), "tunnel",
            None if rule.src is None else str(rule.src),
            None if rule.dst is None else str(rule.dst)))
    return tuple(routes)


def log_warnings(config) -> None:
    """Statements accepted without effect, once per reading of the configuration."""
    for w in getattr(config, "warnings", ()):
        log.warning("%s:%d: %s", w.file, w.line, w.message)
