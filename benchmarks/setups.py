"""The tunnel set-ups compared by the throughput benchmark, each on its own namespace line.

- pyike: `pyike -F -f racoon.conf` on both routers, GRE in ESP transport mode (AES-128-CBC,
  HMAC-SHA1-96), files shaped like the racoon GRE-over-IPsec article.
- pyike-tunnel: the same daemon and algorithms, LAN to LAN in ESP tunnel mode (no GRE), as a
  racoon site written subnet to subnet: pyike routes the far LAN into its tunnel device.
- pyike-tunnel-udp: pyike-tunnel with `nat_traversal force` (ESP in UDP 4500) and a tunnel
  device MTU of 1400: the encapsulation and MTU strongSwan's set-up has, like for like.
- relay: benchmarks.relay on both routers (TUN -> GRE -> raw socket, no ESP).
- strongswan: charon + kernel-libipsec on both routers (ESP tunnel mode in UDP 4500).
- wireguard: wireguard-go on both routers (WireGuard in UDP 51820, userspace, in Go).
- veth: the routers forward LAN to LAN with no tunnel at all.

`up()` builds the line, starts what runs on the routers and waits until host A can ping host B;
any failure raises SetupError with the reason (and the daemons' log tail).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import netns, procs, strongswan, wireguard

REPO = Path(__file__).resolve().parent.parent
PSK = "bench-only-psk-7f3a"  # a throwaway key for namespaces that live for one run
TUNNEL_ADDRESS_A = "10.1.1.1"
TUNNEL_ADDRESS_B = "10.1.1.2"
CONNECT_TIMEOUT_S = 40.0


class SetupError(RuntimeError):
    pass


def python_env() -> dict[str, str]:
    """The environment for Python helpers started in namespaces: this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class TunnelSetup:
    key = ""
    label = ""
    note = ""

    def __init__(self) -> None:
        self.line: netns.Line | None = None
        self.procs: list[subprocess.Popen] = []
        self.workdir: Path | None = None

    def check(self) -> None:
        """Raise procs.Missing or SetupError when this set-up cannot run here."""

    def up(self) -> None:
        try:
            self.check()
        except ImportError as exc:
            raise SetupError(f"{self.key}: a package it needs has not landed: {exc}") from exc
        self.line = netns.build_line(self.key[:3])
        self.workdir = Path(tempfile.mkdtemp(prefix=f"pyike-bench-{self.key}-"))
        workdir = self.workdir
        procs.on_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
        self.start()
        line = self.line
        if not procs.wait_until(
            lambda: netns.ping_ok(line.host_a, netns.HOST_B), CONNECT_TIMEOUT_S, 0.5
        ):
            raise SetupError(f"{self.key}: host A cannot reach host B\n{self.logs()[-2000:]}")

    def start(self) -> None:
        raise NotImplementedError

    def logs(self) -> str:
        if self.workdir is None:
            return ""
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    def pids(self) -> list[int]:
        """Every live process the set-up started on the routers, and their children."""
        out = []
        for proc in self.procs:
            if proc.poll() is None:
                out.append(proc.pid)
                out.extend(procs.descendants(proc.pid))
        return out

    def forwarding_pids(self) -> list[int]:
        """The processes that forward the packets on both routers (for CPU per packet)."""
        return self.pids()

    def down(self) -> None:
        for proc in self.procs:
            procs.finish(proc)
        self.procs.clear()
        if self.line is not None:
            self.line.teardown()
            self.line = None


class VethSetup(TunnelSetup):
    key = "veth"
    label = "veth (no tunnel)"
    note = "kernel forwarding only, for scale"

    def start(self) -> None:
        self.line.route_plain()


class RelaySetup(TunnelSetup):
    key = "relay"
    label = "Python GRE relay (no ESP)"
    note = "pyike's I/O shape without ESP: the Python I/O ceiling"

    def check(self) -> None:
        import gre  # noqa: F401 - the relay needs the codec
        import pyike.dataplane  # noqa: F401
        import pyike.tun  # noqa: F401

    def start(self) -> None:
        sides = (
            (self.line.router_a, netns.ROUTER_A_WAN, netns.ROUTER_B_WAN, TUNNEL_ADDRESS_A,
             TUNNEL_ADDRESS_B, netns.LAN_B),
            (self.line.router_b, netns.ROUTER_B_WAN, netns.ROUTER_A_WAN, TUNNEL_ADDRESS_B,
             TUNNEL_ADDRESS_A, netns.LAN_A),
        )
        for ns, local, remote, address, peer, lan in sides:
            self.procs.append(procs.spawn(
                [sys.executable, "-m", "benchmarks.relay", "--local", local, "--remote", remote,
                 "--address", address, "--peer", peer, "--route", lan],
                netns=ns, log=str(self.workdir / f"relay-{ns[-2:]}.log"), env=python_env(),
            ))


