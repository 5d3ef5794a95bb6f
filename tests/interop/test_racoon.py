"""pyike against racoon (ipsec-tools) with the seed article's own files, when a racoon build is
there: PYIKE_RACOON_PREFIX names an install prefix holding sbin/racoon, sbin/setkey and
bin/racoonctl, else /opt/racoon is used when it holds them, linked against this system's libc
and libcrypto. Debian no longer packages racoon and the project never downloads or builds it.

Besides the shared scenarios (11b among them: IPv6 LANs over IPv6 ends, what a racoon site over
IPv6 runs), racoon's own forms: scenario 5 as racoon deletes, scenario 11 (IPv4 LANs over IPv6
ends) as far as a Linux racoon carries it, and the algorithms a racoon site runs."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap

from tests.interop import capture, scenarios
from tests.interop.peers import (
    INNER_PEER,
    LAN_HOST_PEER,
    LAN_HOST_PYIKE,
    LAN_PEER,
    LAN_PYIKE,
    RACOON_BINARIES,
    RacoonPeer,
    configure_lan,
    racoon_prefix,
    xfrm_states,
)
from tests.interop.scenarios import Env, assert_same_sas, received, spis, wait_for
from tests.interop.vm import Namespace

PEER = RacoonPeer

pytestmark = pytest.mark.skipif(
    racoon_prefix() is None,
    reason="no racoon: set PYIKE_RACOON_PREFIX (or install to /opt/racoon) to a prefix holding "
           + ", ".join(RACOON_BINARIES),
)


def test_racoon_starts_with_the_seed_policies(env: Env) -> None:
    env.peer.configure()
    env.peer.start()
    policies = env.vm.check("setkey -DP")
    a, b = env.vm.host_addr, env.vm.guest_addr
    assert f"{b}[any] {a}[any] gre" in policies or f"{b} {a} gre" in policies, policies
    assert "esp/transport//require" in policies, policies


def test_racoon_starts_with_the_tunnel_mode_policies(env: Env) -> None:
    """The guest's half of tunnel mode alone: setkey loads the LANs' tunnel-mode policies and
    racoon starts on them."""
    configure_lan(env.vm)
    env.peer.configure(mode="tunnel")
    env.peer.start()
    policies = env.vm.check("setkey -DP")
    a, b = env.vm.host_addr, env.vm.guest_addr
    # Linux hands back "any" as 255, which setkey prints as a number (no protocols(5) name)
    assert re.search(rf"{LAN_PEER}\[any\] {LAN_PYIKE}\[any\] (255|any)\n", policies), policies
    assert f"esp/tunnel/{b}-{a}/require" in policies, policies
    assert f"esp/tunnel/{a}-{b}/require" in policies, policies


test_1_pyike_initiates = scenarios.pyike_initiates
test_2_peer_initiates = scenarios.peer_initiates
test_3_dpd_both_ways = scenarios.dpd_both_ways
test_4_initial_contact_after_restart = scenarios.initial_contact_after_restart
test_6_rekey_under_ping = scenarios.rekey_under_ping
test_7_capture_opens_both_ways = scenarios.capture_opens_both_ways
test_9_tunnel_mode_subnets = scenarios.tunnel_mode_subnets
test_10_gre_over_ipv6 = scenarios.gre_over_ipv6
test_11b_tunnel_mode_ipv6_lans_over_ipv6 = scenarios.tunnel_mode_ipv6_lans_over_ipv6


def _xfrm_stat(env: Env, counter: str) -> int:
    """One of the guest kernel's XFRM error counters (/proc/net/xfrm_stat)."""
    for line in env.vm.check("cat /proc/net/xfrm_stat").splitlines():
        name, value = line.split()
        if name == counter:
            return int(value)
    raise KeyError(counter)


