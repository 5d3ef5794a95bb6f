"""The service side of a router, as an operator of racoon runs it: log rotation (logrotate's
snippet, a renamed file and SIGHUP) and a service manager's notifications."""

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

from tests.e2e.netns import PYTHON, REPO
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
    pidfile = a.workdir / "pyike.pid"
    started = subprocess.run(["ip", "netns", "exec", topo.ns["a"], PYTHON, "-m", "pyike", "-f",
                              str(a.conf), "-l", str(a.log)], cwd=REPO, capture_output=True,
                             text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text())
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
