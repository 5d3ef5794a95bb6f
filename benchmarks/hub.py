"""Hub and spokes: one pyike hub router with N spoke routers, every spoke sending at once.

    spoke 1: pyike, wan0 198.18.1.1, 10.1.0.1 --+
    ...                                          +-- br0 198.18.0.1  hub: pyike  lan0 10.0.0.1
    spoke N: pyike, wan0 198.18.1.N, 10.N.0.1 --+                               |
                                                                      LAN host 10.0.0.2

Each spoke is a namespace running pyike with one tunnel to the hub, GRE in ESP transport mode as
in the throughput benchmark's pyike set-up (racoon.conf shaped like the article's), and an inner
subnet of its own, 10.k.0.0/24. The hub runs one pyike with N gre and remote blocks and 2N
policies. For each test every spoke runs an iperf3 client to its own iperf3 server on the hub's
LAN host, all at once, released together and running a second past both ends of a window of
the test's length.

Two modes. Fixed load (the default): every spoke count offers the same total load, split evenly
over its spokes (total/N per spoke), so what is measured is whether the hub carries that load,
and at what cost per packet, as its tunnels grow; not how two cores are shared out among 2N+2
busy processes. The total is a fraction (--load, default 0.5) of what one spoke delivers
sending all-out, measured by a calibration window per test on a 1-spoke star of its own at the
start of the run, so that one spoke carries it with room to spare. UDP senders are paced by
iperf3 -b. TCP is paced too, by the socket (iperf3 --fq-rate): -b's 128 KiB writes with idle
gaps between them restart TCP from a small window after each gap, so 50 spokes at 1/50 of the
rate fell far short of it; a socket-paced sender below the path's capacity sends what it is
asked, so TCP's offered load is fixed too. All-out (--all-out): every spoke sends as fast as it
can (UDP unlimited, TCP as its window allows), as a stress figure.

CPUs: on a machine of few cores, N spoke daemons and 2N iperf3 processes, each woken per packet
at 1/N of the rate, cost far more CPU together than one spoke at the whole rate, and on shared
cores they starve the hub's forwarding process (runnable but waiting most of the window) and
cool its caches, so its loss and cost per packet grew with N for reasons outside the hub. So the
hub's forwarding process runs alone on one CPU (among this benchmark's processes), everything
else of the star on the others. Loss is split by where it happened: at the spokes (routed into
tun0, not sent on wan0) or at the hub (sent on the spokes' wan0, not delivered on its lan0).

Figures over the window, per spoke count, median over rounds:

- offered: what the spokes' kernels routed into their tunnels (the spokes' tun0 tx packets,
  dropped ones included, and bytes);
- delivered: what the hub sent to its LAN host (the hub's lan0 tx);
  both as packets/s for UDP and Mbit/s of IP packets for TCP, so TCP's are a few percent above
  iperf3's goodput (the hub's receive offload, forward.gro, hands the host several TCP segments
  in one packet with one set of headers, so lan0 counts fewer header bytes than the spokes'
  tun0 for the same data: up to about 3 % at these segment sizes);
- loss, UDP only (TCP recovers its own, and lan0's TCP packets are not its segments): 1 -
  delivered / offered packets, and its parts at the spokes and at the hub, counted
  over the senders' whole run, from before they start until the hub has delivered the last
  packet, so every packet counted as offered has had its chance to arrive (a window's ends cut
  through packets in flight and queued in the hub's socket buffers);
- the hub forwarding process's CPU-µs per packet: its utime + stime from /proc over the packets
  in and out of the hub's tunnels (br0 rx + tx packets: one per segment, every packet the hub
  took out of a tunnel or put into one);
- failed senders: spokes whose iperf3 reported an error or had to be stopped (under load a UDP
  client can lose its one stream-set-up datagram and never start);

and the ratios of the largest spoke count's medians to the smallest's: flat is delivered about
offered at every count and a CPU-µs-per-packet ratio near 1. Each spoke count gets a network
and daemons of its own, so the hub holds exactly N tunnels. Memory: the pyike processes'
proportional set size (PSS) is printed for each count, since every spoke is a whole daemon.

python -m benchmarks hub [--spokes 1,10,50] [--rounds N] [--load FRACTION | --all-out] [--smoke]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import netns, procs, report, setups
from benchmarks.throughput import iperf_argv, iperf_value, label_of, unit

DEFAULT_SPOKES = (1, 10, 50)
SMOKE_SPOKES = (2,)
TESTS = ("tcp", "udp64", "udp1400")
SMOKE_TESTS = ("tcp", "udp1400")
FIRST_PORT = 5200  # spoke k's iperf3 server listens on FIRST_PORT + k
WARMUP_S = 1  # the senders run this long before the window and after it
QUIET_S = 0.1  # the hub's lan0 counter standing still this long: it has nothing left to send
# Beyond the senders' own time: the end report. A UDP client whose one stream-set-up datagram
# the loaded tunnels lost would wait 30 s (iperf3's own timeout): it is stopped sooner and
# counted as a failed sender.
IPERF_SLACK_S = 10.0
DEFAULT_LOAD = 0.5  # fixed mode's total: this fraction of one spoke's all-out aggregate
ETHERNET_HEADER = 14  # lan0's byte counters include each frame's header (IEEE 802.3)
# what measure() returns per window
FIGURES = ("offered", "delivered", "loss", "spoke_loss", "hub_loss", "cost")


def hub_tunnel(k: int) -> str:
    """The hub's end of tunnel k."""
    return f"10.255.{k}.1"


