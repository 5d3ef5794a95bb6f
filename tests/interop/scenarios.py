"""The interop scenarios of pyike against one kernel-IPsec peer in the guest.

Each function takes the `env` fixture (conftest.py) and is bound to a test name by the peer's
test module (test_strongswan.py, test_libreswan.py, test_racoon.py), so every peer runs the
same checks on the VM its module booted.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLQuery2,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Packet
from scapy.utils import rdpcap

import gre
from esp.sa import EspSA
from tests.interop import capture
from tests.interop.peers import (
    INNER_PEER,
    INNER_PYIKE,
    LANS,
    TUNNEL_DEVICE,
    Peer,
    XfrmState,
    configure_lan,
    use_outer,
    xfrm_states,
)
from tests.interop.pyike_side import Pyike
from tests.interop.vm import PeerVm

T = TypeVar("T")

# pyike's names (esp/) for what the Linux kernel calls cbc(aes) and hmac(sha1).
KERNEL_ALG = {"aes-cbc": "cbc(aes)", "hmac-sha1": "hmac(sha1)", "hmac-sha256": "hmac(sha256)"}
IKE_PORTS = (500, 4500)
IPPROTO_ESP = 50
IPPROTO_IPIP = 4  # what ESP carries in tunnel mode, for IPv4 (RFC 4303 §2.6)
IPPROTO_IPV6 = 41  # ... and for IPv6
IPPROTO_GRE = 47  # ... and in the seed's transport mode (RFC 2784)


@dataclass
class Env:
    vm: PeerVm
    peer: Peer
    pyike: Pyike

    def start(self, *, dpd_delay: int = 5, lifetime_s: int = 3600,
              peer_lifetime_s: int | None = None, esp_auth: str = "sha1",
              mode: str = "transport", edit: Callable[[str], str] | None = None,
              outer: str = "ipv4", lans: str = "ipv4") -> None:
        """Configure and start the peer's daemon, then pyike; neither has SAs yet. `edit`
        rewrites both racoon.conf files (a racoon peer's and pyike's: one grammar). In tunnel
        `mode` both LANs are set up too: the guest's lan0, pyike's 10.0.1.1 and its route, or
        with `lans` "ipv6" fd00:2::1 and fd00:1::1 (peers.LANS). `outer` is the family of the
        outer addresses (vm.OUTER_FAMILIES), the tap's and eth0's pair; the env fixture puts
        IPv4 back afterwards."""
        more = {"edit": edit} if edit else {}
        use_outer(self.vm, outer)
        if mode == "tunnel":
            configure_lan(self.vm, lans)
            more["lans"] = lans
        self.peer.configure(dpd_delay=dpd_delay, lifetime_s=peer_lifetime_s or lifetime_s,
                            esp_auth=esp_auth, mode=mode, **more)
        self.peer.start()
        self.pyike.configure(dh_group=self.peer.dh_group, dpd_delay=dpd_delay,
                             lifetime_s=lifetime_s, esp_auth=esp_auth, mode=mode, **more)
        self.pyike.start()
        self.pyike.wait_tun(name=TUNNEL_DEVICE if mode == "tunnel" else "tun0")
        if mode == "tunnel":
            self.pyike.add_lan(lans)

    def establish_from_pyike(self, timeout: int = 20) -> None:
        """Traffic into pyike's tun0 triggers the negotiation; returns once pings get through."""
        wait_for(lambda: received(self.pyike.ping(INNER_PEER, count=3, deadline=4)) > 0,
                 timeout, "no ping reply through the tunnel (pyike initiating)", self)

    def establish_from_peer(self, timeout: int = 25, what: str = "") -> None:
        """The guest's ping hits its kernel policy, whose acquire makes the peer's daemon
        negotiate; returns once pings get through."""
        wait_for(lambda: self.guest_ping(count=3, deadline=4) > 0, timeout,
                 f"no ping reply through the tunnel ({self.peer.name} initiating{what})", self)

    def guest_ping(self, count: int = 5, deadline: int = 10, dst: str = INNER_PYIKE,
                   source: str | None = None) -> int:
        frm = f"-I {source} " if source else ""
        _rc, out = self.vm.run(f"ping -c {count} -W 1 -w {deadline} {frm}{dst}",
                               timeout=deadline + 5)
        return received(out)

    def diagnostics(self) -> str:
        parts = [f"--- pyike log ---\n{self.pyike.log_tail()}"]
        for title, fn in (("peer status", self.peer.status), ("peer log", self.peer.log)):
            try:
                parts.append(f"--- {title} ---\n{fn()}")
            except Exception as exc:  # the guest may be the thing that broke
                parts.append(f"--- {title} --- unavailable: {exc}")
        return "\n".join(parts)


