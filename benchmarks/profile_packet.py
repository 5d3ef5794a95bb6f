"""Where one forwarded packet's time goes: each stage of pyike's data plane timed on its own.

The harness runs in a network namespace of its own with a real TUN device (pyike.tun) and the
forwarding process's state (pyike.sadb.SadState with one SPD policy pair and one ESP SA pair),
and calls what pyike.dataplane calls per packet:

  out: TUN read (os.read) -> GRE (gre.encap) -> SPD + SA lookup -> ESP seal -> send (raw ESP)
  in:  recv (raw ESP) -> SA by SPI + ESP open -> policy check -> GRE decap -> TUN write

Packets enter the TUN device from a UDP socket routed into it; the sealed ESP packets go over
a veth to a reflector in a second namespace that sends them straight back, so the inbound
stages see real packets from the peer address (the inbound SA shares the outbound SA's keys).
Each stage is timed per packet with time.perf_counter_ns; the timer's own cost is subtracted.
The loop caches the SPD and SA lookup per tunnel; both the cached and the full lookup are shown.
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

SIZES = (64, 512, 1400)
LOCAL, REMOTE = netns.ROUTER_A_WAN, netns.ROUTER_B_WAN
TUN_ADDRESS, TUN_PEER = "10.1.1.1", "10.1.1.2"
TARGET = ("10.0.2.2", 9)  # discard port behind the tunnel; routed into the TUN device
BURST = 128  # below the TUN queue (500) and socket buffers: nothing is lost between stages
IPPROTO_ESP, IPPROTO_GRE = 50, 47
OUT_STAGES = ("tun_read", "gre_encap", "spd_lookup_cached", "spd_lookup_full", "esp_seal",
              "send")
IN_STAGES = ("recv", "sa_lookup_open", "policy_check", "gre_decap", "tun_write")


def _timer_cost_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(2000):
        t0 = clock()
        samples.append(clock() - t0)
    return statistics.median(samples)


class Harness:
    """The data plane's objects for one tunnel, built as pyike builds them."""

    def __init__(self) -> None:
        from esp.sa import EspSA
        from pyike.sadb import SadState
        from pyike.tun import TunDevice, inner_mtu
        from spd.parse import parse_setkey

        self.tun = TunDevice("tun0", TUN_ADDRESS, TUN_PEER, inner_mtu(1500))
        os.set_blocking(self.tun.fileno(), False)
        from benchmarks.relay import add_route

        add_route("10.0.2.0/24", "tun0")
        self.state = SadState()
        text = (f"spdadd {LOCAL}/32[0] {REMOTE}/32[0] gre -P out ipsec esp/transport//require;\n"
                f"spdadd {REMOTE}/32[0] {LOCAL}/32[0] gre -P in ipsec esp/transport//require;\n")
        self.state.load_setkey([parse_setkey(text, "profile.conf")], time.monotonic())
        enc_key, auth_key = os.urandom(16), os.urandom(20)
        spi = 0x5000
        now = time.monotonic()
        self.state.add(EspSA(spi, LOCAL, REMOTE, "aes-cbc", enc_key, "hmac-sha1", auth_key,
                             direction="out", now=now), manual=False)
        # The reflector returns our own packets: the inbound SA has the same SPI and keys.
        self.state.add(EspSA(spi, REMOTE, LOCAL, "aes-cbc", enc_key, "hmac-sha1", auth_key,
                             direction="in", now=now), manual=False)
        self.esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
        self.esp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.esp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.pair = {(LOCAL, REMOTE): "tun0"}
        self.out_gen = -1
        self.out_sa = None

    def profile(self, size: int, packets: int) -> dict[str, float]:
        """Nanoseconds per packet for each stage at this inner packet size."""
        clock = time.perf_counter_ns
        state, fd, esp = self.state, self.tun.fileno(), self.esp
        encap, decap, packet_type = state.gre_encap, state.gre_decap, state.gre_packet_type
        spent = dict.fromkeys(OUT_STAGES + IN_STAGES, 0)
        counted = dict.fromkeys(OUT_STAGES + IN_STAGES, 0)
        payload = b"\xa5" * (size - 28)  # inner IPv4 (20) + UDP (8) headers, RFC 791 / 768
        dst = (REMOTE, 0)
        done = 0
        deadline = time.monotonic() + 60
        while done < packets and time.monotonic() < deadline:
            burst = min(BURST, packets - done)
            for _ in range(burst):
                self.udp.sendto(payload, TARGET)
            for _ in range(burst):
                t0 = clock()
                try:
                    pkt = os.read(fd, 65535)
                except BlockingIOError:
                    break
                t1 = clock()
                g = encap(pkt, None, None)
                t2 = clock()
                if self.out_gen == state.generation:
                    sa = self.out_sa
                t3 = clock()
                state.lookup_policy("out", LOCAL, REMOTE, IPPROTO_GRE, None)
                sa = state.outbound(LOCAL, REMOTE)
                self.out_sa, self.out_gen = sa, state.generation
                t4 = clock()
                out = sa.seal(g, IPPROTO_GRE, time.monotonic())
                t5 = clock()
                esp.sendto(out, dst)
                t6 = clock()
                for stage, dt in zip(OUT_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4,
                                                  t6 - t5), strict=True):
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
                ihl = (data[0] & 15) * 4
                sa = state.inbound(int.from_bytes(data[ihl:ihl + 4], "big"))
                res = sa.open(memoryview(data)[ihl:], time.monotonic()) if sa else None
                t2 = clock()
                tunnel = self.pair.get((socket.inet_ntoa(data[16:20]),
                                        socket.inet_ntoa(data[12:16])))
                t3 = clock()
                if type(res) is not tuple or tunnel is None:
                    continue
                pkt = decap(bytes(res[1]))
                t4 = clock()
                if type(pkt) is not packet_type:
                    continue
                os.write(fd, pkt.payload)
                t5 = clock()
                received += 1
                for stage, dt in zip(IN_STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                     strict=True):
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
        out_total = sum(m.get(s) or 0 for s in OUT_STAGES if s != "spd_lookup_full")
        in_total = sum(m.get(s) or 0 for s in IN_STAGES)
        totals[size] = {"out": out_total, "in": in_total}
    rows = []
    for direction, stages in (("out", OUT_STAGES), ("in", IN_STAGES)):
        for stage in stages:
            cells = []
            for size in sizes:
                v = med[size].get(stage)
                total = totals[size][direction]
                share = f" ({100 * v / total:.0f}%)" if v is not None and total and \
                    stage != "spd_lookup_full" else ""
                cells.append(f"{report.fmt(v / 1000 if v is not None else None, 2)}{share}")
            rows.append([f"{direction}: {stage}", *cells])
        rows.append([f"{direction}: total (loop path)",
                     *[report.fmt(totals[s][direction] / 1000, 2) for s in sizes]])
    print(report.table(
        f"profile: microseconds per packet per data-plane stage ({rounds} round(s) x "
        f"{packets} packets; median; share of the direction's total)",
        ["stage", *[f"{s} B" for s in sizes]], rows,
    ))
    print("  spd_lookup_full is what a cache miss costs; the loop pays spd_lookup_cached.\n"
          "  send includes the kernel's delivery across the veth, in the sender's context.")
    plots = []
    series = {stage: [report.summary(samples.get(s, {}).get(stage, []))
                      for s in sizes] for stage in OUT_STAGES + IN_STAGES
              if stage != "spd_lookup_full"}
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
