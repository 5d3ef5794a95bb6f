"""Where one forwarded packet's time goes: the forwarding core's calls and the I/O around them.

The harness runs in a network namespace of its own with a real TUN device (pyike.tun) and the
forwarding process's core (forward.core.ForwardingCore with one tunnel, one SPD policy pair and
one ESP SA pair), and makes the calls pyike.dataplane makes per packet:

  out: TUN read (os.read) -> core.from_tunnel (GRE, the cached policy and SA, ESP seal) -> send
       what the core queued (raw ESP socket)
  in:  recv (raw ESP) -> core.from_wire (SA by SPI, ESP open, the inbound checks, GRE decap) ->
       write what the core queued to the TUN device

Packets enter the TUN device from a UDP socket routed into it; the sealed ESP packets go over
a veth to a reflector in a second namespace that sends them straight back, so the inbound
stages see real packets from the peer address (the inbound SA shares the outbound SA's keys).
Each stage is timed per packet with time.perf_counter_ns; the timer's own cost is subtracted.
The send stage includes what the kernel does in the sender's context: routing, the veth, and
delivery to the peer namespace's socket.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import netns, procs, report, setups
from forward.gro import TUN_READ_SIZE, VNET_HEADER_LEN, coalesce

SIZES = (64, 512, 1400)
LOCAL, REMOTE = netns.ROUTER_A_WAN, netns.ROUTER_B_WAN
TUN_ADDRESS, TUN_PEER = "10.1.1.1", "10.1.1.2"
TARGET = ("10.0.2.2", 9)  # discard port behind the tunnel; routed into the TUN device
BURST = 128  # below the TUN queue (500) and socket buffers: nothing is lost between stages
IPPROTO_ESP = 50
OUT_STAGES = ("tun_read", "from_tunnel", "send")
IN_STAGES = ("recv", "from_wire", "tun_write")


def _timer_cost_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(2000):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)


class Harness:
    """The forwarding process's core for one tunnel, built as pyike builds it."""

    def __init__(self) -> None:
        from esp.sa import EspSA
        from forward.core import ForwardingCore
        from forward.specs import TunnelSpec
        from pyike.sadb import spd_of
        from pyike.tun import TunDevice, inner_mtu
        from spd.parse import parse_setkey

        mtu = inner_mtu(1500)
        self.tun = TunDevice("tun0", TUN_ADDRESS, TUN_PEER, mtu)
        os.set_blocking(self.tun.fileno(), False)
        from benchmarks.relay import add_route

        add_route("10.0.2.0/24", "tun0")
        self.core = ForwardingCore([TunnelSpec("tun0", LOCAL, REMOTE, TUN_ADDRESS, TUN_PEER, mtu)])
        text = (f"spdadd {LOCAL}/32[0] {REMOTE}/32[0] gre -P out ipsec esp/transport//require;\n"
                f"spdadd {REMOTE}/32[0] {LOCAL}/32[0] gre -P in ipsec esp/transport//require;\n")
        enc_key, auth_key = os.urandom(16), os.urandom(20)
        spi = 0x5000
        now = time.monotonic()
        # The reflector returns our own packets: the inbound SA has the same SPI and keys.
        sas = [EspSA(spi, src, dst, "aes-cbc", enc_key, "hmac-sha1", auth_key, direction=d,
                     now=now) for src, dst, d in ((LOCAL, REMOTE, "out"), (REMOTE, LOCAL, "in"))]
        self.core.apply_setkey(spd_of([parse_setkey(text, "profile.conf")]), sas)
        self.esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
        self.esp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.esp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def profile(self, size: int, packets: int) -> dict[str, float]:
        """Nanoseconds per packet for each stage at this inner packet size."""
        clock = time.perf_counter_ns
        core, fd, esp = self.core, self.tun.fileno(), self.esp
        tunnel = core.tunnels[0]
        from_tunnel, from_wire = core.from_tunnel, core.from_wire
        esp_out, tun_out = core.esp_out, core.tun_out
        spent = dict.fromkeys(OUT_STAGES + IN_STAGES, 0)
        counted = dict.fromkeys(OUT_STAGES + IN_STAGES, 0)
        payload = b"\xa5" * (size - 28)  # inner IPv4 (20) + UDP (8) headers, RFC 791 / 768
        done = 0
        deadline = time.monotonic() + 60
        while done < packets and time.monotonic() < deadline:
            burst = min(BURST, packets - done)
            for _ in range(burst):
                self.udp.sendto(payload, TARGET)
            for _ in range(burst):
                t0 = clock()
                try:
                    pkt = os.read(fd, TUN_READ_SIZE)[VNET_HEADER_LEN:]  # as pyike.dataplane
                except BlockingIOError:
                    break
                t1 = clock()
                from_tunnel(tunnel, pkt, time.monotonic())
                t2 = clock()
                for data, addr in esp_out:  # what pyike.dataplane does with the queue
                    esp.sendto(data, addr)
                esp_out.clear()
                t3 = clock()
                for stage, dt in zip(OUT_STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    spent[stage] += dt
                    counted[stage] += 1
            received = 0
            while received < burst:
                if not select.select([esp], [], [], 0.5)[0]:
                    break  # the reflector lost some: go on with the next burst
                t0 = clock()
                try:
                    data = esp.recv(65535)
                except BlockingIOError:
                    continue
                t1 = clock()
                from_wire(data, time.monotonic())
                t2 = clock()
                if not tun_out:
                    continue
                for _t, header, inner in coalesce(tun_out):
                    os.writev(fd, (header, inner))
                tun_out.clear()
                t3 = clock()
                received += 1
                for stage, dt in zip(IN_STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    spent[stage] += dt
                    counted[stage] += 1
            done += burst
        overhead = _timer_cost_ns()
        return {s: max(0.0, spent[s] / counted[s] - overhead) if counted[s] else None
                for s in spent} | {"packets_out": counted["send"], "packets_in": counted["recv"]}


def child(packets: int) -> dict:
    harness = Harness()
    return {str(size): harness.profile(size, packets) for size in SIZES}


def reflect(peer: str, idle_s: float) -> None:
    """Send every ESP packet from `peer` straight back to it, until idle for idle_s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    dst = (peer, 0)
    while select.select([sock], [], [], idle_s)[0]:
        data = sock.recv(65535)
        sock.sendto(data[(data[0] & 15) * 4:], dst)


def run(rounds: int, smoke: bool, out_dir: Path) -> dict:
    packets = 512 if smoke else 20_000
    rounds = 1 if smoke else max(1, rounds)
    left, right = netns.build_pair("pp")
    reflector = procs.spawn([sys.executable, "-m", "benchmarks.profile_packet", "--reflect",
                             "--peer", LOCAL], netns=right, env=setups.python_env())
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for _ in range(rounds):
            result = subprocess.run(
                ["ip", "netns", "exec", left, sys.executable, "-m", "benchmarks.profile_packet",
                 "--child", "--packets", str(packets)],
                capture_output=True, text=True, timeout=300, env=setups.python_env(),
            )
            if result.returncode != 0:
                return {"name": "profile", "error": result.stderr.strip()[-1000:]}
            for size, stages in json.loads(result.stdout.strip().splitlines()[-1]).items():
                for stage, ns in stages.items():
                    if ns is not None:
                        samples.setdefault(size, {}).setdefault(stage, []).append(ns)
    finally:
        procs.finish(reflector)
        netns.delete_netns(left)
        netns.delete_netns(right)
    return summarize(samples, rounds, packets, out_dir)


def summarize(samples: dict, rounds: int, packets: int, out_dir: Path) -> dict:
    sizes = [str(s) for s in SIZES]
    med = {size: {stage: report.summary(v)["median"] for stage, v in samples.get(size, {}).items()}
           for size in sizes}
    totals = {}
    for size in sizes:
        m = med[size]
        out_total = sum(m.get(s) or 0 for s in OUT_STAGES)
        in_total = sum(m.get(s) or 0 for s in IN_STAGES)
        totals[size] = {"out": out_total, "in": in_total}
    rows = []
    for direction, stages in (("out", OUT_STAGES), ("in", IN_STAGES)):
        for stage in stages:
            cells = []
            for size in sizes:
                v = med[size].get(stage)
                total = totals[size][direction]
                share = f" ({100 * v / total:.0f}%)" if v is not None and total else ""
                cells.append(f"{report.fmt(v / 1000 if v is not None else None, 2)}{share}")
            rows.append([f"{direction}: {stage}", *cells])
        rows.append([f"{direction}: total (loop path)",
                     *[report.fmt(totals[s][direction] / 1000, 2) for s in sizes]])
    print(report.table(
        f"profile: microseconds per packet per data-plane stage ({rounds} round(s) x "
        f"{packets} packets; median; share of the direction's total)",
        ["stage", *[f"{s} B" for s in sizes]], rows,
    ))
    print("  from_tunnel and from_wire are the forwarding core's calls (GRE, lookups, ESP);\n"
          "  send includes the kernel's delivery across the veth, in the sender's context.")
    plots = []
    series = {stage: [report.summary(samples.get(s, {}).get(stage, []))
                      for s in sizes] for stage in OUT_STAGES + IN_STAGES}
    plots.append(report.bar_plot(
        out_dir / "profile_packet.png", "Cost per packet by data-plane stage",
        "nanoseconds", [f"{s} B" for s in sizes], series,
    ))
    return {
        "name": "profile",
        "rounds": rounds,
        "packets": packets,
        "stages": {"out": list(OUT_STAGES), "in": list(IN_STAGES)},
        "ns_per_packet": med,
        "totals_ns": totals,
        "plots": [str(p) for p in plots if p],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_packet")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--reflect", action="store_true")
    parser.add_argument("--peer", default=LOCAL)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.reflect:
        reflect(args.peer, args.idle)
    elif args.child:
        print(json.dumps(child(args.packets)), flush=True)
    else:
        procs.install_handlers()
        run(3, False, Path("bench-out"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
