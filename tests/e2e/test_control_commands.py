"""pyikectl show-event and pyike-setkey against a running pyike pair (namespaces, root)."""

from __future__ import annotations

import subprocess
import time

from tests.e2e.netns import OUTER, PYTHON, REPO
from tests.e2e.test_pyike_pair import spis, up, wait_for  # noqa: F401 - the fixture

ENC, AUTH = "0x" + "11" * 16, "0x" + "22" * 20


def setkey(router, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pyike.setkey", "-s", router.sock, *args], cwd=REPO,
                          input=stdin, capture_output=True, text=True, timeout=15)


def test_show_event_sees_a_renegotiation(up):  # noqa: F811
    a = up.routers["a"]
    watch = subprocess.Popen([PYTHON, "-m", "pyike.ctl", "-s", a.sock, "se"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # the listener is registered once its request is read
        assert a.ctl("ds", "isakmp", "inet", OUTER["a"], OUTER["b"]).returncode == 0
        wait_for(lambda: not spis(a), 10, what="SAs purged")
        out = a.ctl("es", "-w", "esp", "inet", OUTER["a"], OUTER["b"], "gre", timeout=30)
        assert out.returncode == 0, out.stderr
    finally:
        watch.terminate()
        lines = watch.communicate(timeout=10)[0].splitlines()
    ends = f"{OUTER['a']}[500] -> {OUTER['b']}[500]"
    for text in ("Phase 2 deleted", "Phase 1 deleted", "Phase 1 established",
                 "Phase 2 established"):
        assert f"{text} : {ends}" in lines, lines


def test_setkey_dumps_runs_statements_and_streams_changes(up):  # noqa: F811
    a = up.routers["a"]
    dump = setkey(a, "-D")
    assert dump.returncode == 0 and dump.stdout.count("\tesp mode=transport spi=") == 2
    assert dump.stdout.startswith(f"{OUTER['a']} {OUTER['b']} \n") or \
        dump.stdout.startswith(f"{OUTER['b']} {OUTER['a']} \n")
    assert "esp/transport//require" in setkey(a, "-DP").stdout
    watch = subprocess.Popen([PYTHON, "-m", "pyike.setkey", "-s", a.sock, "-x"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        add = (f"add {OUTER['a']} 198.18.0.77 esp 0x4242 -E aes-cbc {ENC} -A hmac-sha1 {AUTH};\n")
        assert setkey(a, "-c", stdin=add).returncode == 0
        assert "spi=16962(0x00004242)" in setkey(a, "-D").stdout
        bad = setkey(a, "-c", stdin=add)  # twice: refused, reported, nothing changes
        assert "already added" in bad.stdout and ENC[2:] not in bad.stdout + bad.stderr
        assert setkey(a, "-F").returncode == 0  # the negotiated pair too: the peer is told
        wait_for(lambda: not spis(a) and not spis(up.routers["b"]), 10, what="flushed")
    finally:
        watch.terminate()
        out = watch.communicate(timeout=10)[0]
    assert "sadb_sa{ spi=16962 replay=0 state=1" in out and "type=4 errno=0" in out
    assert ENC[2:10] not in out  # -x never shows a key
    assert setkey(a, "-FP").returncode == 0 and setkey(a, "-DP").stdout == "No SPD entries.\n"