def test_11_tunnel_mode_over_ipv6_racoon_form(env: Env) -> None:
    """IPv4 LANs over IPv6 ends are beyond a Linux racoon. Its kernel SAs come through PF_KEY,
    which gives an SA without a proxy address (racoon sends none) the outer family for its
    selector (af_key.c), and the kernel's inbound policy check refuses an IPv4 packet out of an
    SA whose selector is IPv6 (XfrmInStateMismatch); strongSwan's netlink SAs are af-unspec
    and carry scenario 11. What holds on pyike's side: quick mode agrees with racoon on the
    tunnel and its keys, pyike's ESP opens (scapy) to IPv4 between the LAN hosts, and racoon's
    kernel decrypts each of those packets and drops it at that check. Should racoon or the
    kernel lift the limit this fails, and scenario 11 proper can take its place. With IPv6
    LANs over the same ends (scenario 11b) the selector's family is the LANs' own, and racoon
    carries them both ways."""
    env.start(mode="tunnel", outer="ipv6")
    mismatched = _xfrm_stat(env, "XfrmInStateMismatch")
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        assert received(scenarios.ping_peer_lan(env, count=5, deadline=5)) == 0
    sad = scenarios.assert_tunnel_sas(env)
    assert "sel src ::/0 dst ::/0" in env.vm.check("ip xfrm state")
    opened = scenarios.open_esp(env, rdpcap(str(cap.path)), {sa["spi"]: sa for sa in sad})
    assert opened and {(side, nh) for side, nh, _ in opened} == {
        ("pyike", scenarios.IPPROTO_IPIP)}, opened
    for _side, _nh, payload in opened:
        inner = IP(payload)
        assert (inner.src, inner.dst) == (LAN_HOST_PYIKE, LAN_HOST_PEER), inner.summary()
    # every packet racoon's kernel took in on its SA met that check
    (to_guest,) = [sa for sa in sad if sa["direction"] == "out"]
    stats = env.vm.check(f"ip -s xfrm state get src {to_guest['src']} dst {to_guest['dst']}"
                         f" proto esp spi {to_guest['spi']:#x}")
    taken = int(re.search(r"(\d+)\(packets\)", stats).group(1))
    assert taken > 0, stats
    assert _xfrm_stat(env, "XfrmInStateMismatch") - mismatched == taken, stats


def _guest(env: Env) -> dict[int, str]:
    """The guest kernel's ESP SPIs, each with its direction as seen from racoon."""
    return {s.spi: "out" if s.src == str(env.vm.guest_addr) else "in" for s in xfrm_states(env.vm)}


def test_5_deletes_both_ways_racoon_form(env: Env) -> None:
    """pyike's delete: racoon removes its outbound SA of the pair and keeps the inbound one
    until it expires (its purge_ipsec_spi() skips inbound SAs, so packets in flight still
    open). pyike removes both of its own and sends nothing into the kept one, so the stale SA
    is harmless; pyike lets racoon keep it. racoon's `delete-sa` (isakmp or esp: one path in
    racoon) sends only the ISAKMP SA's delete and purges its IPsec SAs: pyike drops its pair
    too, and the next packet negotiates a new one."""
    env.start()
    env.establish_from_pyike()
    first = spis(assert_same_sas(env))
    out = env.pyike.ctl("delete-sa", "esp", str(env.vm.host_addr), str(env.vm.guest_addr))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: not {s for s, d in _guest(env).items() if d == "out"} & first, 15,
             "pyike's delete did not remove racoon's outbound SA", env)
    assert not (spis(env.pyike.sad()) & first)
    kept = set(_guest(env)) & first
    assert kept and all(_guest(env)[s] == "in" for s in kept), _guest(env)

    env.establish_from_pyike()
    second = spis(assert_same_sas(env, stale_in_guest=kept))
    for kind in ("isakmp", "esp"):
        env.peer.delete_sas(kind)
        wait_for(lambda second=second: not (spis(env.pyike.sad()) & second), 15,
                 f"racoon's delete-sa {kind} did not remove pyike's SAs", env)
        # traffic resumes at once: the next packet negotiates a new pair
        env.establish_from_pyike(timeout=10)
        assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
        assert env.guest_ping(count=3) == 3
        second = spis(assert_same_sas(env, stale_in_guest=kept))


def _sha256(text: str) -> str:
    """AES-256 with SHA-256 in phase 1, hmac_sha256 in phase 2, on either racoon.conf."""
    text = re.sub(r"encryption_algorithm aes( 128)?;", "encryption_algorithm aes 256;", text)
    text = re.sub(r"hash_algorithm sha1;", "hash_algorithm sha256;", text)
    return re.sub(r"authentication_algorithm hmac_sha1;", "authentication_algorithm hmac_sha256;",
                  text)


