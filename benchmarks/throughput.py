"""Tunnel throughput, host A to host B, through each set-up of benchmarks.setups.

Tests: iperf3 TCP (one stream) and iperf3 UDP at fixed inner packet sizes (64, 512, 1400 bytes
of IP packet), unlimited send rate, counting what host B received. Rounds are interleaved: every
round runs each test on every set-up in turn (A B C D A B C D ...), so slow drifts of this
shared machine hit all set-ups alike. Figures: median and min-max per set-up, and the ratios
pyike/relay and pyike/strongSwan of the medians.

Packet cost: the CPU time (utime + stime from /proc/PID/stat) the forwarding processes of both
routers spent during a run, divided by the packets the run carried through the tunnel, counted
by the kernel's interface counters as the packets both routers received from the tunnel (wan0
rx_packets: both directions, so TCP's ACKs count; on the WAN side every set-up sends one packet
per segment, where on lan0 pyike's receive offload hands several TCP segments to the host in
one). One such packet costs one encapsulation on one router and one decapsulation on the
other. The forwarding
processes are pyike's forked forwarding process (not its IKE process), the relay's Python
process, charon (whose libipsec threads seal and open) and wireguard-go. Packets a router
dropped are not counted, so a set-up that drops work it has paid for shows a higher cost.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks import netns, procs, report, setups

PACKET_SIZES = (64, 512, 1400)  # inner IPv4 packet bytes
# The ratios of medians reported, numerator/denominator: pyike's GRE set-up over each anchor;
# tunnel mode over the GRE set-up; tunnel mode in UDP 4500 over strongSwan, whose libipsec
# set-up has that encapsulation and MTU (like for like).
RATIOS = (("pyike", "relay"), ("pyike", "strongswan"), ("pyike", "wireguard"),
          ("pyike-tunnel", "pyike"), ("pyike-tunnel-udp", "strongswan"))
RATIO_NAMES = tuple(f"{a}/{b}" for a, b in RATIOS)
IP_UDP_HEADERS = 28  # IPv4 (20, RFC 791) + UDP (8, RFC 768)


def tests_for(smoke: bool) -> list[str]:
    return ["tcp", "udp1400"] if smoke else ["tcp", *[f"udp{size}" for size in PACKET_SIZES]]


def iperf_argv(test: str, server: str, seconds: int, port: int = 5201,
               bind: str | None = None, rate: float | None = None) -> list[str]:
    """iperf3's client command line for one test (JSON output); rate, in the test's unit (see
    unit()), paces the sender, else UDP is unlimited and TCP as fast as its window allows."""
    argv = ["iperf3", "-c", server, "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "3000"]
    if bind:
        argv += ["-B", bind]
    if test.startswith("udp"):
        payload = int(test[3:]) - IP_UDP_HEADERS
        # iperf3's -b counts payload bits; 0 is unlimited
        bits = 0 if rate is None else max(1, round(rate * payload * 8))
        argv += ["-u", "-b", str(bits), "-l", str(payload)]
    elif rate is not None:
        # socket pacing (SO_MAX_PACING_RATE), not -b: -b writes 128 KiB at a time and idles
        # between, and after each idle TCP restarts from a small window (RFC 5681 section 4.1)
        argv += ["--fq-rate", str(max(1, round(rate * 1e6)))]
    return argv


def iperf_value(test: str, output: str) -> float:
    """Mbit/s of TCP goodput, or packets/s received for a UDP test, from iperf3's JSON report
    (anything printed before the JSON document is skipped)."""
    start = output.find("{")
    try:
        data, _ = json.JSONDecoder().raw_decode(output[start:]) if start >= 0 else ({}, 0)
    except json.JSONDecodeError:
        data = {}
    if not data:
        raise RuntimeError(f"iperf3 {test}: {output.strip()[-300:]}")
    if "error" in data:
        raise RuntimeError(f"iperf3 {test}: {data['error']}")
    received = data["end"]["sum_received"]
    if test.startswith("udp"):
        return received["bytes"] / (int(test[3:]) - IP_UDP_HEADERS) / received["seconds"]
    return received["bits_per_second"] / 1e6


def iperf(line: netns.Line, test: str, seconds: int) -> float:
    """One iperf3 run from host A to host B (see iperf_value)."""
    result = procs.run(iperf_argv(test, netns.HOST_B, seconds), netns=line.host_a,
                       timeout=seconds + 20, check=False)
    return iperf_value(test, result.stdout or result.stderr)


def run(rounds: int, smoke: bool, out_dir: Path, only: list[str] | None = None) -> dict:
    """Bring up every available set-up, run the interleaved rounds, print and plot."""
    iperf3 = procs.need_binary("iperf3", "iperf3")
    seconds = 1 if smoke else 5
    rounds = max(1, rounds)
    tests = tests_for(smoke)
    keys = only or list(setups.ALL)
    info: dict[str, dict] = {}
    live: dict[str, setups.TunnelSetup] = {}
    results: dict[str, dict[str, list[float]]] = {t: {} for t in tests}
    cpu: dict[str, dict[str, list[float]]] = {t: {} for t in tests}
    cost: dict[str, dict[str, list[float]]] = {t: {} for t in tests}
    try:
        for key in keys:
            setup = setups.ALL[key]()
            info[key] = {"label": setup.label, "note": setup.note, "available": False,
                         "error": None}
            try:
                setup.up()
                procs.spawn([iperf3, "-s"], netns=setup.line.host_b)
                procs.wait_until(lambda s=setup: _iperf_listening(s.line), 5.0, 0.1)
            except (procs.Missing, setups.SetupError, RuntimeError, OSError) as exc:
                info[key]["error"] = str(exc).splitlines()[0][:300]
                print(f"throughput: {key} unavailable: {str(exc)[:1500]}")
                setup.down()
                continue
            info[key]["available"] = True
            live[key] = setup
        for _ in range(rounds):
            for test in tests:
                for key, setup in live.items():
                    pids, forwarding = setup.pids(), setup.forwarding_pids()
                    before = procs.cpu_snapshot(pids + forwarding)
                    delivered = setup.line.delivered_packets()
                    try:
                        value = iperf(setup.line, test, seconds)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        print(f"throughput: {key} {test}: {exc}")
                        continue
                    packets = setup.line.delivered_packets() - delivered
                    after = procs.cpu_snapshot(pids + forwarding)
                    results[test].setdefault(key, []).append(value)
                    busiest = procs.busiest_percent(before, after, seconds)
                    if busiest is not None:
                        cpu[test].setdefault(key, []).append(busiest)
                    if forwarding and packets > 0:
                        spent = procs.cpu_used(before, after, forwarding)
                        cost[test].setdefault(key, []).append(spent / packets * 1e6)
    finally:
        for setup in live.values():
            setup.down()
    return summarize(results, cpu, cost, info, tests, rounds, seconds, out_dir)


def _iperf_listening(line: netns.Line) -> bool:
    out = procs.run(["ss", "-ltn"], netns=line.host_b, check=False).stdout
    return ":5201" in out


def unit(test: str) -> str:
    return "Mbit/s" if test == "tcp" else "packets/s"


def label_of(test: str) -> str:
    """A test's name on a plot: TCP, or UDP with the packet size."""
    return "TCP" if test == "tcp" else f"UDP {test[3:]} B"


