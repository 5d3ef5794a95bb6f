"""The service side of a router, as an operator of racoon runs it: log rotation (logrotate's
snippet, a renamed file and SIGHUP), a service manager's notifications, and a TUN device that
outlives a restart with the routes through it."""

from __future__ import annotations

import contextlib
import gzip
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.netns import LAN, OUTER, REPO, capture, in_ns
from tests.e2e.test_daemon_misc import _alive
from tests.e2e.test_pyike_pair import wait_for

pytestmark = pytest.mark.netns

LOGROTATE = Path("/usr/sbin/logrotate")


def test_a_rotated_log_file_is_followed_and_sighup_logs_into_the_new_one(topo):
    """logrotate's way without copytruncate: rename, then SIGHUP (postrotate)."""
    topo.write_configs()
    a = topo.routers["a"]
    a.start()
    rotated = a.log.with_name("pyike.log.1")
    a.log.rename(rotated)
    a.send_signal(signal.SIGHUP)
    wait_for(lambda: a.log.exists() and "configuration reloaded" in a.log.read_text(), 10,
             what="the reload's line in the new file")
    assert "pyike started" in rotated.read_text()
    assert "configuration reloaded" not in rotated.read_text()
    assert a.stop(signal.SIGTERM) == 0
    assert "pyike stopped" in a.log.read_text()


def test_service_manager_hears_ready_reloading_and_stopping(topo, monkeypatch):
    """As under systemd's Type=notify: READY=1 once the control socket answers, RELOADING=1 and
    READY=1 around a SIGHUP, STOPPING=1 at SIGTERM."""
    topo.write_configs()
    a = topo.routers["a"]
    with tempfile.TemporaryDirectory(prefix="sdn") as directory, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        path = os.path.join(directory, "notify")  # a path: an abstract name is per namespace
        manager.bind(path)
        manager.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        a.start()
        assert manager.recv(4096).startswith(b"READY=1\nSTATUS=1 tunnel(s)")
        a.send_signal(signal.SIGHUP)
        assert manager.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        assert manager.recv(4096).startswith(b"READY=1\n")
        assert a.stop(signal.SIGTERM) == 0
        assert manager.recv(4096) == b"STOPPING=1"


@pytest.mark.skipif(not LOGROTATE.exists(), reason="needs logrotate")
def test_the_logrotate_snippet_rotates_a_detached_pyikes_log(topo, tmp_path):
    topo.write_configs()
    a = topo.routers["a"]
    pidfile = a.pidfile
    pid = a.start_detached()
    try:
        snippet = (REPO / "packaging" / "pyike.logrotate").read_text()
        assert "/var/log/pyike.log" in snippet and "/run/pyike/pyike.pid" in snippet
        conf = tmp_path / "pyike.logrotate"
        conf.write_text(snippet.replace("/var/log/pyike.log", str(a.log))
                        .replace("/run/pyike/pyike.pid", str(pidfile)))
        conf.chmod(0o644)
        out = subprocess.run([str(LOGROTATE), "-f", "-s", str(tmp_path / "state"), str(conf)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: a.log.exists() and "configuration reloaded" in a.log.read_text(), 10,
                 what="the reload's line in the new file")
        rotated = gzip.decompress(a.log.with_name("pyike.log.1.gz").read_bytes()).decode()
        assert "pyike started" in rotated and "configuration reloaded" not in rotated
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), 10, what="daemon gone")


def test_an_adopted_tun_device_keeps_its_routes_and_lets_nothing_out_while_pyike_is_down(
        topo, tmp_path):
    from scapy.all import IP, rdpcap

    topo.write_configs()
    a, b = topo.routers["a"], topo.routers["b"]
    ns = topo.ns["a"]
    in_ns(ns, "ip", "tuntap", "add", "dev", "tun0", "mode", "tun")  # persistent, as at boot
    # a way out in clear: were the route through tun0 lost, the far LAN's packets would take it
    in_ns(ns, "ip", "route", "add", "default", "via", OUTER["b"])
    a.start()
    b.start()
    topo.route_lans()
    assert topo.ping(count=3, interval=0.2, deadline=30).returncode == 0
    assert "tun0: the existing TUN device adopted" in a.log.read_text()
    assert a.stop(signal.SIGTERM) == 0

    def far_lan_route() -> str:
        return in_ns(ns, "ip", "route", "show", LAN["b"][2]).stdout

    assert "dev tun0" in far_lan_route()
    assert "NO-CARRIER" in in_ns(ns, "ip", "link", "show", "tun0").stdout
    pcap = tmp_path / "down.pcap"
    with capture(ns, "wan0", pcap):
        assert topo.ping(count=5, interval=0.2, deadline=3).returncode != 0
    seen = [p[IP] for p in rdpcap(str(pcap)) if IP in p]
    lan = LAN["a"][2].rsplit(".", 1)[0] + "."
    # neither the ping in clear nor GRE in clear; ESP neither, with no SA and no pyike
    assert [p for p in seen if p.src.startswith(lan) or p.proto in (47, 50)] == []
    a.start()
    assert "dev tun0" in far_lan_route()
    assert topo.ping(count=3, interval=0.5, deadline=30).returncode == 0