def received(ping_output: str | subprocess.CompletedProcess) -> int:
    """Replies counted by iputils' or busybox's ping summary line."""
    text = ping_output if isinstance(ping_output, str) else ping_output.stdout
    m = re.search(r"(\d+) (?:packets )?received", text)
    return int(m.group(1)) if m else 0


def wait_for(predicate: Callable[[], T], timeout: float, what: str, env: Env | None = None,
             interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s" +
                                 (f"\n{env.diagnostics()}" if env else ""))
        time.sleep(interval)


def assert_same_sas(env: Env, *, stale_in_guest: set[int] = frozenset()) -> list[dict]:
    """The guest kernel holds exactly the ESP SAs pyike reports: SPIs, algorithms, keys
    (besides `stale_in_guest`, SPIs the peer is known to keep from before)."""
    sad = env.pyike.sad()
    kernel = {(s.src, s.dst, s.spi): s for s in xfrm_states(env.vm)}
    # Usually one pair. A kernel peer may add a second: the packet pyike sends right after
    # quick mode can reach the peer between its inbound and outbound SA installs, and the trap
    # policy's acquire makes the peer negotiate again. Both pairs must then match.
    directions = [sa["direction"] for sa in sad]
    assert sad and directions.count("in") == directions.count("out"), f"pyike's SAD: {sad}"
    for sa in sad:
        k: XfrmState | None = kernel.get((sa["src"], sa["dst"], sa["spi"]))
        assert k is not None, f"SPI {sa['spi']:#x} {sa['src']}->{sa['dst']} not in {kernel}"
        assert k.enc_alg == KERNEL_ALG[sa["enc"]["alg"]] and k.enc_key == sa["enc"]["key"]
        assert k.auth_alg == KERNEL_ALG[sa["auth"]["alg"]] and k.auth_key == sa["auth"]["key"]
        assert k.auth_bits == sa["auth"]["icv_bits"], (k, sa["auth"]["icv_bits"])
        if sa["auth"]["alg"] == "hmac-sha1":
            assert k.auth_bits == 96  # RFC 2404: HMAC-SHA1-96
    current = {key for key in kernel if key[2] not in stale_in_guest}
    assert current == {(sa["src"], sa["dst"], sa["spi"]) for sa in sad}
    return sad


def spis(sad: list[dict]) -> set[int]:
    return {sa["spi"] for sa in sad}


# --- 1, 2: establishment from either side ----------------------------------------------------

def pyike_initiates(env: Env) -> None:
    env.start()
    assert env.pyike.sad() == [] and env.pyike.isakmp() == []
    env.establish_from_pyike()
    assert [p1["side"] for p1 in env.pyike.isakmp()] == ["initiator"]
    assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
    assert env.guest_ping(count=5) == 5
    assert_same_sas(env)


def peer_initiates(env: Env) -> None:
    env.start()
    assert env.pyike.sad() == [] and env.pyike.isakmp() == []
    env.establish_from_peer()
    assert env.guest_ping(count=5) == 5
    assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
    assert [p1["side"] for p1 in env.pyike.isakmp()] == ["responder"]
    assert_same_sas(env)


