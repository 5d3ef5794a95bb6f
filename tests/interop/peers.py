"""The kernel-IPsec peers that run in the guest, configured like the seed article's router B:
GRE tunnel tun0 (local B remote A, 10.1.1.2 peer 10.1.1.1), GRE between the outer addresses in
ESP transport mode, PSK, AES-128/SHA1 with MODP1024 in phase 1, PFS in phase 2, DPD on.

With `mode="tunnel"` the same peers (same PSK, addresses and algorithms) protect instead the
two LANs in ESP tunnel mode, subnet to subnet as a racoon site writes it: the guest's LAN
10.0.2.0/24 on a dummy interface (10.0.2.1), pyike's 10.0.1.0/24 behind its `tunnel_device`,
the tunnel's ends being the outer addresses.

With the VM's outer addresses in IPv6 (`use_outer(vm, "ipv6")`) the same files name
2001:db8::1 and 2001:db8::2 instead, and the guest's GRE device is an ip6gre one between them,
IPv4 inside as before.

Each peer class knows how to write its daemon's configuration, start it, make it initiate or
delete, and kill it; the tests only speak of those verbs.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.interop import initramfs
from tests.interop.vm import PeerVm, VmError

INNER_PYIKE, INNER_PEER = "10.1.1.1", "10.1.1.2"
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
MODES = ("transport", "tunnel")  # GRE in ESP transport mode (the seed), or LANs in tunnel mode


@dataclass(frozen=True)
class Lans:
    """Tunnel mode's two LANs, pyike's and the guest's, and one host on each."""

    pyike: str
    peer: str
    host_pyike: str
    host_peer: str


# tunnel mode's LANs in either family (the outer one is vm.OUTER_FAMILIES' business)
LANS = {"ipv4": Lans("10.0.1.0/24", "10.0.2.0/24", "10.0.1.1", "10.0.2.1"),
        "ipv6": Lans("fd00:1::/64", "fd00:2::/64", "fd00:1::1", "fd00:2::1")}
LAN_PYIKE, LAN_PEER = LANS["ipv4"].pyike, LANS["ipv4"].peer
LAN_HOST_PYIKE, LAN_HOST_PEER = LANS["ipv4"].host_pyike, LANS["ipv4"].host_peer
# the guest's dummy LAN device, pyike's TUN device
LAN_DEVICE = "lan0"
TUNNEL_DEVICE = "tun1"
# the seed racoon.conf's `gre "NAME" { ... }` block, which only pyike reads
GRE_BLOCK = re.compile(r'(?ms)^gre "[^"]*" \{.*?^\}')
# the guest's GRE device for each outer family (vm.OUTER_FAMILIES)
GRE_DEVICES = {"ipv4": "tun0", "ipv6": "tun6"}
# IPv4 only, as on pyike's side: no IPv6 chatter inside the tunnel. Devices made later inherit
# "default"; "all" is written once, at boot, before use_outer() may turn eth0's IPv6 on.
_NEW_DEVICES_IPV4_ONLY = "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
_IPV4_ONLY = f"{_NEW_DEVICES_IPV4_ONLY} && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6"


