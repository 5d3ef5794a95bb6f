"""Garbage on the wire (ESP, GRE, IKE) is dropped and counted; the tunnel keeps working."""

from __future__ import annotations

import pytest

from tests.e2e.netns import OUTER, PYTHON, in_ns
from tests.e2e.test_pyike_pair import bring_up, sad

pytestmark = pytest.mark.netns

# Runs in router b's namespace: a bounded burst of malformed packets at router a.
SENDER = """
import os, random, socket, struct, sys
dst = sys.argv[1]
spis = [int(s) for s in sys.argv[2:]]
rnd = random.Random(4)
esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ike.bind(("0.0.0.0", 0))
for i in range(300):
    n = rnd.choice([0, 1, 4, 8, 15, 16, 40, 100, 1400])
    body = bytes(rnd.getrandbits(8) for _ in range(n))
    spi = rnd.choice(spis + [rnd.getrandbits(32)])
    esp.sendto(struct.pack("!II", spi, i + 1) + body, (dst, 0))
    gre.sendto(body[:4] + body, (dst, 0))
    ike.sendto(body, (dst, 500))
"""


def test_garbage_is_counted_and_the_tunnel_survives(topo):
    bring_up(topo)
    a = topo.routers["a"]
    our_spis = [str(e["spi"]) for e in sad(a) if e["direction"] == "in"]
    in_ns(topo.ns["b"], PYTHON, "-c", SENDER, OUTER["a"], *our_spis, timeout=60)
    status = a.ctl_json("status")
    dp = status["dataplane"]
    assert dp["unknown_spi"] + dp["open_dropped"] + dp["malformed"] >= 250
    assert dp["gre_clear_dropped"] + dp["malformed"] >= 250
    assert status["engine"]["received"] >= 300 and status["engine"]["internal_errors"] == 0
    assert a.proc.poll() is None
    assert topo.ping(count=3, interval=0.2).returncode == 0