# --- 3: dead peer detection (RFC 3706) both ways -----------------------------------------------

def dpd_both_ways(env: Env) -> None:
    env.start(dpd_delay=5)
    env.establish_from_pyike()
    assert_same_sas(env)
    env.peer.kill()
    # seed: dpd_retry 2, dpd_maxfail 2 -> dead after about delay + retry * maxfail seconds.
    wait_for(lambda: env.pyike.sad() == [] and env.pyike.isakmp() == [], 45,
             "pyike did not declare the killed peer dead and purge its SAs", env)

    env.peer.start()
    env.establish_from_pyike(timeout=30)
    assert_same_sas(env)
    env.pyike.stop(signal.SIGKILL)
    wait_for(lambda: xfrm_states(env.vm) == [], 60,
             "the peer did not declare the killed pyike dead and drop its SAs", env)


# --- 4: INITIAL-CONTACT after a pyike restart ------------------------------------------------

def initial_contact_after_restart(env: Env) -> None:
    env.start()
    env.establish_from_pyike()
    old = spis(assert_same_sas(env))
    env.pyike.stop(signal.SIGKILL)
    assert _spis_in_guest(env) == old, "the peer should keep its stale SAs while pyike is gone"
    env.pyike.start()
    env.pyike.wait_tun()
    started = time.monotonic()
    env.establish_from_pyike(timeout=30)
    assert time.monotonic() - started < 30
    if env.peer.honours_initial_contact:
        # INITIAL-CONTACT (RFC 2407 §4.6.3.3) tells the peer to forget every older SA with us.
        wait_for(lambda: not (_spis_in_guest(env) & old), 10,
                 "the peer kept SAs from before pyike's restart", env)
        new = spis(assert_same_sas(env))
    else:
        new = spis(assert_same_sas(env, stale_in_guest=old))
    assert not new & old
    # The guest's own traffic takes the new SAs, whatever it kept.
    assert env.guest_ping(count=3) == 3


def _spis_in_guest(env: Env) -> set[int]:
    return {s.spi for s in xfrm_states(env.vm)}


# --- 5: deletes, both ways -------------------------------------------------------------------

def deletes_both_ways(env: Env) -> None:
    env.start()
    env.establish_from_pyike()
    first = spis(assert_same_sas(env))
    out = env.pyike.ctl("delete-sa", "esp", str(env.vm.host_addr), str(env.vm.guest_addr))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: not (_spis_in_guest(env) & first), 15,
             "pyike's delete did not remove the peer's SAs", env)
    assert not (spis(env.pyike.sad()) & first)

    env.establish_from_pyike()
    second = spis(assert_same_sas(env))
    env.peer.delete_sas()
    wait_for(lambda: not (spis(env.pyike.sad()) & second), 15,
             "the peer's delete did not remove pyike's SAs", env)


# --- 6: rekey under load ----------------------------------------------------------------------

REKEY_LIFETIME_S = 30
REKEY_PING_COUNT = 700  # 70 s at 10/s: more than two phase-2 lifetimes