def seed_psk() -> str:
    """The pre-shared key of the seed example (router A's psk.txt names B)."""
    for line in (SEED / "a" / "psk.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.split(None, 1)[1].strip()
    raise ValueError("no key in the seed psk.txt")


def seed_text(side: str, name: str, vm: PeerVm, *, dh_group: int, dpd_delay: int,
              lifetime_s: int, esp_auth: str = "sha1") -> str:
    """One of the seed example's files for router `side` ("a" is pyike, "b" the guest), with
    the VM's addresses and the scenario's DH group, DPD delay, phase 2 lifetime and phase 2
    integrity algorithm (racoon's `hmac_sha1` or `hmac_sha256`)."""
    text = (SEED / side / name).read_text()
    text = text.replace("authentication_algorithm hmac_sha1;",
                        f"authentication_algorithm hmac_{esp_auth};")
    for seed_addr, addr in (("198.18.0.1", vm.host_addr), ("198.18.0.2", vm.guest_addr)):
        # setkey.conf's host prefixes: /32 in IPv4, /128 in IPv6
        text = text.replace(f"{seed_addr}/32", f"{addr}/{addr.max_prefixlen}")
        text = text.replace(seed_addr, str(addr))
    text = re.sub(r"dh_group \d+;", f"dh_group {dh_group};", text)
    text = re.sub(r"pfs_group \d+;", f"pfs_group {dh_group};", text)
    text = re.sub(r"dpd_delay \d+;", f"dpd_delay {dpd_delay};", text)
    # sainfo's lifetime (the phase 2 one) is the one given in seconds in the seed file.
    return re.sub(r"lifetime time \d+ seconds;", f"lifetime time {lifetime_s} seconds;", text)


def configure_gre(vm: PeerVm) -> None:
    """The GRE device of the VM's outer family, up, with the inner point-to-point addresses,
    and the other family's down (both hold the same inner addresses): `ip tunnel add tun0 mode
    gre local B remote A`, or over IPv6 `ip link add tun6 type ip6gre local B remote A` with
    Linux's defaults (so its packets carry a destination options header, the tunnel
    encapsulation limit of RFC 2473 §4.1.1, which ESP in transport mode leaves ahead of it)."""
    links = vm.check("ip -o link show")
    steps = [f"ip link set {dev} down" for family, dev in GRE_DEVICES.items()
             if family != vm.outer and re.search(rf"(?m)^\d+: {dev}@", links)]
    dev = GRE_DEVICES[vm.outer]
    if not re.search(rf"(?m)^\d+: {dev}@", links):
        ends = f"local {vm.guest_addr} remote {vm.host_addr}"
        steps += [_IPV4_ONLY if vm.outer == "ipv4" else _NEW_DEVICES_IPV4_ONLY,
                  f"ip tunnel add {dev} mode gre {ends} ttl 64" if vm.outer == "ipv4"
                  else f"ip link add {dev} type ip6gre {ends} hoplimit 64",
                  f"ip addr add {INNER_PEER} peer {INNER_PYIKE}/32 dev {dev}"]
    steps.append(f"ip link set {dev} up")
    vm.check(" && ".join(steps))


def use_outer(vm: PeerVm, family: str) -> None:
    """The VM's outer addresses in `family` (PeerVm.use_outer), its GRE device with them."""
    vm.use_outer(family)
    configure_gre(vm)


def configure_lan(vm: PeerVm, lans: str = "ipv4") -> None:
    """The guest's LAN for tunnel mode: a dummy interface with 10.0.2.1/24, and a route to
    pyike's LAN out of eth0 from that address (the kernel needs a route before its policy
    lookup; the daemons are told not to add routes), so its traffic meets the tunnel policy.
    With `lans` "ipv6" the same device gets IPv6 and fd00:2::1/64 too, and the route to
    fd00:1::/64 goes to pyike's IPv6 outer address: call it once use_outer(vm, "ipv6") made
    eth0's IPv6 usable (turning that off again takes the route with it)."""
    if LAN_DEVICE not in vm.check("ip -o link show"):
        vm.check(
            f"{_NEW_DEVICES_IPV4_ONLY}"
            f" && ip link add {LAN_DEVICE} type dummy"
            f" && ip addr add {LAN_HOST_PEER}/24 dev {LAN_DEVICE} && ip link set {LAN_DEVICE} up"
            f" && ip route add {LAN_PYIKE} via {vm.host_addr4} dev eth0 src {LAN_HOST_PEER}"
        )
    if lans == "ipv6":
        six = LANS["ipv6"]
        vm.check(
            f"echo 0 > /proc/sys/net/ipv6/conf/{LAN_DEVICE}/disable_ipv6"
            f" && ip -6 addr replace {six.host_peer}/64 dev {LAN_DEVICE} nodad"
            f" && ip -6 route replace {six.pyike} via {vm.host_addr6} dev eth0"
            f" src {six.host_peer}"
        )


def tunnel_setkey(lan: str, far_lan: str, me: str, peer: str) -> str:
    """setkey.conf for ESP tunnel mode between our `lan` and `far_lan`, the tunnel's ends `me`
    and `peer`, as a racoon site writes it: for pyike and for racoon in the guest alike."""
    return ("flush;\nspdflush;\n\n"
            f"spdadd {lan} {far_lan} any -P out ipsec esp/tunnel/{me}-{peer}/require;\n"
            f"spdadd {far_lan} {lan} any -P in ipsec esp/tunnel/{peer}-{me}/require;\n")


def swan_selectors(mode: str, lans: str = "ipv4") -> str:
    """The ipsec.conf lines that say what the connection carries, alike in strongSwan and
    libreswan: GRE between the two ends (transport), or the two LANs of family `lans`
    (tunnel)."""
    if mode == "tunnel":
        lan = LANS[lans]
        return f"leftsubnet={lan.peer}\n    rightsubnet={lan.pyike}\n    type=tunnel"
    return "leftprotoport=gre\n    rightprotoport=gre\n    type=transport"


@dataclass(frozen=True)
class XfrmState:
    src: str
    dst: str
    spi: int
    enc_alg: str
    enc_key: str
    auth_alg: str
    auth_key: str
    auth_bits: int
    mode: str = ""  # "transport" or "tunnel", as `ip xfrm state` prints it


_STATE_HEAD = re.compile(r"^src (\S+) dst (\S+)$")


def xfrm_states(vm: PeerVm) -> list[XfrmState]:
    """The guest kernel's ESP SAs, keys included, from `ip xfrm state`."""
    states: list[XfrmState] = []
    cur: dict = {}

    def flush() -> None:
        if "spi" in cur and "enc_alg" in cur and "auth_alg" in cur:
            states.append(XfrmState(**cur))

    for line in vm.check("ip xfrm state").splitlines():
        line = line.strip()
        head = _STATE_HEAD.match(line)
        if head:
            flush()
            cur = {"src": head.group(1), "dst": head.group(2)}
            continue
        words = line.split()
        if words[:1] == ["proto"] and "spi" in words:
            cur["spi"] = int(words[words.index("spi") + 1], 16)
            if "mode" in words:
                cur["mode"] = words[words.index("mode") + 1]
        elif words[:1] == ["auth-trunc"]:
            cur.update(auth_alg=words[1], auth_key=words[2].removeprefix("0x"),
                       auth_bits=int(words[3]))
        elif words[:1] == ["auth"]:
            cur.update(auth_alg=words[1], auth_key=words[2].removeprefix("0x"), auth_bits=0)
        elif words[:1] == ["enc"]:
            cur.update(enc_alg=words[1], enc_key=words[2].removeprefix("0x"))
    flush()
    return states


class Peer:
    """What every peer offers the scenarios."""

    name = "peer"
    image: initramfs.ImageSpec
    dh_group = 2  # MODP1024 (RFC 2409 §6.2); a peer that refuses it overrides this
    honours_initial_contact = True

    @classmethod
    def image_spec(cls) -> initramfs.ImageSpec:
        return cls.image

    def __init__(self, vm: PeerVm) -> None:
        self.vm = vm

    # The scenarios pass these settings; each peer renders them in its own grammar.
    def configure(self, *, dpd_delay: int = 5, lifetime_s: int = 3600,
                  esp_auth: str = "sha1", mode: str = "transport", lans: str = "ipv4") -> None:
        """Write the daemon's files; `esp_auth` is phase 2's integrity, "sha1" or "sha256"
        (each peer in its default ICV length for it); `mode` one of MODES (tunnel mode wants
        configure_lan() in the guest), `lans` the family of tunnel mode's LANs (LANS). Like
        the seed article's setkey.conf, the policies are in the kernel from the start (trap
        policies), so traffic from either side needs SAs: the guest never sends in clear, and
        its own traffic makes its daemon negotiate."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL the daemon and drop every SA it installed, as a crashed peer would lose them."""
        raise NotImplementedError

    def delete_sas(self) -> None:
        """Let the daemon delete its SAs, telling pyike."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def status(self) -> str:
        raise NotImplementedError

    def log(self) -> str:
        raise NotImplementedError

    def flush_kernel(self) -> None:
        self.vm.run("ip xfrm state flush")

    def reset(self) -> None:
        """No daemon, no SA, no policy: the state a scenario starts from."""
        self.kill()
        self.vm.run("ip xfrm policy flush; ip xfrm state flush")

    def wait_ready(self, probe: str, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            rc, out = self.vm.run(probe, timeout=10)
            if rc == 0 and re.search(pattern, out):
                return
            time.sleep(0.5)
        raise VmError(f"{self.name} did not become ready: {out}\n{self.log()}")


class StrongswanPeer(Peer):
    name = "strongswan"
    image = initramfs.STRONGSWAN
    conn = "pyike"

    def configure(self, *, dpd_delay: int = 5, lifetime_s: int = 3600,
                  esp_auth: str = "sha1", mode: str = "transport", lans: str = "ipv4") -> None:
        a, b = self.vm.host_addr, self.vm.guest_addr
        # margin/fuzz kept small so that pyike, not the peer, is the one to rekey when the
        # scenario gives pyike the shorter lifetime.
        # uniqueids=no: a new IKE_SA from the same peer replaces the old one only when it
        # carries INITIAL-CONTACT (with "yes", charon adopts the old CHILD_SAs as a reauth).
        self.vm.write_file("/etc/ipsec.conf", f"""config setup
    uniqueids=no
conn {self.conn}
    keyexchange=ikev1
    left={b}
    right={a}
    {swan_selectors(mode, lans)}
    authby=secret
    ike=aes128-sha1-modp1024!
    esp=aes128-{esp_auth}-modp1024!
    ikelifetime=8h
    lifetime={lifetime_s}s
    rekeymargin={max(5, lifetime_s // 6)}s
    rekeyfuzz=0%
    dpddelay={dpd_delay}s
    dpdtimeout={3 * dpd_delay}s
    dpdaction=clear
    auto=route
""")
        self.vm.write_file("/etc/ipsec.secrets", f'{b} {a} : PSK "{seed_psk()}"\n', 0o600)
        self.vm.write_file("/etc/strongswan.d/zz-interop.conf", """charon {
    install_routes = no
    filelog {
        charon {
            path = /var/log/charon.log
            default = 1
            ike = 2
            knl = 1
        }
    }
}
""")

    def start(self) -> None:
        self.vm.run("rm -f /var/log/charon.log")
        self.vm.check("ipsec start", timeout=30)
        self.wait_ready("ipsec statusall", r"Connections:\s*\n\s*" + self.conn)

    def kill(self) -> None:
        self.vm.run("killall -9 starter charon; rm -f /run/charon.* /run/starter.*; sleep 0.2")
        self.flush_kernel()

    def delete_sas(self) -> None:
        self.vm.check(f"ipsec down {self.conn}", timeout=20)

    def stop(self) -> None:
        self.vm.run("ipsec stop", timeout=20)

    def status(self) -> str:
        return self.vm.run("ipsec statusall", timeout=10)[1]

    def log(self) -> str:
        return self.vm.run("tail -n 80 /var/log/charon.log", timeout=10)[1]


class LibreswanPeer(Peer):
    """libreswan 4.10 (pluto). Debian's build refuses MODP1024 ("IKE DH algorithm 'modp1024' is
    not supported"), so this peer and pyike use MODP2048 (RFC 3526 §3) instead. pluto ignores an
    IKEv1 INITIAL-CONTACT wherever it comes ("ignoring informational payload
    IPSEC_INITIAL_CONTACT"): after pyike restarts it keeps the old pair until its lifetime ends,
    while its traffic moves to the new one."""

    name = "libreswan"
    image = initramfs.LIBRESWAN
    conn = "pyike"
    dh_group = 14
    honours_initial_contact = False

    def configure(self, *, dpd_delay: int = 5, lifetime_s: int = 3600,
                  esp_auth: str = "sha1", mode: str = "transport", lans: str = "ipv4") -> None:
        a, b = self.vm.host_addr, self.vm.guest_addr
        self.vm.write_file("/etc/ipsec.conf", f"""config setup
    ikev1-policy=accept
    logfile=/var/log/pluto.log
    plutodebug=none
    uniqueids=yes
conn {self.conn}
    ikev2=no
    left={b}
    right={a}
    {swan_selectors(mode, lans)}
    authby=secret
    ike=aes128-sha1;modp2048
    phase2alg=aes128-{esp_auth};modp2048
    pfs=yes
    ikelifetime=8h
    salifetime={lifetime_s}s
    rekeymargin={max(5, lifetime_s // 6)}s
    rekeyfuzz=0%
    dpddelay={dpd_delay}
    dpdtimeout={3 * dpd_delay}
    dpdaction=clear
    auto=route
""")
        self.vm.write_file("/etc/ipsec.secrets", f'{b} {a} : PSK "{seed_psk()}"\n', 0o600)

    def start(self) -> None:
        self.vm.check("mkdir -p /run/pluto && rm -f /run/pluto/pluto.ctl /run/pluto/pluto.pid"
                      " /var/log/pluto.log"
                      " && ipsec pluto --config /etc/ipsec.conf", timeout=30)
        self.wait_ready("ipsec whack --status", r"listening for IKE|interface eth0")
        self.vm.check(f"ipsec auto --add {self.conn} && ipsec auto --route {self.conn}",
                      timeout=20)
        self.wait_ready("ipsec whack --status", rf'"{self.conn}":')

    def kill(self) -> None:
        self.vm.run("killall -9 pluto; rm -f /run/pluto/pluto.ctl /run/pluto/pluto.pid")
        self.flush_kernel()

    def delete_sas(self) -> None:
        self.vm.check(f"ipsec auto --down {self.conn}", timeout=20)

    def stop(self) -> None:
        self.vm.run("ipsec whack --shutdown", timeout=20)

    def status(self) -> str:
        return self.vm.run("ipsec whack --trafficstatus; ipsec whack --status", timeout=10)[1]

    def log(self) -> str:
        return self.vm.run("tail -n 80 /var/log/pluto.log", timeout=10)[1]


RACOON_BINARIES = ("sbin/racoon", "sbin/setkey", "bin/racoonctl")


RACOON_DEFAULT_PREFIX = "/opt/racoon"  # where a site's own build of ipsec-tools usually goes


def racoon_prefix() -> Path | None:
    """The install prefix named by PYIKE_RACOON_PREFIX, else /opt/racoon, when it holds racoon,
    setkey and racoonctl."""
    p = Path(os.environ.get("PYIKE_RACOON_PREFIX") or RACOON_DEFAULT_PREFIX)
    return p if all((p / f).exists() for f in RACOON_BINARIES) else None


class RacoonPeer(Peer):
    """racoon from ipsec-tools (not packaged by Debian: only when PYIKE_RACOON_PREFIX or
    /opt/racoon holds an install), configured with the seed article's own setkey.conf,
    racoon.conf and psk.txt for router B, less the two statements that only pyike has (`setkey`
    and `gre`); in tunnel mode the setkey.conf is tunnel_setkey()'s (sainfo anonymous serves
    both)."""

    name = "racoon"
    sock = "/run/racoon.sock"

    @classmethod
    def image_spec(cls) -> initramfs.ImageSpec:
        prefix = racoon_prefix()
        if prefix is None:
            raise VmError("no racoon install at PYIKE_RACOON_PREFIX or /opt/racoon")
        return initramfs.ImageSpec(
            name="racoon",
            host_files=tuple((str(prefix / f), f"usr/{f}") for f in RACOON_BINARIES),
            empty_dirs=("etc/racoon", "var/racoon"),
        )

    def configure(self, *, dpd_delay: int = 5, lifetime_s: int = 3600, esp_auth: str = "sha1",
                  mode: str = "transport", edit: Callable[[str], str] | None = None,
                  lans: str = "ipv4") -> None:
        def text(name: str) -> str:
            return seed_text("b", name, self.vm, dh_group=self.dh_group, dpd_delay=dpd_delay,
                             lifetime_s=lifetime_s, esp_auth=esp_auth)

        conf = text("racoon.conf")
        if edit is not None:
            conf = edit(conf)
        conf = re.sub(r"(?m)^setkey .*$", "", conf)
        conf = GRE_BLOCK.sub("", conf)
        conf = conf.replace('"psk.txt"', '"/etc/racoon/psk.txt"')
        conf = conf.replace("/run/pyike/pyike.sock", self.sock)
        conf = conf.replace("/run/pyike/pyike.pid", "/run/racoon.pid")
        self.vm.write_file("/etc/racoon/racoon.conf", conf)
        a, b = str(self.vm.host_addr), str(self.vm.guest_addr)
        setkey = tunnel_setkey(LANS[lans].peer, LANS[lans].pyike, b, a) if mode == "tunnel" \
            else text("setkey.conf")
        self.vm.write_file("/etc/racoon/setkey.conf", setkey)
        self.vm.write_file("/etc/racoon/psk.txt", text("psk.txt"), 0o600)

    def start(self) -> None:
        self.vm.check("setkey -f /etc/racoon/setkey.conf && rm -f /var/log/racoon.log"
                      " && racoon -f /etc/racoon/racoon.conf -l /var/log/racoon.log", timeout=20)
        self.wait_ready(f"racoonctl -s {self.sock} show-sa isakmp", r"Destination")

    def kill(self) -> None:
        self.vm.run(f"killall -9 racoon; rm -f {self.sock} /run/racoon.pid; setkey -F")

    def delete_sas(self, kind: str = "isakmp") -> None:
        """`racoonctl delete-sa isakmp|esp`: racoon sends the ISAKMP SA's delete and purges
        its IPsec SAs with pyike without a delete for them (admin.c, purge_remote())."""
        a, b = self.vm.host_addr, self.vm.guest_addr
        family = "inet6" if a.version == 6 else "inet"
        self.vm.check(f"racoonctl -s {self.sock} delete-sa {kind} {family} {b} {a}", timeout=20)

    def ctl(self, *args: str) -> str:
        return self.vm.check(f"racoonctl -s {self.sock} " + " ".join(args), timeout=20)

    def stop(self) -> None:
        self.vm.run("killall racoon", timeout=10)

    def status(self) -> str:
        return self.vm.run(f"racoonctl -s {self.sock} show-sa isakmp; setkey -D; setkey -DP",
                           timeout=10)[1]

    def log(self) -> str:
        return self.vm.run("tail -n 80 /var/log/racoon.log", timeout=10)[1]
