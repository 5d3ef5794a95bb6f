"""The benchmark networks: four namespaces in a line joined by veth pairs, and a star.

    host A        router A                  router B                  host B
    10.0.1.2 ---- 10.0.1.1 | 198.18.0.1 ---- 198.18.0.2 | 10.0.2.1 ---- 10.0.2.2

The star (build_star) is a hub router with a host on its LAN and N spoke routers on a bridge.
Outer (router-to-router) addresses come from 198.18.0.0/15, LAN addresses from 10.0.0.0/8; no
packet leaves the namespaces. Namespace names carry a per-process prefix so concurrent runs do
not collide. Routes between the LANs are left to the tunnel set-up (or `route_plain()`).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass

from benchmarks import procs

ROUTER_A_WAN = "198.18.0.1"
ROUTER_B_WAN = "198.18.0.2"
LAN_A = "10.0.1.0/24"
LAN_B = "10.0.2.0/24"
HOST_A = "10.0.1.2"
ROUTER_A_LAN = "10.0.1.1"
ROUTER_B_LAN = "10.0.2.1"
HOST_B = "10.0.2.2"

_serial = itertools.count()


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run `ip` (inside netns when given) and return its output."""
    return procs.run(["ip", *args], netns=netns, check=check, timeout=20).stdout


def delete_netns(name: str) -> None:
    ip("netns", "del", name, check=False)


def create_netns(name: str) -> str:
    """Create a namespace with loopback up; it is deleted at cleanup."""
    ip("netns", "add", name)
    procs.on_cleanup(lambda: delete_netns(name))
    ip("link", "set", "lo", "up", netns=name)
    return name


def unique_prefix(tag: str) -> str:
    """A namespace-name prefix unique to this process and call."""
    return f"pyb{os.getpid()}{tag}{next(_serial)}"


@dataclass
class Line:
    """The four namespaces of one set-up and their addresses."""

    host_a: str
    router_a: str
    router_b: str
    host_b: str

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.host_a, self.router_a, self.router_b, self.host_b)

    def route_plain(self) -> None:
        """Route LAN to LAN straight over the router link (the no-tunnel reference)."""
        ip("route", "add", LAN_B, "via", ROUTER_B_WAN, netns=self.router_a)
        ip("route", "add", LAN_A, "via", ROUTER_A_WAN, netns=self.router_b)

    def delivered_packets(self) -> int:
        """Packets both routers have received from the tunnel so far, in either direction
        (TCP's ACKs too): each is one the router forwards to its LAN host. Counted on the
        WAN side, where every set-up sends one packet per segment; on lan0 a router that
        coalesces TCP segments (pyike's receive offload, forward.gro) hands several to the
        host in one packet."""
        return sum(link_packets(ns, "wan0")[0] for ns in (self.router_a, self.router_b))

    def teardown(self) -> None:
        for name in self.names:
            delete_netns(name)


def link_stats(netns: str, dev: str) -> dict[str, dict[str, int]]:
    """The kernel's counters of dev in netns so far: {"rx": {"packets", "bytes", ...}, "tx":
    ...}; bytes are whole frames, link-layer header included."""
    return json.loads(ip("-j", "-s", "link", "show", "dev", dev, netns=netns))[0]["stats64"]


# /proc/net/dev: after "dev:" 8 receive then 8 transmit counters, each half starting with
# these five (Linux net/core/net-procfs.c, dev_seq_printf_stats)
_DEV_COLUMNS = ("bytes", "packets", "errs", "drop", "fifo")
_DEV_HALF = 8


def dev_counters(pid: int) -> dict[str, dict[str, dict[str, int]]]:
    """The kernel's counters of every device in the network namespace of process pid, from
    /proc/PID/net/dev: {dev: {"rx": {"bytes", "packets", "drop", ...}, "tx": ...}}. No `ip`
    process per namespace, so the counters of many namespaces are read within a few ms."""
    out = {}
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f:
            name, sep, rest = line.partition(":")
            if sep:  # the two header lines have no colon
                values = [int(v) for v in rest.split()]
                out[name.strip()] = {"rx": dict(zip(_DEV_COLUMNS, values, strict=False)),
                                     "tx": dict(zip(_DEV_COLUMNS, values[_DEV_HALF:],
                                                    strict=False))}
    return out


def link_packets(netns: str, dev: str) -> tuple[int, int]:
    """(received, sent) packets of dev in netns so far."""
    stats = link_stats(netns, dev)
    return stats["rx"]["packets"], stats["tx"]["packets"]


def _veth(ns1: str, if1: str, ns2: str, if2: str, mtu: int) -> None:
    ip("link", "add", if1, "mtu", str(mtu), "type", "veth", "peer", "name", if2,
       "mtu", str(mtu), "netns", ns2, netns=ns1)
    ip("link", "set", if1, "up", netns=ns1)
    ip("link", "set", if2, "up", netns=ns2)


def _addr(ns: str, dev: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", dev, netns=ns)


def _sysctl(ns: str, key: str, value: str) -> None:
    procs.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=ns)