def rekey_under_ping(env: Env, edit: Callable[[str], str] | None = None) -> None:
    env.start(lifetime_s=REKEY_LIFETIME_S, peer_lifetime_s=2 * REKEY_LIFETIME_S, edit=edit)
    env.establish_from_pyike()
    first = spis(assert_same_sas(env))
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        r = env.pyike.ping(INNER_PEER, count=REKEY_PING_COUNT, interval=0.1,
                           deadline=REKEY_PING_COUNT // 10 + 20)
    got = received(r)
    assert got >= REKEY_PING_COUNT * 0.99, f"{REKEY_PING_COUNT - got} pings lost\n{r.stdout}"
    assert not (spis(env.pyike.sad()) & first), "no rekey happened"
    packets = rdpcap(str(cap.path))
    assert_only_ike_and_esp(packets, str(env.vm.host_addr))
    outbound_spis = {p[ESP].spi for p in packets
                     if p.haslayer(ESP) and p[IP].src == str(env.vm.host_addr)}
    assert len(outbound_spis) >= 2, f"ESP from pyike used SPIs {outbound_spis}"


# IPv6's own link traffic, which both kernels send on their own: neighbour and router discovery
# (RFC 4861) and MLD (RFC 3810)
_LINK_CHATTER = (ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6ND_RS, ICMPv6ND_RA, ICMPv6MLReport,
                 ICMPv6MLReport2, ICMPv6MLQuery, ICMPv6MLQuery2, ICMPv6MLDone)


def outer_header(p: Packet) -> IP | IPv6 | None:
    """The outer IPv4 or IPv6 header of a frame captured on the tap, None for IPv6's link
    traffic (_LINK_CHATTER) and for anything not IP."""
    net = p[Ether].payload
    if not isinstance(net, (IP, IPv6)) or any(net.haslayer(c) for c in _LINK_CHATTER):
        return None
    return net


# the IPv6 extension headers that may come before ESP (RFC 8200 §4.1, RFC 4303 §3.1.1)
_IPV6_EXTENSIONS = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt)


def next_header(h: IP | IPv6) -> int:
    """The protocol after the IP header, past IPv6's extension headers: a Linux ip6gre device
    puts a destination options header (its tunnel encapsulation limit, RFC 2473 §4.1.1) ahead
    of ESP in transport mode."""
    if isinstance(h, IP):
        return h.proto
    while isinstance(h.payload, _IPV6_EXTENSIONS):
        h = h.payload
    return h.nh


def assert_only_ike_and_esp(packets: list, pyike_addr: str) -> None:
    """Nothing but ISAKMP (UDP 500/4500) and ESP between the outer addresses, all of them in
    pyike_addr's family: no GRE, no inner traffic in clear. Strict for pyike. A kernel peer
    gets one allowance, seen with libreswan: while its daemon swaps the trap policy for the
    SA's policy, a reply can leave in clear before its first ESP packet; anything in clear
    after that fails too, and the peer must have sent ESP."""
    family = IPv6 if ipaddress.ip_address(pyike_addr).version == 6 else IP
    outer = [h for h in map(outer_header, packets) if h is not None]
    assert outer, "the capture saw nothing"
    peer_sent_esp = False
    for h in outer:
        assert isinstance(h, family), f"outside {family.__name__}: {h.summary()}"
        is_esp = next_header(h) == IPPROTO_ESP
        ok = is_esp or (
            h.haslayer(UDP) and (h[UDP].sport in IKE_PORTS or h[UDP].dport in IKE_PORTS)
        )
        if h.src == pyike_addr:
            assert ok, f"pyike sent in clear: {h.summary()}"
        else:
            assert ok or not peer_sent_esp, f"the peer sent in clear: {h.summary()}"
            peer_sent_esp = peer_sent_esp or is_esp
    assert peer_sent_esp, "the peer sent no ESP"


def open_esp(env: Env, packets: list, sas: dict[int, dict]) -> list[tuple[str, int, bytes]]:
    """The ESP packets of `sas` (SPI -> pyike's SA as pyikectl reports it) between the outer
    addresses, opened by independent implementations: pyike's by scapy, the peer's by pyike's
    own esp/. Each as (side, next header, payload), side "pyike" or "peer"; in tunnel mode the
    payload is the whole inner packet."""
    pyike_addr, peer_addr = str(env.vm.host_addr), str(env.vm.guest_addr)
    opened: list[tuple[str, int, bytes]] = []
    for p in packets:
        h = outer_header(p)
        if h is None or not h.haslayer(ESP) or h[ESP].spi not in sas:
            continue
        sa, ends = sas[h[ESP].spi], (h.src, h.dst)
        if ends == (pyike_addr, peer_addr) and sa["direction"] == "out":
            if sa["mode"] == "tunnel":
                inner = scapy_sa(sa, type(h)(src=pyike_addr, dst=peer_addr)).decrypt(h.copy())
                nh = IPPROTO_IPIP if isinstance(inner, IP) else IPPROTO_IPV6
                opened.append(("pyike", nh, bytes(inner)))
            else:
                clear = scapy_sa(sa).decrypt(h.copy())  # decrypt() eats what it is given
                opened.append(("pyike", next_header(clear), bytes(clear.payload)))
        elif ends == (peer_addr, pyike_addr) and sa["direction"] == "in":
            result = inbound_esp_sa(sa).open(bytes(h[ESP]), 0.0)
            assert isinstance(result, tuple), f"pyike could not open the peer's ESP: {result}"
            opened.append(("peer", *result))
    return opened


