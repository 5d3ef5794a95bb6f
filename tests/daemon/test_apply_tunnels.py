"""The forwarding process's tunnel table after a reload's `gre` blocks (no TUN devices made)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from pyike import pipe
from pyike.dataplane import DataPlane
from pyike.specs import TunnelSpec

T0 = TunnelSpec("tun0", "198.18.0.1", "198.18.0.2", "10.1.1.1", "10.1.1.2", 1400)
T1 = TunnelSpec("tun1", "198.18.0.1", "198.18.0.3", "10.1.2.1", "10.1.2.2", 1400, 7)


@pytest.fixture
def plane():
    if os.geteuid() != 0:
        pytest.skip("raw sockets need root")
    ours, theirs = pipe.make_pipe()
    dp = DataPlane(theirs, [T0], [], create_tun=False)
    try:
        yield dp
    finally:
        dp.close()
        ours.close()
        theirs.close()


def test_kept_added_changed_and_removed(plane):
    t0 = plane.tunnels[0]
    t0.queue.append(b"queued for the old outer pair")
    rekeyed = dataclasses.replace(T0, key=5)
    plane.apply_tunnels([rekeyed, T1])
    assert plane.tunnels[0] is t0 and t0.spec == rekeyed
    assert t0.queue == []  # the GRE key changed: what was queued is not for it
    assert set(plane.by_key) == {("198.18.0.1", "198.18.0.2", 5), ("198.18.0.1", "198.18.0.3", 7)}
    assert plane.by_pair[("198.18.0.1", "198.18.0.3")].spec == T1
    plane.apply_tunnels([T1])
    assert [t.spec.name for t in plane.tunnels] == ["tun1"]
    assert set(plane.by_pair) == {("198.18.0.1", "198.18.0.3")}


def test_an_mtu_change_keeps_the_queue(plane):
    t0 = plane.tunnels[0]
    t0.queue.append(b"x")
    plane.apply_tunnels([dataclasses.replace(T0, mtu=1300)])
    assert plane.tunnels[0] is t0 and t0.queue == [b"x"] and t0.spec.mtu == 1300