def spoke_tunnel(k: int) -> str:
    """Spoke k's end of its tunnel."""
    return f"10.255.{k}.2"


class Hub:
    """A star of pyike daemons: the hub with a tunnel per spoke, and the spokes."""

    def __init__(self, spokes: int) -> None:
        self.count = spokes
        self.star: netns.Star | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="pyike-bench-hub-"))
        self.hub: subprocess.Popen | None = None
        self.spokes: list[subprocess.Popen] = []
        self.servers: list[subprocess.Popen] = []
        self.bringup_s: float | None = None
        self.cpus = self.cpu_split()

    @staticmethod
    def cpu_split() -> tuple[set[int], set[int]] | None:
        """(the hub forwarding process's CPU, every other star process's CPUs), None when this
        process may use one CPU only."""
        available = sorted(os.sched_getaffinity(0))
        return ({available[0]}, set(available[1:])) if len(available) > 1 else None

    def up(self) -> None:
        """Build the star, start every daemon, wait until every spoke reaches the LAN host."""
        started = time.monotonic()
        self.star = star = netns.build_star("hub", self.count)
        ks = range(1, self.count + 1)
        peers = [setups.GrePeer(f"tun{k}", netns.spoke_wan(k), hub_tunnel(k), spoke_tunnel(k))
                 for k in ks]
        conf = setups.write_pyike_files(self.workdir, "hub", netns.HUB_WAN, peers)
        self.hub = setups.start_pyike(star.hub, conf, self.workdir / "pyike-hub.log")
        for k, ns in zip(ks, star.spokes, strict=True):
            conf = setups.write_pyike_files(self.workdir, f"s{k}", netns.spoke_wan(k), [
                setups.GrePeer("tun0", netns.HUB_WAN, spoke_tunnel(k), hub_tunnel(k))])
            # The spokes' files differ from the hub's only in addresses: `pyike -t` once is
            # enough, and 50 more Python start-ups would cost this machine's two cores.
            self.spokes.append(setups.start_pyike(ns, conf, self.workdir / f"pyike-s{k}.log",
                                                  check=False))
        timeout = 20.0 + 0.5 * self.count
        hub_devs = {p.dev for p in peers}
        if not procs.wait_until(lambda: hub_devs <= setups.links_up(star.hub), timeout, 0.2):
            raise setups.SetupError(f"hub: tunnels not up\n{self.logs()}")
        pending = list(star.spokes)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = [ns for ns in pending if "tun0" not in setups.links_up(ns)]
            if pending:
                time.sleep(0.2)
        if pending:
            raise setups.SetupError(f"spokes without tun0: {pending[:5]}\n{self.logs()}")
        _ip_batch(star.hub, [f"route add {netns.spoke_subnet(k)} dev tun{k}" for k in ks])
        for k, ns in zip(ks, star.spokes, strict=True):
            netns.ip("route", "add", netns.HUB_LAN_NET, "dev", "tun0", "src",
                     netns.spoke_lan(k), netns=ns)
        self.servers = [procs.spawn(["iperf3", "-s", "-p", str(FIRST_PORT + k)], netns=star.host)
                        for k in ks]
        ports = {f":{FIRST_PORT + k} " for k in ks}
        if not procs.wait_until(lambda: _listening(star.host, ports), 10.0, 0.1):
            raise setups.SetupError("iperf3 servers did not start on the hub's LAN host")
        missing = self.reach_all(20.0 + 1.0 * self.count)
        if missing:
            raise setups.SetupError(f"spokes {missing[:10]} cannot reach the hub's LAN host\n"
                                    f"{self.logs()}")
        self.bringup_s = time.monotonic() - started
        self.pin([])

    def reach_all(self, timeout: float) -> list[int]:
        """Ping the LAN host from every spoke at once (the first packets start the
        negotiations), again from those not answered, until all are or timeout passes;
        returns the spokes never answered."""
        pending = list(range(1, self.count + 1))
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pings = {k: procs.spawn(["ping", "-n", "-q", "-c", "1", "-W", "1", "-I",
                                     netns.spoke_lan(k), netns.HUB_HOST],
                                    netns=self.star.spokes[k - 1]) for k in pending}
            answered = set()
            for k, ping in pings.items():
                try:
                    if ping.wait(timeout=10) == 0:
                        answered.add(k)
                except subprocess.TimeoutExpired:
                    pass
                procs.finish(ping)
            pending = [k for k in pending if k not in answered]
        return pending

    def daemons(self) -> list[subprocess.Popen]:
        return [p for p in (self.hub, *self.spokes) if p is not None]

    def hub_forwarding_pids(self) -> list[int]:
        return setups.forwarding_children([self.hub] if self.hub else [])

    def pss_bytes(self) -> int:
        """PSS of every pyike process of the star (IKE and forwarding processes)."""
        pids = [p.pid for p in self.daemons()] + setups.forwarding_children(self.daemons())
        return procs.pss_bytes(pids)

    def counters(self) -> dict[str, float]:
        """Counters now: what the spokes' kernels routed into their tunnels (tun0 tx, dropped
        packets included), what the spokes sent on the wire (wan0 tx) and what crossed the
        hub's lan0, each side with the time it was read (on a loaded machine reading 50 spokes
        takes long enough to skew a window); read from /proc, no process per namespace."""
        hub = netns.dev_counters(self.hub.pid)
        lan, wan = hub["lan0"], hub["br0"]
        out = {"lan_time": time.monotonic(), "lan_tx_packets": lan["tx"]["packets"],
               "lan_tx_bytes": lan["tx"]["bytes"], "lan_rx_packets": lan["rx"]["packets"],
               "tunnel_packets": wan["rx"]["packets"] + wan["tx"]["packets"],
               "offered_packets": 0, "offered_bytes": 0, "wire_packets": 0}
        started = time.monotonic()
        for spoke in self.spokes:
            devs = netns.dev_counters(spoke.pid)
            tun = devs["tun0"]["tx"]
            out["offered_packets"] += tun["packets"] + tun["drop"]
            out["offered_bytes"] += tun["bytes"]
            out["wire_packets"] += devs["wan0"]["tx"]["packets"]
        out["spokes_time"] = (started + time.monotonic()) / 2
        return out

    def _drained(self, timeout: float = 5.0) -> dict[str, float]:
        """The counters once the hub's lan0 has stopped sending: the senders are gone, and
        what the hub still held in its queues has come out (or never will, within
        `timeout`)."""
        seen = [self.counters()]

        def still() -> bool:  # unchanged over at least QUIET_S
            now = self.counters()
            if now["lan_time"] - seen[-1]["lan_time"] < QUIET_S:
                return False
            seen.append(now)
            return now["lan_tx_packets"] == seen[-2]["lan_tx_packets"]

        procs.wait_until(still, timeout, QUIET_S)
        return seen[-1]

    def pin(self, others: list[int]) -> None:
        """The hub's forwarding process gets a CPU to itself among this benchmark's processes,
        `others` (and every other process of the star) share the rest: sharing the same CPUs,
        N spokes' daemons and senders, each woken per packet at low rates, starve the hub of
        CPU and pollute its caches as N grows, which measures the scheduler, not the hub.
        Nothing is pinned on one CPU."""
        if self.cpus is None:
            return
        hub_cpu, rest = self.cpus
        _pin(self.hub_forwarding_pids(), hub_cpu)
        _pin([p.pid for p in (*self.daemons(), *self.servers)]
             + setups.forwarding_children(self.spokes) + others, rest)

    def measure(self, test: str, seconds: int, total: float | None = None) -> dict:
        """All spokes send at once, each `total / N` (in the test's unit) or, without total,
        all-out. Over one window of `seconds` while all are sending: {"offered", "delivered"
        (the test's unit), "loss" (fraction of the offered packets), "spoke_loss" (of them, not
        sent on the wire), "hub_loss" (of those on the wire, not delivered), "cost" (hub CPU-µs
        per packet), "failed" (senders)}; a figure is None when there was nothing to count."""
        star = self.star
        forwarding = self.hub_forwarding_pids()
        rate = None if total is None else total / self.count
        logs = [self.workdir / f"iperf-s{k}.json" for k in range(1, self.count + 1)]
        for log in logs:
            log.unlink(missing_ok=True)
        # Each client waits for a line on its standard input before it becomes iperf3, so all
        # start together once every one is in its namespace; they run past both ends of the
        # window, so it sees them all sending.
        run_s = seconds + 2 * WARMUP_S
        clients = [
            procs.spawn(["sh", "-c", 'read _ && exec "$@"', "sh",
                         *iperf_argv(test, netns.HUB_HOST, run_s, FIRST_PORT + k,
                                     bind=netns.spoke_lan(k), rate=rate)],
                        netns=ns, log=str(log), stdin_pipe=True)
            for k, ns, log in zip(range(1, self.count + 1), star.spokes, logs, strict=True)
        ]
        try:
            procs.wait_until(lambda: all(_command(c.pid) in ("sh", None) for c in clients),
                             5.0 + 0.1 * self.count, 0.05)
            self.pin([c.pid for c in clients])  # before they become iperf3, which inherits it
            first = self.counters()
            for client in clients:
                try:
                    client.stdin.write(b"go\n")
                    client.stdin.close()
                except OSError:  # it is gone already: its log says why
                    pass
            time.sleep(WARMUP_S)  # the window opens once the senders are under way
            before = procs.cpu_snapshot(forwarding)
            start = self.counters()
            time.sleep(seconds)  # the measurement window itself
            end = self.counters()
            spent = procs.cpu_used(before, procs.cpu_snapshot(forwarding), forwarding)
            deadline = time.monotonic() + WARMUP_S + IPERF_SLACK_S
            for client in clients:
                try:
                    client.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            procs.stop_many(clients)
        last = self._drained()
        failed = 0
        for log in logs:
            try:
                iperf_value(test, log.read_text(errors="replace"))
            except (OSError, RuntimeError, KeyError) as exc:
                failed += 1
                if failed == 1:
                    print(f"hub: {self.count} spokes {test}: {log.name}: {str(exc)[:200]}")
        d = {key: end[key] - start[key] for key in start}
        # per second of each side's own window: the spokes' counters and the hub's
        sent = {key: d[key] / d["spokes_time"] for key in
                ("offered_packets", "offered_bytes", "wire_packets")}
        lan = {key: d[key] / d["lan_time"] for key in
               ("lan_tx_packets", "lan_tx_bytes", "lan_rx_packets")}
        if test.startswith("udp"):
            offered, delivered = sent["offered_packets"], lan["lan_tx_packets"]
        else:
            ip_bytes = lan["lan_tx_bytes"] - ETHERNET_HEADER * lan["lan_tx_packets"]
            offered, delivered = sent["offered_bytes"] * 8 / 1e6, ip_bytes * 8 / 1e6
        # the packets the hub forwarded: those in and out of its tunnels, one per segment (on
        # lan0 its receive offload hands several TCP segments to the host in one packet)
        through = d["tunnel_packets"]
        run = {key: last[key] - first[key] for key in first}
        # Loss is counted for UDP only: TCP recovers its own, and lan0's packets are not its
        # segments (the offload), so they cannot be set against the spokes' counts.
        udp = test.startswith("udp")
        return {
            "offered": offered if d["offered_packets"] else None,
            "delivered": delivered if d["lan_tx_packets"] else None,
            "loss": _lost(run["offered_packets"], run["lan_tx_packets"]) if udp else None,
            "spoke_loss": _lost(run["offered_packets"], run["wire_packets"]) if udp else None,
            "hub_loss": _lost(run["wire_packets"], run["lan_tx_packets"]) if udp else None,
            "cost": spent / through * 1e6 if forwarding and through > 0 else None,
            "failed": failed,
        }

    def logs(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("pyike-*.log"))[:4]:
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1000:]}")
        return "\n".join(parts)

    def down(self) -> None:
        procs.stop_many([*self.servers, *self.daemons()])
        self.servers, self.spokes, self.hub = [], [], None
        if self.star is not None:
            self.star.teardown()
            self.star = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _lost(sent: float, arrived: float) -> float | None:
    """The fraction of the packets sent that did not arrive; None when nothing was sent."""
    return 1 - arrived / sent if sent else None


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:  # gone already
            pass