def build_line(tag: str, mtu: int = 1500) -> Line:
    """Create the four namespaces, veths and addresses; all removed at cleanup."""
    prefix = unique_prefix(tag)
    line = Line(f"{prefix}-ha", f"{prefix}-ra", f"{prefix}-rb", f"{prefix}-hb")
    try:
        for name in line.names:
            create_netns(name)
        _veth(line.host_a, "lan0", line.router_a, "lan0", mtu)
        _veth(line.router_a, "wan0", line.router_b, "wan0", mtu)
        _veth(line.router_b, "lan0", line.host_b, "lan0", mtu)
        _addr(line.host_a, "lan0", f"{HOST_A}/24")
        _addr(line.router_a, "lan0", f"{ROUTER_A_LAN}/24")
        _addr(line.router_a, "wan0", f"{ROUTER_A_WAN}/24")
        _addr(line.router_b, "wan0", f"{ROUTER_B_WAN}/24")
        _addr(line.router_b, "lan0", f"{ROUTER_B_LAN}/24")
        _addr(line.host_b, "lan0", f"{HOST_B}/24")
        ip("route", "add", "default", "via", ROUTER_A_LAN, netns=line.host_a)
        ip("route", "add", "default", "via", ROUTER_B_LAN, netns=line.host_b)
        for router in (line.router_a, line.router_b):
            _sysctl(router, "net.ipv4.ip_forward", "1")
            # Replies to GRE/ESP the kernel cannot parse would only add noise.
            _sysctl(router, "net.ipv4.icmp_ratelimit", "1000")
    except BaseException:
        line.teardown()
        raise
    return line


# The hub benchmark's star: spokes and the hub meet on a bridge in the hub's namespace.
HUB_WAN = "198.18.0.1"
STAR_WAN_PREFIX = 15  # the whole of 198.18.0.0/15, so every spoke is on the hub's link
HUB_LAN_NET = "10.0.0.0/24"
HUB_LAN = "10.0.0.1"
HUB_HOST = "10.0.0.2"
MAX_SPOKES = 250  # spoke k's addresses carry k in one octet


def spoke_wan(k: int) -> str:
    """Spoke k's outer address (k from 1)."""
    return f"198.18.1.{k}"


def spoke_subnet(k: int) -> str:
    """Spoke k's inner subnet (10.0.0.0/24 is the hub's LAN)."""
    return f"10.{k}.0.0/24"


def spoke_lan(k: int) -> str:
    """Spoke k's inner address, in spoke_subnet(k)."""
    return f"10.{k}.0.1"


@dataclass
class Star:
    """The hub router, the host on its LAN and the spoke routers, one namespace each."""

    hub: str
    host: str
    spokes: list[str]

    def teardown(self) -> None:
        for name in (*self.spokes, self.hub, self.host):
            delete_netns(name)


def build_star(tag: str, spokes: int, mtu: int = 1500) -> Star:
    """The hub (br0 198.18.0.1, lan0 10.0.0.1), its LAN host (10.0.0.2) and `spokes` spoke
    namespaces (wan0 198.18.1.k on the hub's bridge, 10.k.0.1 on their loopback); all removed
    at cleanup. Routes between the inner subnets are left to the tunnels."""
    if not 1 <= spokes <= MAX_SPOKES:
        raise ValueError(f"spokes: 1 to {MAX_SPOKES}, not {spokes}")
    prefix = unique_prefix(tag)
    star = Star(f"{prefix}-h", f"{prefix}-hh", [f"{prefix}-s{k}" for k in range(1, spokes + 1)])
    try:
        create_netns(star.hub)
        create_netns(star.host)
        _veth(star.hub, "lan0", star.host, "lan0", mtu)
        _addr(star.hub, "lan0", f"{HUB_LAN}/24")
        _addr(star.host, "lan0", f"{HUB_HOST}/24")
        ip("route", "add", "default", "via", HUB_LAN, netns=star.host)
        ip("link", "add", "br0", "mtu", str(mtu), "type", "bridge", netns=star.hub)
        ip("link", "set", "br0", "up", netns=star.hub)
        _addr(star.hub, "br0", f"{HUB_WAN}/{STAR_WAN_PREFIX}")
        _sysctl(star.hub, "net.ipv4.ip_forward", "1")
        _sysctl(star.hub, "net.ipv4.icmp_ratelimit", "1000")
        for k, name in enumerate(star.spokes, 1):
            create_netns(name)
            _veth(name, "wan0", star.hub, f"sp{k}", mtu)
            ip("link", "set", f"sp{k}", "master", "br0", netns=star.hub)
            _addr(name, "wan0", f"{spoke_wan(k)}/{STAR_WAN_PREFIX}")
            _addr(name, "lo", f"{spoke_lan(k)}/24")
    except BaseException:
        star.teardown()
        raise
    return star


def build_pair(tag: str, mtu: int = 1500) -> tuple[str, str]:
    """Two namespaces joined by one veth: (198.18.0.1, 198.18.0.2) on `wan0`."""
    prefix = unique_prefix(tag)
    left, right = f"{prefix}-l", f"{prefix}-r"
    try:
        create_netns(left)
        create_netns(right)
        _veth(left, "wan0", right, "wan0", mtu)
        _addr(left, "wan0", f"{ROUTER_A_WAN}/24")
        _addr(right, "wan0", f"{ROUTER_B_WAN}/24")
    except BaseException:
        delete_netns(left)
        delete_netns(right)
        raise
    return left, right


def ping_ok(netns: str, address: str, count: int = 1, timeout: int = 1) -> bool:
    """True when `count` pings from netns to address are answered."""
    result = procs.run(
        ["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), address],
        netns=netns, check=False, timeout=count * timeout + 5,
    )
    return result.returncode == 0