@pytest.mark.parametrize("first", ["pyike", "racoon"])
def test_8_hmac_sha256_carries_traffic_with_racoons_96_bit_icv(env: Env, first: str) -> None:
    """A Linux racoon's kernel SAs put a 96-bit ICV on a negotiated hmac_sha256 (RFC 4868 says
    128, which strongSwan and libreswan use): pyike sends both lengths until racoon's first
    packet, then racoon's alone; whichever side speaks first."""
    env.start(edit=_sha256)
    conf = (env.pyike.workdir / "racoon.conf").read_text()
    assert "hmac_sha256" in conf and "sha256;" in conf
    _up_from(env, first)
    sad = assert_same_sas(env)
    assert {sa["auth"]["alg"] for sa in sad} == {"hmac-sha256"}
    assert {s.auth_bits for s in xfrm_states(env.vm)} == {96}
    assert {sa["auth"]["icv_bits"] for sa in sad} == {96}


# --- what racoon sites run -------------------------------------------------------------------

def _sub(pattern: str, repl: str) -> Callable[[str], str]:
    """An edit of both racoon.conf files that must change something."""
    def edit(text: str) -> str:
        new, n = re.subn(pattern, repl, text)
        assert n, f"{pattern!r} is not in the seed racoon.conf"
        return new
    return edit


def _up_from(env: Env, first: str) -> None:
    if first == "pyike":
        env.establish_from_pyike()
    else:
        env.establish_from_peer()
    assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
    assert env.guest_ping(count=3) == 3


@pytest.mark.parametrize("first", ["pyike", "racoon"])
def test_9_aggressive_mode(env: Env, first: str) -> None:
    env.start(edit=_sub(r"exchange_mode main;", "exchange_mode aggressive;"))
    _up_from(env, first)
    assert [p1["exchange"] for p1 in env.pyike.isakmp()] == ["aggressive"]
    assert_same_sas(env)


@pytest.mark.parametrize("group", [5, 14])
def test_10_pfs_and_phase1_groups(env: Env, group: int) -> None:
    both = _sub(r"pfs_group \d+;", f"pfs_group {group};")
    env.start(edit=lambda text: _sub(r"dh_group \d+;", f"dh_group {group};")(both(text)))
    _up_from(env, "pyike")
    assert [p1["dh_group"] for p1 in env.pyike.isakmp()] == [group]
    assert assert_same_sas(env)


PYIKE_P2_S, RACOON_P2_S = 3600, 1800  # phase-2 lifetimes that disagree


def _proposal_check(mode: str) -> Callable[[str], str]:
    return _sub(r"rekey on;", f"rekey on;\n        proposal_check {mode};")


# racoon.conf(5) for a responder whose phase-2 lifetime is `responder`, offered `initiator`:
# the lifetime agreed, or None for NO-PROPOSAL-CHOSEN.
def _agreed(mode: str, initiator: int, responder: int) -> int | None:
    if mode == "obey":
        return initiator
    if mode == "exact":
        return initiator if initiator == responder else None
    if initiator <= responder:
        return initiator
    return responder if mode == "claim" else None  # strict refuses a longer one


@pytest.mark.parametrize("first", ["pyike", "racoon"])
@pytest.mark.parametrize("mode", ["obey", "strict", "claim", "exact"])
def test_11_proposal_check_with_lifetimes_that_disagree(env: Env, mode: str, first: str) -> None:
    """Both ends run `proposal_check MODE` with different phase-2 lifetimes; the responder
    decides, racoon when pyike initiates and pyike when racoon does, as racoon.conf(5) says."""
    env.start(lifetime_s=PYIKE_P2_S, peer_lifetime_s=RACOON_P2_S, edit=_proposal_check(mode))
    offered, own = (PYIKE_P2_S, RACOON_P2_S) if first == "pyike" else (RACOON_P2_S, PYIKE_P2_S)
    agreed = _agreed(mode, offered, own)
    if agreed is None:
        if first == "pyike":
            got = received(env.pyike.ping(INNER_PEER, count=6, interval=1, deadline=8))
        else:
            got = env.guest_ping(count=6, deadline=8)
        assert got == 0 and env.pyike.sad() == [], f"{mode}: {offered} s against {own} s"
        return
    _up_from(env, first)
    sad = assert_same_sas(env)
    assert {sa["lifetime"]["hard_s"] for sa in sad} == {agreed}, (mode, first, sad)


def test_12_flush_sa_on_racoons_side(env: Env) -> None:
    """`racoonctl flush-sa ipsec` empties racoon's kernel SAD and tells nobody; the guest's
    next reply hits its policy, racoon negotiates, and pyike takes the new pair."""
    env.start()
    env.establish_from_pyike()
    first = spis(assert_same_sas(env))
    env.peer.ctl("flush-sa", "ipsec")
    assert not set(_guest(env)) & first
    env.establish_from_pyike(timeout=15)
    assert received(env.pyike.ping(INNER_PEER, count=5)) == 5
    second = spis(env.pyike.sad())
    assert second - first