class StrongswanSetup(TunnelSetup):
    key = "strongswan"
    label = "strongSwan libipsec"
    note = ("charon kernel-libipsec: ESP tunnel mode in UDP 4500 (encapsulation differs; "
            "TUN MTU 1400, its default)")

    def __init__(self) -> None:
        super().__init__()
        self.charons: list[strongswan.Charon] = []

    def check(self) -> None:
        strongswan.require()

    def start(self) -> None:
        b = strongswan.Charon(self.line.router_b, "swb")
        b.start_tunnel_end(netns.ROUTER_B_WAN, netns.ROUTER_A_WAN, netns.LAN_B, netns.LAN_A,
                           PSK, initiate=False)
        procs.wait_until(lambda: (b.dir / "charon.log").exists(), 5.0, 0.1)
        a = strongswan.Charon(self.line.router_a, "swa")
        a.start_tunnel_end(netns.ROUTER_A_WAN, netns.ROUTER_B_WAN, netns.LAN_A, netns.LAN_B,
                           PSK, initiate=True)
        self.charons = [a, b]
        self.procs = [c.proc for c in self.charons if c.proc is not None]

    def logs(self) -> str:
        return "\n".join(c.log_text()[-1500:] for c in self.charons)

    def forwarding_pids(self) -> list[int]:
        """charon on each router: libipsec's ESP runs in its threads (starter only watches)."""
        return [pid for c in self.charons if (pid := c.charon_pid()) is not None]

    def down(self) -> None:
        for c in self.charons:
            c.stop()
        self.charons.clear()
        super().down()


class WireguardSetup(TunnelSetup):
    key = "wireguard"
    label = "wireguard-go"
    note = ("userspace WireGuard in Go: ChaCha20-Poly1305 in UDP 51820, on as many threads as "
            "there are cores (encapsulation and cipher differ; TUN MTU 1420, its default)")
    dev = "wg0"

    def check(self) -> None:
        wireguard.require()

    def start(self) -> None:
        keys = {side: wireguard.keypair() for side in "ab"}
        sides = (
            ("a", "b", self.line.router_a, netns.ROUTER_B_WAN, TUNNEL_ADDRESS_A, TUNNEL_ADDRESS_B,
             netns.LAN_B),
            ("b", "a", self.line.router_b, netns.ROUTER_A_WAN, TUNNEL_ADDRESS_B, TUNNEL_ADDRESS_A,
             netns.LAN_A),
        )
        for side, other, ns, remote, address, peer, lan in sides:
            daemon = wireguard.WireguardGo(ns, self.dev, self.workdir)
            daemon.start()
            self.procs.append(daemon.proc)
            daemon.configure(keys[side][0], keys[other][1], remote, [lan, f"{peer}/32"])
            netns.ip("addr", "add", address, "peer", peer, "dev", self.dev, netns=ns)
            netns.ip("link", "set", self.dev, "up", netns=ns)
            netns.ip("route", "add", lan, "dev", self.dev, netns=ns)


@dataclass(frozen=True)
class GrePeer:
    """One `gre` block of a router's racoon.conf and the IKE peer at its far end."""

    dev: str  # the TUN device
    remote: str  # the peer's outer address
    address: str  # this end's tunnel address
    peer: str  # the far end's tunnel address


# racoon.conf for one router, shaped like the article's (main mode, AES/SHA1, DH 2, PFS 2): the
# head, then a gre and a remote block per peer, then the sainfo.
_RACOON_HEAD = """\
path pre_shared_key "{dir}/psk-{side}.txt";
path pidfile "{dir}/racoon-{side}.pid";
setkey "{dir}/setkey-{side}.conf";
listen {{
    isakmp {local} [500];
{natt}    adminsock "{dir}/admin-{side}.sock";
}}
"""

_RACOON_GRE = """\
gre "{dev}" {{
    local {local};
    remote {remote};
    address {address} peer {peer};
}}
"""

_RACOON_REMOTE = """\
remote {remote} {{
    exchange_mode main;
    initial_contact on;
    my_identifier address {local};
    peers_identifier address {remote};
    lifetime time 24 hours;
{options}{proposals}}}
"""

_RACOON_SAINFO = """\
sainfo {ids} {{
    pfs_group 2;
    encryption_algorithm aes;
    authentication_algorithm hmac_sha1;
    lifetime time 86400 seconds;
    compression_algorithm deflate;
}}
"""