def _command(pid: int) -> str | None:
    """The command name of a process (/proc/PID/comm), None once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _ip_batch(ns: str, commands: list[str]) -> None:
    """Many `ip` commands in one process (`ip -batch -`)."""
    procs.run(["ip", "-batch", "-"], netns=ns, input="\n".join(commands) + "\n")


def _listening(ns: str, ports: set[str]) -> bool:
    out = procs.run(["ss", "-ltn"], netns=ns, check=False).stdout
    return all(port in out for port in ports)


def calibrate(tests: list[str], seconds: int, load: float) -> dict:
    """Fixed mode's total offered load per test: `load` times what one spoke delivers sending
    all-out, one window per test on a 1-spoke star of its own."""
    out: dict = {"load": load, "seconds": seconds, "error": None, "all_out": {}, "total": {}}
    hub = Hub(1)
    try:
        hub.up()
        for test in tests:
            delivered = hub.measure(test, seconds)["delivered"]
            out["all_out"][test] = delivered
            out["total"][test] = delivered * load if delivered else None
    except (setups.SetupError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        out["error"] = str(exc).splitlines()[0][:300]
        print(f"hub: calibration: {str(exc)[:1500]}")
    finally:
        hub.down()
    return out


def run(rounds: int, smoke: bool, out_dir: Path, spokes: tuple[int, ...] | None = None,
        all_out: bool = False, load: float = DEFAULT_LOAD) -> dict:
    """Calibrate the fixed load (unless all_out), then for each spoke count: build the star,
    run the rounds of tests, tear it down."""
    procs.need_binary("iperf3", "iperf3")
    import pyike.cli  # noqa: F401 - fail early when the daemon has not landed

    counts = tuple(spokes or (SMOKE_SPOKES if smoke else DEFAULT_SPOKES))
    seconds = 1 if smoke else 3
    rounds = 1 if smoke else max(1, rounds)
    tests = list(SMOKE_TESTS if smoke else TESTS)
    calibration = None if all_out else calibrate(tests, seconds, load)
    points: dict[int, dict] = {}
    for n in counts:
        point = points[n] = {"spokes": n, "available": False, "error": None,
                             "samples": {t: {f: [] for f in FIGURES} for t in tests},
                             "failed_senders": dict.fromkeys(tests, 0)}
        hub = Hub(n)
        try:
            hub.up()
            point["available"] = True
            point["bringup_s"] = round(hub.bringup_s, 1)
            point["pss_bytes"] = hub.pss_bytes()
            for _ in range(rounds):
                for test in tests:
                    total = None if calibration is None else calibration["total"].get(test)
                    if calibration is not None and total is None:
                        continue  # no load to offer: the calibration said why
                    sample = hub.measure(test, seconds, total)
                    point["failed_senders"][test] += sample["failed"]
                    for figure in FIGURES:
                        if sample[figure] is not None:
                            point["samples"][test][figure].append(sample[figure])
        except (setups.SetupError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            point["error"] = str(exc).splitlines()[0][:300]
            print(f"hub: {n} spokes: {str(exc)[:1500]}")
        finally:
            hub.down()
    return summarize(points, tests, rounds, seconds, out_dir, calibration)


def summarize(points: dict[int, dict], tests: list[str], rounds: int, seconds: int,
              out_dir: Path, calibration: dict | None = None) -> dict:
    """Print the tables, plot hub.png, return the figures; calibration is None in all-out
    mode."""
    figures = {n: {t: {f: report.summary(p["samples"][t][f]) for f in FIGURES} for t in tests}
               for n, p in points.items()}
    medians = {n: {t: {f: s["median"] for f, s in per.items()} for t, per in fig.items()}
               for n, fig in figures.items()}
    # delivered / offered of the medians: about 1 when the hub carries what it is offered
    delivery = {n: {t: report.ratio(m[t]["delivered"], m[t]["offered"]) for t in tests}
                for n, m in medians.items()}
    measured = sorted(n for n, p in points.items() if p["available"])
    low, high = (measured[0], measured[-1]) if len(measured) > 1 else (None, None)
    ratios = {}
    for test in tests:
        pairs = {"throughput": "delivered", "offered": "offered", "cpu_us_per_packet": "cost"}
        ratios[test] = {key: None if low is None else report.ratio(
            medians[high][test][figure], medians[low][test][figure])
            for key, figure in pairs.items()}
    mode = "all-out" if calibration is None else "fixed"
    cpus = Hub.cpu_split()
    pinning = ("the hub's forwarding process alone on CPU " + ",".join(map(str, cpus[0]))
               + ", every other process of the star on " + ",".join(map(str, sorted(cpus[1])))
               if cpus else "one CPU, nothing pinned")
    rows = []
    for n in points:
        for test in tests:
            f, m = figures[n][test], medians[n][test]
            rows.append([str(n) if test == tests[0] else "", test, unit(test),
                         report.fmt(f["offered"]["median"]), report.fmt(f["delivered"]["median"]),
                         report.fmt_range(f["delivered"]), report.fmt(delivery[n][test], 3),
                         *["-" if m[k] is None else f"{m[k] * 100:.2f}"
                           for k in ("loss", "spoke_loss", "hub_loss")],
                         report.fmt(f["cost"]["median"], 2), report.fmt_range(f["cost"], 2),
                         str(points[n]["failed_senders"][test])])
    if calibration is None:
        how = "each as fast as it can (all-out)"
    else:
        how = (f"a fixed total split evenly ({calibration['load']:g} x one spoke's all-out "
               "aggregate)")
    print(report.table(
        f"hub: every spoke sends to the hub's LAN host at once, {how}, {rounds} round(s) of "
        f"{seconds} s (offered: the spokes' tun0 tx; delivered: the hub's lan0 into its LAN "
        "host; CPU-us/packet: the hub's forwarding process, per packet in or out of its "
        "tunnels)",
        ["spokes", "test", "unit", "offered", "delivered", "min-max", "deliv/offered",
         "loss %", "at spokes %", "at hub %", "hub CPU-us/packet", "min-max", "failed senders"],
        rows,
    ))
    name = f"{high}/{low}" if low is not None else "-"
    print(report.table(
        f"hub ratios, {name} spokes (medians; flat: delivered ratio near the offered one and "
        "a packet-cost ratio near 1, the hub's cost per packet not growing with its tunnels)",
        ["test", f"offered {name}", f"delivered {name}", f"CPU-us/packet {name}"],
        [[t, report.fmt(r["offered"], 2), report.fmt(r["throughput"], 2),
          report.fmt(r["cpu_us_per_packet"], 2)] for t, r in ratios.items()],
    ))
    if calibration is not None:
        if calibration["error"]:
            print(f"  calibration: failed ({calibration['error']})")
        print(f"  calibration, 1 spoke all-out, one {calibration['seconds']} s window each: "
              + "; ".join(f"{t} {report.fmt(calibration['all_out'].get(t), 0)} -> offered "
                          f"{report.fmt(calibration['total'].get(t), 0)} {unit(t)}" for t in tests))
    for n, p in points.items():
        if not p["available"]:
            print(f"  {n} spokes: not measured ({p['error']})")
        else:
            daemons, plural = n + 1, "s" if n != 1 else ""
            print(f"  {n} spoke{plural}: all reached the hub's LAN host {p['bringup_s']} s "
                  f"after the start; {daemons} pyike daemons, {p['pss_bytes'] / 2**20:.0f} MiB "
                  f"PSS ({p['pss_bytes'] / daemons / 2**20:.1f} MiB each)")
    print("  CPU-us/packet: utime+stime from /proc over the hub's br0 rx+tx packets (its "
          "tunnels'). Loss, UDP only: at the spokes, tun0 tx not on wan0; at the hub, the "
          "spokes' wan0 tx not on its lan0.")
    print(f"  CPUs: {pinning}.")
    plots = []
    if measured:
        groups = [str(n) for n in measured]
        panels = [report.Panel(f"{label_of(t)}: aggregate", unit(t), groups, {
            "offered (spokes' tunnels)": [figures[n][t]["offered"] for n in measured],
            "delivered (hub's LAN)": [figures[n][t]["delivered"] for n in measured]})
            for t in tests]
        panels.append(report.Panel("hub forwarding process", "CPU-µs per packet", groups,
                                   {label_of(t): [figures[n][t]["cost"] for n in measured]
                                    for t in tests}))
        plots.append(report.bar_panels(out_dir / "hub.png",
                                       f"pyike hub, all spokes sending at once, {how} "
                                       "(x: spokes)", panels))
    return {
        "name": "hub",
        "mode": mode,
        "calibration": calibration,
        "rounds": rounds,
        "seconds": seconds,
        "tests": tests,
        "units": {t: unit(t) for t in tests},
        "spokes": list(points),
        "points": {str(n): {
            "spokes": n, "available": p["available"], "error": p["error"],
            "bringup_s": p.get("bringup_s"), "pss_bytes": p.get("pss_bytes"),
            "failed_senders": p["failed_senders"],
            "offered": {t: figures[n][t]["offered"] for t in tests},
            "results": {t: figures[n][t]["delivered"] for t in tests},
            **{key: {t: figures[n][t][key] for t in tests}
               for key in ("loss", "spoke_loss", "hub_loss")},
            "delivered_over_offered": delivery[n],
            "cpu_us_per_packet": {t: figures[n][t]["cost"] for t in tests},
        } for n, p in points.items()},
        "ratio_name": name,
        "ratios": ratios,
        "packet_counter": "the hub's br0 rx + tx packets (its tunnels' packets)",
        "cpus": pinning,
        "plots": [str(p) for p in plots if p],
    }
