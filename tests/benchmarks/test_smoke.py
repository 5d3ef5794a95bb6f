"""Each benchmark runs once in smoke mode and returns figures of the agreed shape.

Benchmarks assert nothing about speed; these tests only keep them from rotting: every set-up
comes up, every figure is a number where one was measured, plots are written, and nothing is
left behind (namespaces, processes), also after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import procs, report, strongswan, wireguard

REPO = Path(__file__).resolve().parents[2]


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _netns_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", "ping", "iperf3", "ss"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _have(require) -> bool:
    """Whether an anchor's programs are here (require() installs them when it can)."""
    try:
        require()
    except procs.Missing:
        return False
    return True


def _have_strongswan() -> bool:
    return _have(strongswan.require)


@pytest.fixture
def netns_clean():
    """Skip without namespaces; afterwards, nothing of this process may remain."""
    reason = _netns_ready()
    if reason:
        pytest.skip(reason)
    try:
        yield
    finally:
        procs.cleanup_all()
    assert _namespaces(f"pyb{os.getpid()}") == []


def _is_number(value) -> bool:
    return isinstance(value, int | float) and value == value and value >= 0


def _check_plots(result: dict) -> None:
    assert result["plots"], "no plot written"
    for path in result["plots"]:
        assert Path(path).stat().st_size > 1000