def racoon_proposal(dh_group: int) -> str:
    """One racoon `proposal { }` block: AES, SHA-1, pre-shared key, the given DH group."""
    return (
        "    proposal {\n        encryption_algorithm aes;\n        hash_algorithm sha1;\n"
        f"        authentication_method pre_shared_key;\n        dh_group {dh_group};\n    }}\n"
    )


def setkey_text(local: str, remotes: Sequence[str]) -> str:
    """setkey.conf asking for ESP transport mode on GRE between `local` and each remote."""
    lines = ["flush;", "spdflush;"]
    for remote in remotes:
        lines.append(f"spdadd {local}/32[0] {remote}/32[0] gre -P out ipsec "
                     "esp/transport//require;")
        lines.append(f"spdadd {remote}/32[0] {local}/32[0] gre -P in ipsec "
                     "esp/transport//require;")
    return "\n".join(lines) + "\n"


def write_psk(path: Path, peers: Sequence[str]) -> None:
    """psk.txt with PSK for each peer address, readable by its owner only (racoon insists)."""
    path.write_text("".join(f"{peer} {PSK}\n" for peer in peers))
    os.chmod(path, 0o600)


def pyike_command() -> list[str]:
    """How to start the daemon: the console script beside this Python, else the module."""
    script = Path(sys.executable).parent / "pyike"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from pyike.cli import main; sys.exit(main())"]


def write_pyike_files(workdir: Path, side: str, local: str, peers: Sequence[GrePeer]) -> Path:
    """racoon.conf, setkey.conf and psk.txt for one router; returns racoon.conf's path."""
    write_psk(workdir / f"psk-{side}.txt", [p.remote for p in peers])
    (workdir / f"setkey-{side}.conf").write_text(setkey_text(local, [p.remote for p in peers]))
    conf = workdir / f"racoon-{side}.conf"
    conf.write_text(_RACOON_HEAD.format(dir=workdir, side=side, local=local, natt="") + "".join(
        _RACOON_GRE.format(dev=p.dev, local=local, remote=p.remote, address=p.address,
                           peer=p.peer)
        + _RACOON_REMOTE.format(local=local, remote=p.remote, options="",
                                proposals=racoon_proposal(2))
        for p in peers) + _RACOON_SAINFO.format(ids="anonymous"))
    return conf


@dataclass(frozen=True)
class SubnetPair:
    """One router's side of a subnet-to-subnet ESP tunnel-mode link."""

    remote: str  # the peer's outer address
    local_net: str  # the LAN behind this router
    remote_net: str  # the LAN behind the peer


TUNNEL_DEVICE = "ipsec0"


def tunnel_setkey_text(local: str, pair: SubnetPair) -> str:
    """setkey.conf asking for ESP tunnel mode between the LANs, as a subnet-to-subnet racoon
    site writes it."""
    return (
        "flush;\nspdflush;\n"
        f"spdadd {pair.local_net} {pair.remote_net} any -P out ipsec "
        f"esp/tunnel/{local}-{pair.remote}/require;\n"
        f"spdadd {pair.remote_net} {pair.local_net} any -P in ipsec "
        f"esp/tunnel/{pair.remote}-{local}/require;\n"
    )


def write_pyike_tunnel_files(workdir: Path, side: str, local: str, pair: SubnetPair, *,
                             force_udp: bool, mtu: int | None) -> Path:
    """racoon.conf (with pyike's `tunnel_device` statement), setkey.conf and psk.txt for one
    router of a tunnel-mode link; `force_udp` puts ESP in UDP 4500 with `nat_traversal force`
    (RFC 3948), `mtu` sets the tunnel device's MTU (None: pyike's default)."""
    write_psk(workdir / f"psk-{side}.txt", [pair.remote])
    (workdir / f"setkey-{side}.conf").write_text(tunnel_setkey_text(local, pair))
    natt = f"    isakmp_natt {local} [4500];\n" if force_udp else ""
    options = "    nat_traversal force;\n" if force_udp else ""
    device = f'tunnel_device "{TUNNEL_DEVICE}"' + (f" {{ mtu {mtu}; }}\n" if mtu else ";\n")
    conf = workdir / f"racoon-{side}.conf"
    conf.write_text(
        _RACOON_HEAD.format(dir=workdir, side=side, local=local, natt=natt) + device
        + _RACOON_REMOTE.format(local=local, remote=pair.remote, options=options,
                                proposals=racoon_proposal(2))
        + _RACOON_SAINFO.format(ids=f"address {pair.local_net} any address {pair.remote_net} any"))
    return conf