def assert_esp_carries_gre(env: Env, packets: list, sas: dict[int, dict]) -> dict[str, int]:
    """Every ESP packet of `sas` (open_esp) holds GRE (RFC 2784) with IPv4 between the inner
    addresses, parsed by scapy for pyike's and by pyike's gre/ for the peer's; both ways
    carried echo requests and replies. The packets opened, per side."""
    inner_hosts = {INNER_PYIKE, INNER_PEER}
    kinds: dict[str, set[int]] = {"pyike": set(), "peer": set()}
    count = {"pyike": 0, "peer": 0}
    for side, nh, payload in open_esp(env, packets, sas):
        assert nh == IPPROTO_GRE, (side, nh)
        if side == "pyike":
            g = GRE(payload)
            assert g.proto == gre.ETH_P_IP, g.summary()
            inner = g[IP]
        else:
            decap = gre.decap(payload)
            assert isinstance(decap, gre.GrePacket) and decap.protocol == gre.ETH_P_IP, decap
            inner = IP(decap.payload)
        assert {inner.src, inner.dst} == inner_hosts, inner.summary()
        kinds[side].add(inner[ICMP].type)
        count[side] += 1
    assert kinds == {"pyike": {0, 8}, "peer": {0, 8}}, kinds
    return count


# --- 7: the wire, opened by independent implementations ---------------------------------------

def capture_opens_both_ways(env: Env) -> None:
    env.start()
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        env.establish_from_pyike()
        assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
        assert env.guest_ping(count=5) == 5
    sad = assert_same_sas(env)
    packets = rdpcap(str(cap.path))
    assert_only_ike_and_esp(packets, str(env.vm.host_addr))
    count = assert_esp_carries_gre(env, packets, {sa["spi"]: sa for sa in sad})
    assert count["pyike"] >= 10 and count["peer"] >= 10, count


def scapy_sa(sa: dict, tunnel_header: IP | IPv6 | None = None) -> SecurityAssociation:
    """scapy's SA for one of pyike's AES-CBC/HMAC-SHA1-96 SAs as pyikectl reports it (an
    independent implementation); `tunnel_header` for tunnel mode."""
    return SecurityAssociation(
        ESP, spi=sa["spi"], crypt_algo="AES-CBC", crypt_key=bytes.fromhex(sa["enc"]["key"]),
        auth_algo="HMAC-SHA1-96", auth_key=bytes.fromhex(sa["auth"]["key"]),
        tunnel_header=tunnel_header)


def inbound_esp_sa(sa: dict) -> EspSA:
    """pyike's own esp/ SA, to open the peer's ESP of one of pyike's inbound SAs."""
    return EspSA(sa["spi"], sa["src"], sa["dst"], sa["enc"]["alg"],
                 bytes.fromhex(sa["enc"]["key"]), sa["auth"]["alg"],
                 bytes.fromhex(sa["auth"]["key"]), direction="in")


# --- 8: HMAC-SHA-256 in phase 2, the peer's default ICV length --------------------------------

