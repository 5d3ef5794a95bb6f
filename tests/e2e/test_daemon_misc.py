"""The daemon's process life (detach, pid file), its script hooks, and what its logs never say."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.e2e.netns import OUTER, PYTHON, REPO, in_ns
from tests.e2e.test_pyike_pair import bring_up, sad, wait_for

pytestmark = pytest.mark.netns


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_hooks_run_with_racoons_environment_and_logs_hold_no_secret(topo):
    hook_out = topo.tmp / "hook.out"

    def with_hook(side: str, text: str) -> str:
        hook = topo.routers[side].workdir / "hook.sh"
        hook.parent.mkdir(parents=True, exist_ok=True)
        hook.write_text(f'#!/bin/sh\necho "{side} $1 $LOCAL_ADDR $REMOTE_ADDR $REMOTE_PORT" '
                        f'>> {hook_out}\n')
        hook.chmod(0o700)
        return text.replace("rekey on;", f'rekey on;\n        script "{hook}" phase1_up;')

    topo.write_configs(racoon_edit=with_hook)
    for r in topo.routers.values():
        r.start("-d")  # the most verbose logs
    bring_up_done = topo.route_lans
    bring_up_done()
    assert topo.ping(count=3, interval=0.5, deadline=30).returncode == 0
    lines = wait_for(lambda: hook_out.exists() and len(hook_out.read_text().splitlines()) >= 2,
                     10, what="both phase1_up hooks")
    assert lines
    got = set(hook_out.read_text().splitlines())
    assert f"a phase1_up {OUTER['a']} {OUTER['b']} 500" in got
    assert f"b phase1_up {OUTER['b']} {OUTER['a']} 500" in got
    secrets = [e["enc"]["key"] for e in sad(topo.routers["a"])]
    secrets += [e["auth"]["key"] for e in sad(topo.routers["a"])]
    secrets.append((topo.routers["a"].workdir / "psk.txt").read_text().split()[-1])
    for r in topo.routers.values():
        text = r.log.read_text()
        assert "IPsec-SA established" in text
        for s in secrets:
            assert s not in text and s.upper() not in text


def test_detaches_writes_pid_file_and_stops_on_sigterm(topo):
    topo.write_configs()
    a = topo.routers["a"]
    pidfile = a.pidfile
    pid = a.start_detached()
    try:
        os.kill(pid, 0)
        assert a.ctl("status").returncode == 0
        status = a.ctl_json("status")
        assert status["pid"] == pid
        # the start-up status pipe is closed in both processes once the command returned
        for proc in (pid, status["forwarding_pid"]):
            fds = os.listdir(f"/proc/{proc}/fd")
            links = [os.readlink(f"/proc/{proc}/fd/{fd}") for fd in fds]
            assert not [link for link in links if link.startswith("pipe:")], (proc, links)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists(), 10, what="pid file removed")
        wait_for(lambda: not _alive(pid), 5, what="daemon gone")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_start_failure_is_reported_by_the_detaching_command(topo):
    topo.write_configs()
    a = topo.routers["a"]
    # An address the namespace does not have: binding the IKE socket fails.
    a.conf.write_text(a.conf.read_text().replace(f"isakmp {OUTER['a']} [500]",
                                                 "isakmp 198.18.9.9 [500]"))
    out = subprocess.run(["ip", "netns", "exec", topo.ns["a"], PYTHON, "-m", "pyike", "-f",
                          str(a.conf), "-l", str(a.log)], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert "198.18.9.9" in out.stderr or "assign" in out.stderr
    assert not (a.workdir / "pyike.pid").exists()
    # the forwarding process had made tun0; it is gone before the command returns
    assert in_ns(topo.ns["a"], "ip", "link", "show", "tun0", check=False).returncode != 0


def test_bring_up_helper_is_shared(topo):
    """The seed pair once more through the shared helper, then a clean SIGTERM on both."""
    bring_up(topo)
    for r in topo.routers.values():
        assert r.stop(signal.SIGTERM) == 0


def test_detached_daemon_reloads_a_relative_configuration_path(topo):
    topo.write_configs()
    a = topo.routers["a"]
    started = subprocess.run(["ip", "netns", "exec", topo.ns["a"], PYTHON, "-m", "pyike", "-f",
                              "racoon.conf", "-l", "pyike.log"], cwd=a.workdir,
                             capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert started.returncode == 0, started.stderr
    pid = int((a.workdir / "pyike.pid").read_text())
    try:
        assert a.ctl("reload-config").returncode == 0
        assert "configuration reloaded" in a.log.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), 10, what="daemon gone")


def test_config_warnings_logged_once_at_start_and_once_per_reload(topo):
    topo.write_configs(racoon_edit=lambda side, text: 'privsep { user "nobody"; }\n' + text)
    a = topo.routers["a"]
    a.start()
    warning = f"{a.conf}:1: privsep"

    def count() -> int:
        return a.log.read_text().count(warning)

    wait_for(lambda: count() == 1, 5, what="the warning at start")
    assert a.ctl("reload-config").returncode == 0
    wait_for(lambda: count() == 2, 5, what="the warning on reload")
    a.send_signal(signal.SIGHUP)
    wait_for(lambda: a.log.read_text().count("configuration reloaded") == 2, 10,
             what="the SIGHUP reload")
    assert count() == 3