def start_pyike(ns: str, conf: Path, log: Path, check: bool = True) -> subprocess.Popen:
    """Start `pyike -F` on conf in ns; with check, `pyike -t` must accept conf first."""
    if check:
        result = procs.run([*pyike_command(), "-t", "-f", str(conf)], netns=ns, check=False,
                           timeout=30)
        if result.returncode != 0:
            raise SetupError(f"pyike -t rejects {conf.name}: {result.stdout}{result.stderr}")
    return procs.spawn([*pyike_command(), "-F", "-f", str(conf)], netns=ns, log=str(log),
                       env=python_env())


def forwarding_children(daemons: Sequence[subprocess.Popen]) -> list[int]:
    """The forwarding process each live pyike daemon forked (pyike.dataplane), not the IKE
    process itself."""
    return [pid for proc in daemons if proc.poll() is None for pid in procs.descendants(proc.pid)]


class PyikeSetup(TunnelSetup):
    key = "pyike"
    label = "pyike (GRE in ESP transport)"
    note = "AES-128-CBC + HMAC-SHA1-96, userspace ESP and GRE"

    def check(self) -> None:
        import pyike.cli  # noqa: F401

    def forwarding_pids(self) -> list[int]:
        return forwarding_children(self.procs)

    def start(self) -> None:
        sides = (
            ("a", self.line.router_a, netns.ROUTER_A_WAN, netns.ROUTER_B_WAN, TUNNEL_ADDRESS_A,
             TUNNEL_ADDRESS_B, netns.LAN_B),
            ("b", self.line.router_b, netns.ROUTER_B_WAN, netns.ROUTER_A_WAN, TUNNEL_ADDRESS_B,
             TUNNEL_ADDRESS_A, netns.LAN_A),
        )
        for side, ns, local, remote, address, peer, _lan in sides:
            conf = write_pyike_files(self.workdir, side, local,
                                     [GrePeer("tun0", remote, address, peer)])
            self.procs.append(start_pyike(ns, conf, self.workdir / f"pyike-{side}.log"))
        for _side, ns, *_rest, lan in sides:
            # pyike makes the device, then sets its MTU and address, then brings it up: a
            # route through it is refused until it is up ("Device for nexthop is not up")
            if not procs.wait_until(lambda ns=ns: "tun0" in links_up(ns), 15.0, 0.1):
                raise SetupError(f"pyike did not bring tun0 up in {ns}\n{self.logs()}")
            netns.ip("route", "add", lan, "dev", "tun0", netns=ns)


class PyikeTunnelSetup(PyikeSetup):
    key = "pyike-tunnel"
    label = "pyike (ESP tunnel mode)"
    note = "AES-128-CBC + HMAC-SHA1-96, LAN to LAN, no GRE, raw ESP"
    force_udp = False
    mtu: int | None = None  # the tunnel device's; None: pyike's default for raw ESP

    def start(self) -> None:
        sides = (
            ("a", self.line.router_a, netns.ROUTER_A_WAN,
             SubnetPair(netns.ROUTER_B_WAN, netns.LAN_A, netns.LAN_B)),
            ("b", self.line.router_b, netns.ROUTER_B_WAN,
             SubnetPair(netns.ROUTER_A_WAN, netns.LAN_B, netns.LAN_A)),
        )
        for side, ns, local, pair in sides:
            conf = write_pyike_tunnel_files(self.workdir, side, local, pair,
                                            force_udp=self.force_udp, mtu=self.mtu)
            self.procs.append(start_pyike(ns, conf, self.workdir / f"pyike-{side}.log"))
        # pyike routes the far LAN into its tunnel device itself: up() waits for the ping.


class PyikeTunnelUdpSetup(PyikeTunnelSetup):
    key = "pyike-tunnel-udp"
    label = "pyike (ESP tunnel mode in UDP 4500)"
    note = ("pyike-tunnel with nat_traversal force and a tunnel device MTU of 1400: "
            "strongSwan libipsec's encapsulation and MTU, like for like")
    force_udp = True
    mtu = 1400  # kernel-libipsec's TUN default


def links_up(ns: str) -> set[str]:
    """The names of the devices in `ns` that are administratively up (IFF_UP)."""
    out = procs.run(["ip", "-j", "link", "show", "up"], netns=ns, check=False)
    if out.returncode != 0:
        return set()
    return {link["ifname"] for link in json.loads(out.stdout or "[]")
            if "UP" in link.get("flags", ())}


ALL = {cls.key: cls for cls in (PyikeSetup, PyikeTunnelSetup, PyikeTunnelUdpSetup, RelaySetup,
                                StrongswanSetup, WireguardSetup, VethSetup)}