# What each peer puts on the wire for a negotiated HMAC-SHA-256 by default: RFC 4868's 128
# bits, but 96 for a Linux racoon (its PF_KEY SAs predate RFC 4868).
SHA256_ICV_BITS = {"racoon": 96, "strongswan": 128, "libreswan": 128}


def hmac_sha256_both_ways(env: Env) -> None:
    """pyike sends both ICV lengths until the peer's first packet and then the peer's: the
    tunnel carries traffic started from either side, whatever length the peer uses."""
    bits = SHA256_ICV_BITS[env.peer.name]
    env.start(esp_auth="sha256")
    env.establish_from_pyike()
    assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
    assert env.guest_ping(count=5) == 5
    sad = assert_same_sas(env)
    assert {sa["auth"]["alg"] for sa in sad} == {"hmac-sha256"}
    assert {sa["auth"]["icv_bits"] for sa in sad} == {bits}
    assert {s.auth_bits for s in xfrm_states(env.vm)} == {bits}
    # and from the peer's side, on a fresh pair: pyike deletes its pairs (the peer told),
    # then the guest's traffic makes the peer negotiate the next one
    out = env.pyike.ctl("flush-sa", "ipsec")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: not xfrm_states(env.vm) and not env.pyike.sad(), 15,
             "pyike's flush-sa ipsec did not remove the SAs on both sides", env)
    env.establish_from_peer(what=", hmac-sha256")
    assert {sa["auth"]["icv_bits"] for sa in assert_same_sas(env)} == {bits}


# --- 9: ESP tunnel mode, subnet to subnet -----------------------------------------------------

def tunnel_mode_subnets(env: Env, outer: str = "ipv4", lans: str = "ipv4") -> None:
    """ESP tunnel mode subnet to subnet. The LANs 10.0.1.0/24 (pyike's: 10.0.1.1 behind its
    tunnel_device) and 10.0.2.0/24 (the guest's dummy lan0: 10.0.2.1), or in `lans` "ipv6"
    fd00:1::/64 and fd00:2::/64 with fd00:1::1 and fd00:2::1 (peers.LANS), joined in ESP
    tunnel mode between the outer addresses (198.18.0.1 and 198.18.0.2, or in `outer` "ipv6"
    2001:db8::1 and 2001:db8::2), as a racoon site's `spdadd 10.0.1.0/24 10.0.2.0/24 any -P
    out ipsec esp/tunnel/198.18.0.1-198.18.0.2/require;` has it. pyike initiates; then, after
    pyike's flush-sa, the peer does. Each time pings pass both ways between the LAN hosts and
    the guest's SAs are in tunnel mode with pyike's keys. The tap carries nothing but IKE and
    ESP, and the ESP of either side opens (scapy for pyike's, pyike's esp/ for the peer's) to
    the LANs' family between the two LANs."""
    env.start(mode="tunnel", outer=outer, lans=lans)
    assert env.pyike.sad() == [] and env.pyike.isakmp() == []
    seen: dict[int, dict] = {}  # SPI -> pyike's SA, over both pairs
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        wait_for(lambda: received(ping_peer_lan(env, count=3, deadline=4, lans=lans)) > 0, 20,
                 "no ping reply between the LANs (pyike initiating)", env)
        assert [p1["side"] for p1 in env.pyike.isakmp()] == ["initiator"]
        assert received(ping_peer_lan(env, lans=lans)) == 5
        assert ping_pyike_lan(env, lans=lans) == 5
        first = assert_tunnel_sas(env)
        seen.update((sa["spi"], sa) for sa in first)

        stale = _flush_pyikes_pairs(env, first)
        wait_for(lambda: ping_pyike_lan(env, count=3, deadline=4, lans=lans) > 0, 25,
                 f"no ping reply between the LANs ({env.peer.name} initiating)", env)
        assert ping_pyike_lan(env, lans=lans) == 5
        assert received(ping_peer_lan(env, lans=lans)) == 5
        seen.update((sa["spi"], sa) for sa in assert_tunnel_sas(env, stale))
    packets = rdpcap(str(cap.path))
    assert_only_ike_and_esp(packets, str(env.vm.host_addr))
    _assert_esp_carries_the_lans(env, packets, seen, lans)


