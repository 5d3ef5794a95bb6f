"""The interop scenarios of pyike against one kernel-IPsec peer in the guest.

Each function takes the `env` fixture (conftest.py) and is bound to a test name by the peer's
test module (test_strongswan.py, test_libreswan.py, test_racoon.py), so every peer runs the
same checks on the VM its module booted.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.utils import rdpcap

import gre
from esp.sa import EspSA
from tests.interop import capture
from tests.interop.peers import INNER_PEER, INNER_PYIKE, Peer, XfrmState, xfrm_states
from tests.interop.pyike_side import Pyike
from tests.interop.vm import PeerVm

T = TypeVar("T")

# pyike's names (esp/) for what the Linux kernel calls cbc(aes) and hmac(sha1).
KERNEL_ALG = {"aes-cbc": "cbc(aes)", "hmac-sha1": "hmac(sha1)", "hmac-sha256": "hmac(sha256)"}
IKE_PORTS = (500, 4500)
IPPROTO_ESP = 50


@dataclass
class Env:
    vm: PeerVm
    peer: Peer
    pyike: Pyike

    def start(self, *, dpd_delay: int = 5, lifetime_s: int = 3600,
              peer_lifetime_s: int | None = None,
              esp_auth: str = "sha1", edit: Callable[[str], str] | None = None) -> None:
        """Configure and start the peer's daemon, then pyike; neither has SAs yet. `edit`
        rewrites both racoon.conf files (a racoon peer's and pyike's: one grammar)."""
        more = {"edit": edit} if edit else {}
        self.peer.configure(dpd_delay=dpd_delay, lifetime_s=peer_lifetime_s or lifetime_s,
                            esp_auth=esp_auth, **more)
        self.peer.start()
        self.pyike.configure(dh_group=self.peer.dh_group, dpd_delay=dpd_delay,
                             lifetime_s=lifetime_s, esp_auth=esp_auth, **more)
        self.pyike.start()
        self.pyike.wait_tun()

    def establish_from_pyike(self, timeout: int = 20) -> None:
        """Traffic into pyike's tun0 triggers the negotiation; returns once pings get through."""
        wait_for(lambda: received(self.pyike.ping(INNER_PEER, count=3, deadline=4)) > 0,
                 timeout, "no ping reply through the tunnel (pyike initiating)", self)

    def establish_from_peer(self, timeout: int = 25, what: str = "") -> None:
        """The guest's ping hits its kernel policy, whose acquire makes the peer's daemon
        negotiate; returns once pings get through."""
        wait_for(lambda: self.guest_ping(count=3, deadline=4) > 0, timeout,
                 f"no ping reply through the tunnel ({self.peer.name} initiating{what})", self)

    def guest_ping(self, count: int = 5, deadline: int = 10) -> int:
        _rc, out = self.vm.run(f"ping -c {count} -W 1 -w {deadline} {INNER_PYIKE}",
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


def assert_only_ike_and_esp(packets: list, pyike_addr: str) -> None:
    """Nothing but ISAKMP (UDP 500/4500) and ESP between the outer addresses: no GRE, no inner
    traffic in clear. Strict for pyike. A kernel peer gets one allowance, seen with libreswan:
    while its daemon swaps the trap policy for the SA's policy, a reply can leave in clear before
    its first ESP packet; anything in clear after that fails too."""
    ipv4 = [p for p in packets if p.haslayer(IP)]
    assert ipv4, "the capture saw nothing"
    peer_sent_esp = False
    for p in ipv4:
        is_esp = p[IP].proto == IPPROTO_ESP
        ok = is_esp or (
            p.haslayer(UDP) and (p[UDP].sport in IKE_PORTS or p[UDP].dport in IKE_PORTS)
        )
        if p[IP].src == pyike_addr:
            assert ok, f"pyike sent in clear: {p.summary()}"
        else:
            assert ok or not peer_sent_esp, f"the peer sent in clear: {p.summary()}"
            peer_sent_esp = peer_sent_esp or is_esp


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
    by_spi = {sa["spi"]: sa for sa in sad}
    outer_out = (str(env.vm.host_addr), str(env.vm.guest_addr))
    from_pyike = [p for p in packets if p.haslayer(ESP) and p[ESP].spi in by_spi
                  and (p[IP].src, p[IP].dst) == outer_out]
    from_peer = [p for p in packets if p.haslayer(ESP) and p[ESP].spi in by_spi
                 and (p[IP].dst, p[IP].src) == outer_out]
    assert len(from_pyike) >= 10 and len(from_peer) >= 10

    # pyike's ESP, opened by scapy with the keys pyikectl reports.
    scapy_sas = {
        sa["spi"]: SecurityAssociation(
            ESP, spi=sa["spi"], crypt_algo="AES-CBC", crypt_key=bytes.fromhex(sa["enc"]["key"]),
            auth_algo="HMAC-SHA1-96", auth_key=bytes.fromhex(sa["auth"]["key"]),
        )
        for sa in sad if sa["direction"] == "out"
    }
    for p in from_pyike:
        inner = scapy_sas[p[ESP].spi].decrypt(p[IP])
        assert inner.proto == 47 and inner.payload.proto == 0x0800  # GRE carrying IPv4
        assert inner.payload.payload[IP].src in (INNER_PYIKE, INNER_PEER)

    # The kernel peer's ESP, opened by pyike's own esp/ and gre/.
    esp_sas = {
        sa["spi"]: EspSA(sa["spi"], sa["src"], sa["dst"], sa["enc"]["alg"],
                         bytes.fromhex(sa["enc"]["key"]), sa["auth"]["alg"],
                         bytes.fromhex(sa["auth"]["key"]), direction="in")
        for sa in sad if sa["direction"] == "in"
    }
    kinds = set()
    for p in from_peer:
        opened = esp_sas[p[ESP].spi].open(bytes(p[ESP]), 0.0)
        assert isinstance(opened, tuple), f"pyike could not open the peer's ESP: {opened}"
        next_header, payload = opened
        assert next_header == 47  # GRE (RFC 2784)
        g = gre.decap(payload)
        assert isinstance(g, gre.GrePacket), g
        if g.protocol == gre.ETH_P_IP:
            kinds.add(IP(g.payload)[ICMP].type)
    assert kinds == {0, 8}, f"expected echo requests and replies from the peer, saw {kinds}"


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
