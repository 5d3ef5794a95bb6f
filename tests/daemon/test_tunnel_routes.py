"""The forwarding process's routes into the tunnel-mode device: each outbound tunnel policy's
remote network, but never one holding the tunnel's far end or overlapping a network of ours
(a peer's generated policy must not take our own LAN's traffic), each refusal logged once."""

from __future__ import annotations

import ipaddress
import logging
from types import SimpleNamespace

from forward.core import ForwardingCore
from forward.specs import DeviceSpec
from pyike import dataplane
from pyike.dataplane import DataPlane
from pyike.sadb import setkey_state
from spd.parse import parse_setkey

A, B = "198.18.0.1", "198.18.0.2"


class FakeTun:
    name = "ipsec0"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def set_routes(self, wanted: dict, have: dict) -> None:
        self.calls.append(dict(wanted))
        have.clear()
        have.update(wanted)


def _plane(policies: list[tuple[str, str]]):
    core = ForwardingCore()
    core.set_device(DeviceSpec("ipsec0", 1400))
    text = "".join(f"spdadd {mine} {theirs} any -P out ipsec esp/tunnel/{A}-{B}/require;\n"
                   for mine, theirs in policies)
    core.apply_setkey(*setkey_state([parse_setkey(text, "setkey.conf")], [A], 0.0))
    return SimpleNamespace(tunnel_tun=FakeTun(), core=core, routes={}, routes_refused=set())


def test_routes_skip_the_far_end_and_our_own_networks(monkeypatch, caplog):
    ours = [ipaddress.ip_interface("10.0.1.1/24"), ipaddress.ip_interface(f"{A}/24")]
    monkeypatch.setattr(dataplane, "host_interfaces", lambda: ours)
    plane = _plane([("10.0.1.0/24", "10.0.2.0/24"),  # routed, from our 10.0.1.1
                    ("10.0.1.0/24", "10.0.1.128/25"),  # inside our LAN: refused
                    ("10.0.1.0/24", "198.18.0.0/16")])  # holds the far end: refused
    with caplog.at_level(logging.WARNING, logger="pyike.dataplane"):
        DataPlane._sync_routes(plane)
        DataPlane._sync_routes(plane)  # again: nothing new to do, nothing logged twice
    assert plane.routes == {"10.0.2.0/24": "10.0.1.1"}
    assert plane.tunnel_tun.calls == [{"10.0.2.0/24": "10.0.1.1"}]
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 2
    assert "10.0.1.128/25" in refusals[0] and "overlaps our 10.0.1.1/24" in refusals[0]
    assert "198.18.0.0/16" in refusals[1] and "far end" in refusals[1]