def _flush_pyikes_pairs(env: Env, pairs: list[dict]) -> set[int]:
    """pyike's `flush-sa ipsec`, until the SAs of `pairs` are gone on both sides; the SPIs of
    them the guest keeps: racoon removes only its outbound SA on a delete and keeps the inbound
    one until it expires (scenario 5 in racoon's form), the others remove both."""
    out = env.pyike.ctl("flush-sa", "ipsec")
    assert out.returncode == 0, out.stderr
    guest = str(env.vm.guest_addr)
    wait_for(lambda: not env.pyike.sad() and not {
        s.spi for s in xfrm_states(env.vm) if s.src == guest} & spis(pairs), 15,
        "pyike's flush-sa ipsec did not remove the SAs on both sides", env)
    return {s.spi for s in xfrm_states(env.vm)} & spis(pairs)


def ping_peer_lan(env: Env, count: int = 5, deadline: int = 10, lans: str = "ipv4"
                  ) -> subprocess.CompletedProcess:
    """From pyike's LAN host to the guest's, in the family `lans` (peers.LANS)."""
    lan = LANS[lans]
    return env.pyike.ping(lan.host_peer, count=count, deadline=deadline, source=lan.host_pyike)


def ping_pyike_lan(env: Env, count: int = 5, deadline: int = 10, lans: str = "ipv4") -> int:
    """From the guest's LAN host to pyike's, in the family `lans`."""
    lan = LANS[lans]
    return env.guest_ping(count=count, deadline=deadline, dst=lan.host_pyike,
                          source=lan.host_peer)


def assert_tunnel_sas(env: Env, stale: set[int] = frozenset()) -> list[dict]:
    """The guest's SAs are pyike's (assert_same_sas, besides `stale` ones the peer keeps), all
    of them in tunnel mode."""
    sad = assert_same_sas(env, stale_in_guest=stale)
    assert {s.mode for s in xfrm_states(env.vm)} == {"tunnel"}, xfrm_states(env.vm)
    assert {sa["mode"] for sa in sad} == {"tunnel"}, sad
    return sad


# per LAN family: what ESP says it carries in tunnel mode (RFC 4303 §2.6), its header, and its
# echo request and reply (RFC 792; RFC 4443 §4)
_INNER = {"ipv4": (IPPROTO_IPIP, IP, (ICMP,), {0, 8}),
          "ipv6": (IPPROTO_IPV6, IPv6, (ICMPv6EchoRequest, ICMPv6EchoReply), {128, 129})}


def _assert_esp_carries_the_lans(env: Env, packets: list, sas: dict[int, dict],
                                 lans: str = "ipv4") -> None:
    """Every ESP packet of `sas` (open_esp) holds a packet of the LANs' family (`lans`)
    between the two LANs; both ways carried echo requests and replies."""
    nh_wanted, header, echo, types = _INNER[lans]
    nets = (ipaddress.ip_network(LANS[lans].pyike), ipaddress.ip_network(LANS[lans].peer))
    kinds: dict[str, set[int]] = {"pyike": set(), "peer": set()}
    for side, nh, payload in open_esp(env, packets, sas):
        assert nh == nh_wanted, (side, nh)
        inner = header(payload)
        hosts = {ipaddress.ip_address(inner.src), ipaddress.ip_address(inner.dst)}
        assert all(any(h in lan for h in hosts) for lan in nets), inner.summary()
        layer = next((inner[kind] for kind in echo if kind in inner), None)
        assert layer is not None, inner.summary()
        kinds[side].add(layer.type)
    assert kinds == {"pyike": types, "peer": types}, kinds


# --- 10: the seed's GRE over IPv6 outer addresses ----------------------------------------------

