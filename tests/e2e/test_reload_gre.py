"""SIGHUP with changed `gre` blocks: devices are made, changed in place and removed without a
restart, the SAs stay, and a block that cannot be applied refuses the reload."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.e2e.netns import in_ns
from tests.e2e.test_pyike_pair import bring_up, log_of, spis, wait_for

pytestmark = pytest.mark.netns


@pytest.fixture
def up(topo):
    bring_up(topo)
    return topo

TUN1 = ('gre "tun1" {\n        local 198.18.0.1;\n        remote 198.18.0.2;\n'
        '        address ADDR peer PEER;\n        key 7;\n}\n')


def _link(ns: str, name: str) -> dict | None:
    out = in_ns(ns, "ip", "-j", "addr", "show", "dev", name, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def _reload(router, text: str) -> None:
    router.conf.write_text(text)
    mark = log_of(router).count("configuration reloaded")
    router.send_signal(signal.SIGHUP)
    wait_for(lambda: log_of(router).count("configuration reloaded") > mark
             or "reload refused" in log_of(router), 15, what="the reload")


def test_gre_changes_apply_on_sighup_and_keep_the_sas(up):
    a = up.routers["a"]
    ns = up.ns["a"]
    sas = spis(a)
    tun0 = _link(ns, "tun0")
    original = a.conf.read_text()

    # a new tunnel, and tun0's MTU changed in place
    with_tun1 = original.replace("address 10.1.1.1 peer 10.1.1.2;",
                                 "address 10.1.1.1 peer 10.1.1.2;\n        mtu 1300;")
    with_tun1 += TUN1.replace("ADDR", "10.1.2.1").replace("PEER", "10.1.2.2")
    _reload(a, with_tun1)
    assert "reload refused" not in log_of(a), log_of(a)[-2000:]
    tun1 = _link(ns, "tun1")
    assert tun1 is not None and tun1["addr_info"][0]["local"] == "10.1.2.1"
    changed = _link(ns, "tun0")
    assert changed["ifindex"] == tun0["ifindex"] and changed["mtu"] == 1300
    assert spis(a) == sas
    assert up.ping(count=3, interval=0.2).returncode == 0  # routes through tun0 still work

    # tun1 readdressed, then removed
    _reload(a, with_tun1.replace("10.1.2.1", "10.1.3.1").replace("10.1.2.2", "10.1.3.2"))
    moved = _link(ns, "tun1")
    assert moved["ifindex"] == tun1["ifindex"]
    assert [i["local"] for i in moved["addr_info"]] == ["10.1.3.1"]
    _reload(a, original)
    wait_for(lambda: _link(ns, "tun1") is None, 5, what="tun1 removed")
    assert _link(ns, "tun0")["mtu"] == tun0["mtu"]
    status = a.ctl_json("status")
    assert [t["name"] for t in status["tunnels"]] == ["tun0"]
    assert spis(a) == sas
    assert up.ping(count=3, interval=0.2).returncode == 0


def test_a_gre_block_that_cannot_be_made_refuses_the_reload(up):
    a = up.routers["a"]
    ns = up.ns["a"]
    in_ns(ns, "ip", "link", "add", "tun1", "type", "veth", "peer", "name", "tun1p")  # taken
    original = a.conf.read_text()
    _reload(a, original + TUN1.replace("ADDR", "10.1.2.1").replace("PEER", "10.1.2.2")
            + "\n")
    wait_for(lambda: "reload refused: gre blocks" in log_of(a), 5, what="the refusal")
    assert "tun1: cannot create the TUN device" in log_of(a)
    assert "configuration reloaded" not in log_of(a)
    assert [t["name"] for t in a.ctl_json("status")["tunnels"]] == ["tun0"]
    assert a.proc.poll() is None
    assert up.ping(count=3, interval=0.2).returncode == 0
    refused = a.ctl("reload-config")
    assert refused.returncode == 1 and "gre blocks" in refused.stderr


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_a_tun_device_deleted_under_us_is_dropped_without_spinning_and_remade_on_reload(up):
    a = up.routers["a"]
    fwd = a.ctl_json("status")["forwarding_pid"]
    in_ns(up.ns["a"], "ip", "link", "del", "tun0")
    wait_for(lambda: "reading the TUN device failed" in log_of(a), 5, what="the failure logged")
    before = _cpu_seconds(fwd)
    time.sleep(2)
    assert _cpu_seconds(fwd) - before < 0.5  # not busy on a dead descriptor
    assert log_of(a).count("reading the TUN device failed") == 1
    assert a.proc.poll() is None and a.ctl("status").returncode == 0
    assert up.ping(count=2, interval=0.2, deadline=3).returncode != 0
    assert a.ctl("reload-config").returncode == 0
    wait_for(lambda: "tun0: TUN device made again" in log_of(a), 5, what="tun0 remade")
    up.route_lans()  # the routes went with the device
    assert up.ping(count=3, interval=0.2).returncode == 0
