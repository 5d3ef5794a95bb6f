"""The forwarding core's tunnel table after a reload's `gre` blocks."""

from __future__ import annotations

import dataclasses

from forward.core import ForwardingCore
from forward.specs import TunnelSpec

T0 = TunnelSpec("tun0", "198.18.0.1", "198.18.0.2", "10.1.1.1", "10.1.1.2", 1400)
T1 = TunnelSpec("tun1", "198.18.0.1", "198.18.0.3", "10.1.2.1", "10.1.2.2", 1400, 7)


def test_kept_added_changed_and_removed():
    core = ForwardingCore([T0])
    t0 = core.tunnels[0]
    t0.queue.append(b"queued for the old outer pair")
    rekeyed = dataclasses.replace(T0, key=5)
    core.set_tunnels([rekeyed, T1])
    assert core.tunnels[0] is t0 and t0.spec == rekeyed and t0.key == 5
    assert t0.queue == []  # the GRE key changed: what was queued is not for it
    assert set(core.by_key) == {("198.18.0.1", "198.18.0.2", 5), ("198.18.0.1", "198.18.0.3", 7)}
    assert core.by_pair[("198.18.0.1", "198.18.0.3")].spec == T1
    core.set_tunnels([T1])
    assert [t.spec.name for t in core.tunnels] == ["tun1"]
    assert set(core.by_pair) == {("198.18.0.1", "198.18.0.3")}


def test_an_mtu_change_keeps_the_queue():
    core = ForwardingCore([T0])
    t0 = core.tunnels[0]
    t0.queue.append(b"x")
    core.set_tunnels([dataclasses.replace(T0, mtu=1300)])
    assert core.tunnels[0] is t0 and t0.queue == [b"x"] and t0.spec.mtu == 1300


def test_a_new_remote_moves_the_tunnel_on_the_wire():
    core = ForwardingCore([T0])
    t0 = core.tunnels[0]
    core.set_tunnels([dataclasses.replace(T0, remote="198.18.0.9")])
    assert t0.addr == ("198.18.0.9", 0)
    assert core.by_pair == {("198.18.0.1", "198.18.0.9"): t0}