def gre_over_ipv6(env: Env) -> None:
    """The seed's GRE in ESP transport mode with IPv6 outer ends: the guest's ip6gre device
    (local 2001:db8::2 remote 2001:db8::1, 10.1.1.2 peer 10.1.1.1 inside), pyike's `gre`
    block between the same ends, both SPDs on GRE between the two /128s. pyike initiates;
    then, after pyike's flush-sa of both phases, the peer does. Each time pings pass over the
    GRE both ways and the guest's transport-mode SAs, between the IPv6 ends, are pyike's. The
    tap carries nothing but IKE and ESP over IPv6 (IPv6's neighbour discovery and MLD aside),
    and either side's ESP opens to GRE carrying IPv4."""
    env.start(outer="ipv6")
    ends = {(str(env.vm.host_addr6), str(env.vm.guest_addr6)),
            (str(env.vm.guest_addr6), str(env.vm.host_addr6))}
    assert env.pyike.sad() == [] and env.pyike.isakmp() == []
    seen: dict[int, dict] = {}  # SPI -> pyike's SA, over both pairs
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        env.establish_from_pyike()
        assert [p1["side"] for p1 in env.pyike.isakmp()] == ["initiator"]
        assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
        assert env.guest_ping(count=5) == 5
        first = _assert_gre6_sas(env, ends)
        seen.update((sa["spi"], sa) for sa in first)

        stale = _flush_pyikes_pairs(env, first)
        out = env.pyike.ctl("flush-sa", "isakmp")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: not env.pyike.isakmp(), 10, "pyike kept its ISAKMP SA", env)
        env.establish_from_peer(what=", over IPv6")
        assert [p1["side"] for p1 in env.pyike.isakmp()] == ["responder"]
        assert env.guest_ping(count=5) == 5
        assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
        seen.update((sa["spi"], sa) for sa in _assert_gre6_sas(env, ends, stale))
    packets = rdpcap(str(cap.path))
    assert_only_ike_and_esp(packets, str(env.vm.host_addr))
    assert_esp_carries_gre(env, packets, seen)


def _assert_gre6_sas(env: Env, ends: set[tuple[str, str]], stale: set[int] = frozenset()
                     ) -> list[dict]:
    """The guest's SAs are pyike's (assert_same_sas, besides `stale`), all of them in
    transport mode between the IPv6 `ends`."""
    sad = assert_same_sas(env, stale_in_guest=stale)
    states = xfrm_states(env.vm)
    assert {s.mode for s in states} == {"transport"}, states
    assert {(s.src, s.dst) for s in states} <= ends, states
    assert {sa["mode"] for sa in sad} == {"transport"}, sad
    assert {(sa["src"], sa["dst"]) for sa in sad} == ends, sad
    return sad


# --- 11: ESP tunnel mode, IPv4 LANs over IPv6 outer addresses ----------------------------------

def tunnel_mode_over_ipv6(env: Env) -> None:
    """Scenario 9 with the tunnel's ends 2001:db8::1 and 2001:db8::2: the IPv4 LANs'
    packets ride whole in ESP tunnel mode over IPv6 (next header 4, RFC 4303 §2.6)."""
    tunnel_mode_subnets(env, outer="ipv6")


# --- 11b: ESP tunnel mode, IPv6 LANs over IPv6 outer addresses ---------------------------------

def tunnel_mode_ipv6_lans_over_ipv6(env: Env) -> None:
    """Scenario 9 all in IPv6, the form a racoon site over IPv6 runs: the LANs fd00:1::/64
    (fd00:1::1 behind pyike's tunnel_device) and fd00:2::/64 (fd00:2::1 on the guest's lan0)
    between the ends 2001:db8::1 and 2001:db8::2; the LANs' packets ride whole in ESP tunnel
    mode (next header 41, RFC 4303 §2.6)."""
    tunnel_mode_subnets(env, outer="ipv6", lans="ipv6")