def _ratios(medians: dict[str, float]) -> dict[str, float | None]:
    return {name: report.ratio(medians.get(a), medians.get(b))
            for name, (a, b) in zip(RATIO_NAMES, RATIOS, strict=True)}


def summarize(results: dict, cpu: dict, cost: dict, info: dict, tests: list[str], rounds: int,
              seconds: int, out_dir: Path) -> dict:
    figures = {t: {k: report.summary(v) for k, v in per.items()} for t, per in results.items()}
    cpu_figures = {t: {k: report.summary(v) for k, v in per.items()} for t, per in cpu.items()}
    cost_figures = {t: {k: report.summary(v) for k, v in per.items()} for t, per in cost.items()}
    ratios, cost_ratios = {}, {}
    for test in tests:
        med = {k: s["median"] for k, s in figures[test].items()}
        ratios[test] = _ratios(med)
        med = {k: s["median"] for k, s in cost_figures[test].items()}
        cost_ratios[test] = _ratios(med)
    empty = report.summary([])
    rows = []
    for key, meta in info.items():
        for test in tests:
            s = figures[test].get(key, empty)
            c = cpu_figures[test].get(key, empty)
            u = cost_figures[test].get(key, empty)
            rows.append([meta["label"] if test == tests[0] else "", test, unit(test),
                         report.fmt(s["median"]), report.fmt_range(s), report.fmt(c["median"], 0),
                         report.fmt(u["median"], 2), report.fmt_range(u, 2)])
    print(report.table(
        f"throughput: host A -> host B, {rounds} interleaved round(s) of {seconds} s "
        "(busiest CPU %: the set-up's most loaded process, % of one core; CPU-us/packet: both "
        "routers' forwarding processes, per packet out of the tunnel)",
        ["set-up", "test", "unit", "median", "min-max", "busiest CPU %", "CPU-us/packet",
         "min-max"], rows,
    ))
    names = list(RATIO_NAMES)
    print(report.table(
        "throughput ratios (medians; goals: pyike/relay >= 0.9, pyike/strongswan >= 2.0) and "
        "packet cost ratios (CPU-us/packet medians; below 1 pyike spends less)",
        ["test", *names, *[f"cost {n}" for n in names]],
        [[t, *[report.fmt(ratios[t][n], 2) for n in names],
          *[report.fmt(cost_ratios[t][n], 2) for n in names]] for t in tests],
    ))
    for key, meta in info.items():
        if not meta["available"]:
            print(f"  {key}: not measured ({meta['error']})")
        elif key in ("strongswan", "wireguard", "pyike-tunnel-udp"):
            print(f"  {key}: {meta['note']}")
    if any(t.startswith("udp") for t in tests):
        print("  UDP: unlimited sender; it shares the two cores with the forwarding processes.")
    print("  CPU-us/packet: utime+stime from /proc over wan0 rx_packets of both routers.")
    plots = []
    keys = [k for k in info if info[k]["available"]]
    udp_tests = [t for t in tests if t.startswith("udp")]
    panels = []
    if "tcp" in tests:
        panels.append(report.Panel("TCP (log scale)", "Mbit/s", ["TCP"], {
            info[k]["label"]: [figures["tcp"].get(k, empty)] for k in keys}, logy=True))
    if udp_tests:
        panels.append(report.Panel("UDP packets/s received (log scale)", "packets/s",
                                   [f"{t[3:]} B" for t in udp_tests], {
            info[k]["label"]: [figures[t].get(k, empty) for t in udp_tests] for k in keys},
            logy=True))
    if keys:
        plots.append(report.bar_panels(out_dir / "throughput.png",
                                       "Throughput, host A -> host B", panels))
    costed = [k for k in keys if any(k in cost_figures[t] for t in tests)]
    if costed:
        plots.append(report.bar_plot(
            out_dir / "packet_cost.png",
            "CPU time of both routers' forwarding processes per packet", "CPU-µs per packet",
            [label_of(t) for t in tests],
            {info[k]["label"]: [cost_figures[t].get(k, empty) for t in tests] for k in costed},
        ))
    return {
        "name": "throughput",
        "rounds": rounds,
        "seconds": seconds,
        "tests": tests,
        "units": {t: unit(t) for t in tests},
        "setups": info,
        "results": figures,
        "busiest_cpu_percent": cpu_figures,
        "cpu_us_per_packet": cost_figures,
        "packet_counter": "wan0 rx_packets of both routers",
        "ratios": ratios,
        "cost_ratios": cost_ratios,
        "plots": [str(p) for p in plots if p],
    }