P1_SHORT_S = 45


def test_13_both_phases_rekeyed_under_ping(env: Env) -> None:
    """Phase 1 every 45 s, phase 2 every 30 s, as racoon sites with short lifetimes run: under
    ping, under 1 % lost, nothing in clear (scenario 6 with a short phase 1 too)."""
    scenarios.rekey_under_ping(
        env, edit=_sub(r"lifetime time 24 hours;", f"lifetime time {P1_SHORT_S} seconds;"))
    p1s = env.pyike.isakmp()
    assert p1s, "no ISAKMP SA after the rekeys"
    ages = [time.time() - datetime.fromisoformat(p1["created"]).timestamp() for p1 in p1s]
    assert max(ages) < P1_SHORT_S + 5, f"an ISAKMP SA outlived its lifetime: {p1s}"


# modp4096 in both phases: main mode 3 and 4 and both quick-mode messages exceed the 552 bytes
# over which racoon fragments (ISAKMP_FRAG_MAXLEN)
FRAG_GROUP = 16


def _ike_frag(level: str) -> Callable[[str], str]:
    steps = (_sub(r"rekey on;", f"rekey on;\n        ike_frag {level};"),
             _sub(r"dh_group \d+;", f"dh_group {FRAG_GROUP};"),
             _sub(r"pfs_group \d+;", f"pfs_group {FRAG_GROUP};"))

    def edit(text: str) -> str:
        for step in steps:
            text = step(text)
        return text
    return edit


def _fragments_sent(env: Env, edit: Callable[[str], str], first: str) -> dict[str, int]:
    """Bring the tunnel up with `first` initiating; the IKE fragments (payload 132) each side
    put on the wire meanwhile."""
    env.start(edit=edit)
    with capture.Capture(env.vm, env.pyike.workdir) as cap:
        _up_from(env, first)
    assert [p1["dh_group"] for p1 in env.pyike.isakmp()] == [FRAG_GROUP]
    assert_same_sas(env)
    sent = {"pyike": 0, "racoon": 0}
    for p in rdpcap(str(cap.path)):
        if not p.haslayer(UDP) or p[UDP].dport not in scenarios.IKE_PORTS:
            continue
        data = bytes(p[UDP].payload)
        if p[UDP].dport == 4500:
            data = data[4:]  # the non-ESP marker (RFC 3948 §2.2)
        if len(data) > 16 and data[16] == 132:  # the ISAKMP header's first payload
            sent["pyike" if p[IP].src == str(env.vm.host_addr) else "racoon"] += 1
    return sent


@pytest.mark.parametrize("first", ["pyike", "racoon"])
def test_14_ike_frag_on(env: Env, first: str) -> None:
    """`ike_frag on` on both sides: each initiator announces fragmentation and each responder
    answers the announcement and then fragments. racoon as initiator fragments nothing under
    `on` (only `force` does); pyike as initiator fragments once racoon has answered, as
    racoon.conf(5) has the sender side."""
    sent = _fragments_sent(env, _ike_frag("on"), first)
    assert sent["pyike"] > 0, sent
    assert (sent["racoon"] > 0) == (first == "pyike"), sent


@pytest.mark.parametrize("first", ["pyike", "racoon"])
def test_15_ike_frag_force(env: Env, first: str) -> None:
    """`ike_frag force` on both sides: racoon as initiator sends main mode 3 and its quick mode
    in fragments before pyike says anything, pyike puts them together; pyike as initiator does
    the same towards racoon; either responder fragments after the announcement."""
    sent = _fragments_sent(env, _ike_frag("force"), first)
    assert sent["pyike"] > 0 and sent["racoon"] > 0, sent


# --- NAT-T with a NAT between pyike and racoon ------------------------------------------------

NATTED = "198.18.1.1"  # pyike's own address behind the NAT
NAT_INSIDE = "198.18.1.254"  # the NAT's inside address (the VM's namespace is the NAT)


