"""A GRE relay with pyike's I/O shape and no ESP: the ceiling of Python I/O on this machine.

It does what pyike's forwarding process does per packet minus the SPD and ESP work: read a
packet from the TUN device, wrap it in GRE (gre.encap), send it on a raw protocol-47 socket; and
back: receive GRE, match the tunnel by (dst, src), unwrap (gre.decap), write to the TUN device.
Same TUN class, same codec, same selector loop and batch size, so the gap between this relay
and pyike is the price of ESP and policy.

    python -m benchmarks.relay --local 198.18.0.1 --remote 198.18.0.2 \
        --address 10.1.1.1 --peer 10.1.1.2 --route 10.0.2.0/24
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket

import gre
from pyike.dataplane import BATCH
from pyike.tun import TunDevice, inner_mtu

# pyike's own TUN MTU on a 1500-byte link, though GRE alone would allow 1476: the same TCP
# segment sizes as pyike, so the comparison is per packet, not per MTU.
RELAY_MTU = inner_mtu(1500)


class Relay:
    """One TUN device and one raw GRE socket, forwarding both ways until stopped."""

    def __init__(self, tun: TunDevice, local: str, remote: str) -> None:
        self.tun_fd = tun.fileno()
        self.local = local
        self.remote = remote
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, gre.IPPROTO_GRE)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        os.set_blocking(self.tun_fd, False)
        self.forwarded = 0
        self.dropped = 0
        self.running = True

    def from_tun(self) -> None:
        fd, sock, dst, encap = self.tun_fd, self.sock, (self.remote, 0), gre.encap
        for _ in range(BATCH):
            try:
                pkt = os.read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            try:
                sock.sendto(encap(pkt), dst)
                self.forwarded += 1
            except OSError:
                self.dropped += 1

    def from_wire(self) -> None:
        fd, sock, decap, packet_type = self.tun_fd, self.sock, gre.decap, gre.GrePacket
        pair = (self.local, self.remote)
        for _ in range(BATCH):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            if len(data) < 24 or data[0] >> 4 != 4:
                self.dropped += 1
                continue
            ihl = (data[0] & 15) * 4
            if (socket.inet_ntoa(data[16:20]), socket.inet_ntoa(data[12:16])) != pair:
                continue
            pkt = decap(bytes(memoryview(data)[ihl:]))
            if type(pkt) is not packet_type:
                self.dropped += 1
                continue
            try:
                os.write(fd, pkt.payload)
                self.forwarded += 1
            except OSError:
                self.dropped += 1

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.tun_fd, selectors.EVENT_READ, self.from_tun)
        sel.register(self.sock, selectors.EVENT_READ, self.from_wire)
        while self.running:
            for key, _ in sel.select(1.0):
                key.data()


def add_route(cidr: str, dev: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=dev)[0]
        ipr.route("add", dst=cidr, oif=index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay", description=__doc__)
    parser.add_argument("--tun", default="tun0")
    parser.add_argument("--local", required=True)
    parser.add_argument("--remote", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--mtu", type=int, default=RELAY_MTU)
    parser.add_argument("--route", action="append", default=[])
    args = parser.parse_args(argv)
    # a plain relay: one packet per read and per write, no offload
    tun = TunDevice(args.tun, args.address, args.peer, args.mtu, vnet_header=False)
    for cidr in args.route:
        add_route(cidr, args.tun)
    relay = Relay(tun, args.local, args.remote)

    def _stop(_sig: int, _frame: object) -> None:
        relay.running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("relay ready", flush=True)
    try:
        relay.run()
    finally:
        tun.close()
    print(f"relay forwarded {relay.forwarded} dropped {relay.dropped}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