def test_report_figures():
    s = report.summary([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0
    assert report.summary([])["median"] is None
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.ratio(None, 2.0) is None and report.ratio(1.0, 0) is None
    text = report.table("T", ["name", "value"], [["a", "1.0"], ["longer", "22.5"]])
    lines = text.splitlines()
    assert lines[0] == "T" and lines[3].startswith("a ") and lines[3].endswith(" 1.0")
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


def test_cli_rejects_unknown_benchmark():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "nosuch"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown benchmark" in result.stderr and "throughput" in result.stderr


def test_memory_smoke_through_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "memory", "--smoke", "--json", "--out",
         str(tmp_path), "--markdown", str(tmp_path / "perf.md")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "KiB per pair" in result.stdout
    doc = json.loads(result.stdout[result.stdout.index("\n{") + 1:])
    assert "only ratios are comparable" in doc["caveat"]
    mem = doc["memory"]
    assert "error" not in mem, mem.get("error")
    assert [p["pairs"] for p in mem["points"]] == [1, 10]
    assert mem["phase2_sas"] == 10 and mem["sad_entries"] == 20
    assert all(_is_number(p["bytes_per_pair"]) for p in mem["points"])
    assert (tmp_path / "memory_per_pair.png").exists()
    md = (tmp_path / "perf.md").read_text()
    assert "only the ratios, taken within one run, are comparable" in md
    assert "`python -m benchmarks memory --rounds 3 --smoke`" in md
    assert str(tmp_path) not in md
    per_pair = f"{mem['points'][1]['bytes_per_pair'] / 1024:.1f}"
    assert f"| 10 | {mem['points'][1]['rss_bytes'] / 2**20:.1f} | {per_pair} |" in md
    assert "throughput: not run." in md


@pytest.mark.netns
def test_throughput_smoke(tmp_path, netns_clean):
    from benchmarks import throughput

    result = throughput.run(rounds=1, smoke=True, out_dir=tmp_path)
    assert result["tests"] == ["tcp", "udp1400"]
    expected = {"pyike", "pyike-tunnel", "pyike-tunnel-udp", "relay", "veth"}
    expected |= {"strongswan"} if _have_strongswan() else set()
    expected |= {"wireguard"} if _have(wireguard.require) else set()
    available = {k for k, v in result["setups"].items() if v["available"]}
    assert expected <= available, {k: v["error"] for k, v in result["setups"].items()}
    if "wireguard" not in available:  # a row with the reason and the install command
        assert "apt-get install wireguard" in result["setups"]["wireguard"]["error"]
    for test in result["tests"]:
        for key in available:
            stats = result["results"][test][key]
            assert len(stats["samples"]) == 1 and stats["median"] > 0
        assert _is_number(result["ratios"][test]["pyike/relay"])
        assert _is_number(result["ratios"][test]["pyike-tunnel/pyike"])
        if "strongswan" in available:
            assert _is_number(result["ratios"][test]["pyike-tunnel-udp/strongswan"])
        # The forwarding processes were found and their CPU use sampled.
        cpu = result["busiest_cpu_percent"][test]
        assert all(cpu[k]["median"] > 0 for k in available - {"veth"})
        assert "veth" not in cpu
        # CPU per packet: the forwarding processes spent time and the counters moved.
        cost = result["cpu_us_per_packet"][test]
        assert set(cost) == available - {"veth"}, cost
        assert all(cost[k]["median"] > 0 for k in cost), cost
        assert _is_number(result["cost_ratios"][test]["pyike/relay"])
        if "wireguard" in available:
            assert _is_number(result["ratios"][test]["pyike/wireguard"])
            assert _is_number(result["cost_ratios"][test]["pyike/wireguard"])
    _check_plots(result)
    assert {Path(p).name for p in result["plots"]} == {"throughput.png", "packet_cost.png"}


@pytest.mark.netns
def test_hub_smoke(tmp_path, netns_clean):
    from benchmarks import hub

    result = hub.run(rounds=1, smoke=True, out_dir=tmp_path)
    assert result["mode"] == "fixed"
    assert result["spokes"] == [2] and result["tests"] == ["tcp", "udp1400"]
    calibration = result["calibration"]
    assert calibration["error"] is None, calibration["error"]
    point = result["points"]["2"]
    assert point["available"], point["error"]
    # Both spokes delivered over TCP (a loaded machine may lose a UDP client's one set-up
    # datagram, which the benchmark counts as a failed sender), each offering half the
    # calibrated total, and the hub's forwarding process was charged for what it forwarded.
    assert point["failed_senders"]["tcp"] == 0
    for test in result["tests"]:
        total = calibration["total"][test]
        assert 0 < total < calibration["all_out"][test], test
        assert point["failed_senders"][test] < 2, test
        offered, delivered = point["offered"][test]["median"], point["results"][test]["median"]
        assert offered > 0 and delivered > 0, test
        # paced senders: nowhere near the all-out rate (the counters, not iperf3's wish)
        assert offered < 1.5 * total, (test, offered, total)
        # over the senders' whole run nothing arrives that was not sent (a handful of ARP
        # requests on the hub's lan0 aside)
        for loss in ("loss", "spoke_loss", "hub_loss"):
            if test.startswith("udp"):
                assert -0.01 < point[loss][test]["median"] < 1, (test, loss)
            else:  # not counted for TCP (the hub's lan0 carries merged segments)
                assert point[loss][test]["median"] is None, (test, loss)
        assert point["delivered_over_offered"][test] > 0, test
        assert point["cpu_us_per_packet"][test]["median"] > 0, test
    assert point["pss_bytes"] > 0
    _check_plots(result)


def test_hub_ratios_and_table(tmp_path, capsys):
    from benchmarks import hub

    def point(n: int, value: float, cost: float) -> dict:
        return {"spokes": n, "available": True, "error": None, "bringup_s": 1.0,
                "pss_bytes": 2**20 * (n + 1), "samples": {"udp64": {
                    "offered": [400.0], "delivered": [value], "loss": [1 - value / 400],
                    "spoke_loss": [0.0], "hub_loss": [1 - value / 400], "cost": [cost, cost * 3]}},
                "failed_senders": {"udp64": 0}}

    missing = {"spokes": 10, "available": False, "error": "no room",
               "samples": {"udp64": {f: [] for f in hub.FIGURES}},
               "failed_senders": {"udp64": 0}}
    calibration = {"load": 0.5, "seconds": 1, "error": None, "all_out": {"udp64": 800.0},
                   "total": {"udp64": 400.0}}
    result = hub.summarize({1: point(1, 100.0, 10.0), 10: missing, 50: point(50, 300.0, 15.0)},
                           ["udp64"], 1, 1, tmp_path, calibration)
    assert result["mode"] == "fixed" and result["ratio_name"] == "50/1"
    assert result["ratios"]["udp64"]["throughput"] == 3.0
    assert result["ratios"]["udp64"]["offered"] == 1.0
    assert result["ratios"]["udp64"]["cpu_us_per_packet"] == 1.5  # medians 20 and 30
    assert result["points"]["50"]["delivered_over_offered"]["udp64"] == 0.75
    assert result["points"]["1"]["loss"]["udp64"]["median"] == 0.75
    assert result["points"]["1"]["hub_loss"]["udp64"]["median"] == 0.75
    assert result["points"]["1"]["spoke_loss"]["udp64"]["median"] == 0.0
    out = capsys.readouterr().out
    assert "10 spokes: not measured (no room)" in out
    assert "51 pyike daemons, 51 MiB PSS" in out
    assert "udp64 800 -> offered 400 packets/s" in out
    assert hub.summarize({1: point(1, 100.0, 10.0)}, ["udp64"], 1, 1, tmp_path)["mode"] == \
        "all-out"


def test_iperf_argv_rate():
    from benchmarks.throughput import iperf_argv

    def option(argv: list[str], name: str) -> str:
        return argv[argv.index(name) + 1]

    udp = iperf_argv("udp64", "10.0.0.2", 3, rate=1000.0)  # packets/s of 36-byte payloads
    assert option(udp, "-l") == "36" and option(udp, "-b") == str(1000 * 36 * 8)
    assert option(iperf_argv("udp64", "10.0.0.2", 3), "-b") == "0"  # unlimited
    tcp = iperf_argv("tcp", "10.0.0.2", 3, rate=2.5)  # Mbit/s
    assert option(tcp, "--fq-rate") == "2500000" and "-u" not in tcp
    assert "-b" not in iperf_argv("tcp", "10.0.0.2", 3)


def test_cli_hub_load():
    from benchmarks.__main__ import hub_options, main

    with pytest.raises(SystemExit):
        main(["hub", "--load", "1.5"])
    with pytest.raises(SystemExit):
        main(["hub", "--load", "0.5", "--all-out"])
    import argparse

    args = argparse.Namespace(spokes=(1, 10), load=0.3, all_out=False)
    assert hub_options(args) == {"spokes": (1, 10), "load": 0.3, "all_out": False}


def test_cli_docs_plots_go_to_docs_perf():
    from benchmarks.__main__ import DOCS_PLOTS

    assert DOCS_PLOTS == REPO / "docs" / "perf"
    result = subprocess.run([sys.executable, "-m", "benchmarks", "memory", "--docs", "--out",
                             "x"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_cli_spoke_counts():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "hub", "--spokes", "0,10"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "spoke counts from 1 to" in result.stderr


@pytest.mark.netns
def test_profile_smoke(tmp_path, netns_clean):
    from benchmarks import profile_packet

    result = profile_packet.run(rounds=1, smoke=True, out_dir=tmp_path)
    assert "error" not in result, result.get("error")
    for size in ("64", "512", "1400"):
        stages = result["ns_per_packet"][size]
        for stage in profile_packet.OUT_STAGES + profile_packet.IN_STAGES:
            assert _is_number(stages[stage]), (size, stage)
        assert stages["packets_out"] > 0 and stages["packets_in"] > 0
        assert result["totals_ns"][size]["out"] > stages["from_tunnel"] > 0
    _check_plots(result)


@pytest.mark.netns
def test_handshake_smoke(tmp_path, netns_clean):
    from benchmarks import handshake

    result = handshake.run(rounds=1, smoke=True, out_dir=tmp_path)
    assert result["tests"] == ["main@1", "main@4", "quick@1", "quick@4", "main-modp1024@1"]
    responders = result["responders"]
    assert responders["pyike"]["available"], responders["pyike"]["error"]
    if _have_strongswan():
        assert responders["charon"]["available"], responders["charon"]["error"]
    for test in result["tests"]:
        stats = result["rates"][test]["pyike"]
        assert len(stats["samples"]) == 1 and stats["median"] > 0, test
    if responders["charon"]["available"]:
        assert result["rates"]["main@1"]["charon"]["median"] > 0
        assert _is_number(result["ratios"]["main@1"]["pyike/charon"])
    _check_plots(result)


def _processes_in(inodes: set[int]) -> list[int]:
    """Pids of processes whose network namespace is one of these (by inode)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            link = os.readlink(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if int(link.split("[")[1].rstrip("]")) in inodes:
            found.append(int(entry))
    return found


@pytest.mark.netns
def test_ctrl_c_leaves_nothing_behind(tmp_path):
    reason = _netns_ready()
    if reason:
        pytest.skip(reason)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "throughput", "--smoke", "--out", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    prefix = f"pyb{proc.pid}"
    try:
        # Wait until the relay set-up runs (its processes live in the run's namespaces).
        assert procs.wait_until(lambda: len(_namespaces(prefix)) >= 8, 90, 0.2), \
            "the benchmark never built its namespaces"
        inodes = {os.stat(f"/run/netns/{name}").st_ino for name in _namespaces(prefix)}
        assert procs.wait_until(lambda: _processes_in(inodes), 30, 0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        procs.stop(proc)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert _namespaces(prefix) == []
    assert procs.wait_until(lambda: not _processes_in(inodes), 5, 0.2), _processes_in(inodes)