@contextlib.contextmanager
def _pyike_behind_nat(env: Env) -> Iterator[None]:
    """pyike in a namespace of its own, NATTED, behind the VM's namespace, which masquerades
    it to its tap address (racoon sees pyike as that address, from other ports). Everything is
    undone afterwards: the VM's namespace serves the module's other tests."""
    inner = Namespace("natin")
    vm_ns = env.vm.ns.name
    veth = f"nat{os.getpid() % 10000}"
    try:
        subprocess.run(["ip", "link", "add", veth, "netns", vm_ns, "type", "veth", "peer",
                        "name", "wan0", "netns", inner.name], check=True)
        for ns, dev, addr in ((vm_ns, veth, NAT_INSIDE), (inner.name, "wan0", NATTED)):
            for argv in (["ip", "addr", "add", f"{addr}/24", "dev", dev],
                         ["ip", "link", "set", dev, "up"]):
                subprocess.run(["ip", "netns", "exec", ns, *argv], check=True)
        inner.run(["ip", "route", "add", "default", "via", NAT_INSIDE], check=True)
        env.vm.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)
        # ports moved as well as the address, as a home router's NAT does
        env.vm.ns.run(["nft", "-f", "-"], check=True, text=True, input=(
            "table ip pyikeinterop {\n chain post { type nat hook postrouting priority 100;"
            f' oifname "{env.vm.tap}" meta l4proto udp masquerade to :20000-30000;'
            f' oifname "{env.vm.tap}" masquerade; }}\n}}\n'))
        env.pyike.move_to(inner)
        yield
    finally:
        env.pyike.stop()
        env.pyike.move_to(env.vm.ns)
        env.vm.ns.run(["nft", "delete", "table", "ip", "pyikeinterop"], capture_output=True)
        env.vm.ns.run(["ip", "link", "del", veth], capture_output=True)
        env.vm.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=0"], capture_output=True)
        inner.close()


def _natt(side: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        me = "198.18.0.1" if side == "pyike" else "198.18.0.2"
        text = _sub(r"rekey on;", "rekey on;\n        nat_traversal on;")(text)
        text = _sub(rf"isakmp {me} \[500\];",
                    f"isakmp {me} [500];\n        isakmp_natt {me} [4500];")(text)
        if side == "racoon":
            text = _sub(r"rekey on;", "rekey on;\n        generate_policy on;")(text)
        if side == "pyike":  # pyike's own address is the private one
            text = text.replace("local 198.18.0.1;", f"local {NATTED};")
            text = text.replace("isakmp 198.18.0.1", f"isakmp {NATTED}")
            text = text.replace("isakmp_natt 198.18.0.1", f"isakmp_natt {NATTED}")
        return text
    return edit


def test_16_nat_traversal_with_a_nat_between(env: Env) -> None:
    """RFC 3947/3948 through a NAT that moves address and ports: IKE floats to 4500, ESP rides
    in UDP, traffic both ways; on the racoon side of the NAT nothing but UDP. racoon looks its
    SPD up by the quick-mode IDs, which name the initiator's own (private) address whoever the
    initiator is, pyike or racoon: so the responder racoon runs `generate_policy on`, as racoon
    sites with peers behind NATs do."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    from tests.interop import capture

    with _pyike_behind_nat(env):
        env.peer.configure(edit=_natt("racoon"))
        env.peer.start()
        env.pyike.configure(dh_group=env.peer.dh_group, edit=_natt("pyike"))
        setkey = env.pyike.workdir / "setkey.conf"
        setkey.write_text(setkey.read_text().replace("198.18.0.1", NATTED))
        env.pyike.start()
        env.pyike.wait_tun()
        with capture.Capture(env.vm, env.pyike.workdir) as cap:
            _up_from(env, "pyike")
        (p1,) = env.pyike.isakmp()
        assert p1["nat_traversal"] == "rfc" and p1["dst_port"] == 4500, p1
        packets = [p for p in rdpcap(str(cap.path)) if IP in p]
        assert packets and {p[IP].proto for p in packets} == {17}, "ESP outside UDP"
        esp_in_udp = [p for p in packets if 4500 in (p[UDP].sport, p[UDP].dport)
                      and bytes(p[UDP].payload)[:4] != bytes(4) and len(p[UDP].payload) > 8]
        assert len(esp_in_udp) >= 10
        assert any(p[IP].src == str(env.vm.host_addr) and p[UDP].sport not in (500, 4500)
                   for p in packets), "the NAT kept pyike's ports: nothing was translated"
        # racoon's kernel SAs carry the NAT's ports (UDP encapsulation)
        xfrm = env.vm.check("ip xfrm state")
        assert "encap type espinudp" in xfrm, xfrm
