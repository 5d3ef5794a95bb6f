"""ESP tunnel mode in the forwarding core (RFC 4303 §3.1.2), in memory: two cores back to back as
two racoon-style routers with a LAN behind each, scapy's tunnel-mode ESP as the oracle both ways,
the inner selector checks, several subnet pairs over one pair of ends, generated policies and
IPv6 outside."""

from __future__ import annotations

import ipaddress
import warnings

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from forward.core import IPPROTO_ESP, QUEUE_WHILE_ACQUIRING, ForwardingCore
from forward.events import Acquire
from forward.specs import DeviceSpec, SaSpec, TunnelSpec
from pyike.sadb import setkey_state
from spd.parse import parse_setkey
from tests.forward.helpers import A, B, events, ip4, sa_pair

A6, B6 = "2001:db8::1", "2001:db8::2"
LAN_A, LAN_B = "10.0.1.0/24", "10.0.2.0/24"
PING = bytes(IP(src="10.0.1.5", dst="10.0.2.7") / ICMP(type=8, id=3, seq=1) / Raw(b"x" * 40))
PONG = bytes(IP(src="10.0.2.7", dst="10.0.1.5") / ICMP(type=0, id=3, seq=1) / Raw(b"x" * 40))
PING6 = bytes(IPv6(src="fd00:1::5", dst="fd00:2::7") / UDP(sport=5000, dport=53) / Raw(b"q"))


def policies(me: str, peer: str, mine: str, theirs: str, proto: str = "any",
             level: str = "require") -> str:
    """The racoon site's pair of tunnel-mode policies, as setkey.conf writes them."""
    return (f"spdadd {mine} {theirs} {proto} -P out ipsec esp/tunnel/{me}-{peer}/{level};\n"
            f"spdadd {theirs} {mine} {proto} -P in ipsec esp/tunnel/{peer}-{me}/{level};\n")


def router(me: str, peer: str, text: str) -> ForwardingCore:
    core = ForwardingCore()
    core.set_device(DeviceSpec("tun-ipsec", 1400))
    core.apply_setkey(*setkey_state([parse_setkey(text, "setkey.conf")], [me], 0.0))
    return core


def sites(me_a: str = A, me_b: str = B, lan_a: str = LAN_A, lan_b: str = LAN_B):
    return (router(me_a, me_b, policies(me_a, me_b, lan_a, lan_b)),
            router(me_b, me_a, policies(me_b, me_a, lan_b, lan_a)))


def install(core: ForwardingCore, out_keys, in_keys, local: str, remote: str, *,
            proto: int = 0, generate: bool = False, now: float = 0.0) -> None:
    """One quick mode's SA pair in tunnel mode with subnet IDs, as the IKE process installs it."""
    selectors = ((local, proto, 0), (remote, proto, 0))
    core.install((SaSpec(in_keys, "in", 0, 0, None, selectors, mode="tunnel",
                         generate_policy=generate),
                  SaSpec(out_keys, "out", 0, 0, None, selectors, mode="tunnel",
                         generate_policy=generate)), now)


def up(a: ForwardingCore, b: ForwardingCore, ab, ba, lan_a: str = LAN_A, lan_b: str = LAN_B):
    install(a, ab, ba, lan_a, lan_b)
    install(b, ba, ab, lan_b, lan_a)


def wire(core: ForwardingCore, src: str) -> list[bytes]:
    """Outer IPv4 packets as the peer's raw socket reads them, emptied from the core."""
    out = [ip4(src, dst, IPPROTO_ESP, data) for data, (dst, _) in core.esp_out]
    core.esp_out.clear()
    return out


def to_device(core: ForwardingCore) -> list[bytes]:
    out = []
    for target, packet in core.tun_out:
        assert target is core.device
        out.append(bytes(packet))
    core.tun_out.clear()
    return out


def oracle(keys) -> SecurityAssociation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SecurityAssociation(
            ESP, spi=keys.spi, crypt_algo="AES-CBC", crypt_key=keys.enc_key,
            auth_algo="HMAC-SHA1-96", auth_key=keys.auth_key,
            tunnel_header=IP(src=keys.src, dst=keys.dst))


def test_a_ping_between_the_lans_and_its_answer():
    a, b = sites()
    ab, ba = sa_pair()
    up(a, b, ab, ba)
    a.from_device(PING, 0.0)
    (packet,) = wire(a, A)
    assert packet[9] == IPPROTO_ESP and packet[12:20] == (ipaddress.ip_address(A).packed
                                                          + ipaddress.ip_address(B).packed)
    b.from_wire(packet, 0.0)
    assert to_device(b) == [PING]
    b.from_device(PONG, 0.0)
    for p in wire(b, B):
        a.from_wire(p, 0.0)
    assert to_device(a) == [PONG]
    assert a.counters.esp_out == 1 and a.counters.esp_in == 1


def test_scapy_opens_what_the_core_seals_and_the_core_opens_what_scapy_seals():
    a, _ = sites()
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B)
    a.from_device(PING, 0.0)
    (packet,) = wire(a, A)
    opened = oracle(ab).decrypt(IP(packet))
    assert bytes(opened) == PING  # the whole inner packet, next header 4
    sealed = oracle(ba).encrypt(IP(PONG))
    assert sealed[IP].proto == IPPROTO_ESP and sealed[IP].src == B
    a.from_wire(bytes(sealed), 0.0)
    assert to_device(a) == [PONG]


def test_traffic_outside_the_policies_is_not_sealed():
    a, _ = sites()
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B)
    a.from_device(bytes(IP(src="10.0.1.5", dst="10.0.9.9") / ICMP()), 0.0)
    assert a.esp_out == [] and a.counters.no_policy_dropped == 1


@pytest.mark.parametrize(("packet", "link_scoped"), [
    # what the kernel sends on the device once its IPv6 is on: a router solicitation from
    # its link-local address, an MLD report to ff02::16
    (IPv6(src="fe80::1", dst="ff02::2") / Raw(b"\x85\x00\x00\x00\x00\x00\x00\x00"), True),
    (IPv6(src="::", dst="ff02::16") / Raw(b"\x8f" + b"\x00" * 7), True),
    (IPv6(src="fd00:1::5", dst="ff01::1") / Raw(b"x"), True),
    (IP(src="169.254.3.4", dst="10.0.9.9") / ICMP(), True),
    (IP(src="10.0.1.5", dst="224.0.0.22") / ICMP(), True),
    # wider scopes and ordinary addresses outside the policies are drops worth a log line
    (IPv6(src="fd00:1::5", dst="ff05::2") / Raw(b"x"), False),
    (IPv6(src="fd00:1::5", dst="fd00:9::9") / Raw(b"x"), False),
    (IP(src="10.0.1.5", dst="239.1.2.3") / ICMP(), False),
])
def test_link_scope_packets_on_the_device_are_counted_apart(packet, link_scoped):
    a, _ = sites()
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B)
    a.from_device(bytes(packet), 0.0)
    assert a.esp_out == [] and a.esp6_out == []
    c = a.counters
    assert (c.link_scope_dropped, c.no_policy_dropped) == ((1, 0) if link_scoped else (0, 1))


@pytest.mark.parametrize(("inner", "counter"), [
    (IP(src="10.0.3.7", dst="10.0.1.5") / ICMP(), "selector_dropped"),  # not the peer's LAN
    (IP(src="10.0.2.7", dst="10.0.4.5") / ICMP(), "selector_dropped"),  # not ours
])
def test_the_inner_packet_must_be_within_the_sas_selectors(inner, counter):
    a, _ = sites()
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B)
    a.from_wire(bytes(oracle(ba).encrypt(IP(bytes(inner)))), 0.0)
    assert to_device(a) == [] and getattr(a.counters, counter) == 1


def test_the_sas_packets_from_other_outer_addresses_are_dropped():
    a, _ = sites()
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B)
    sealed = oracle(ba).encrypt(IP(PONG))
    sealed[IP].src = "198.18.0.9"
    a.from_wire(bytes(sealed), 0.0)
    assert to_device(a) == [] and a.counters.selector_dropped == 1


def test_the_in_policy_must_want_this_tunnel():
    """Selectors wide enough, but the `in` policy for that traffic names other tunnel ends."""
    text = (policies(A, B, LAN_A, LAN_B)
            + f"spdadd 10.0.5.0/24 {LAN_A} any -P in ipsec esp/tunnel/198.18.0.9-{A}/require;\n")
    a = router(A, B, text)
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, "10.0.0.0/16")
    peer = oracle(ba)
    a.from_wire(bytes(peer.encrypt(IP(bytes(IP(src="10.0.5.1", dst="10.0.1.5") / ICMP())))),
                0.0)
    assert to_device(a) == [] and a.counters.policy_dropped == 1
    a.from_wire(bytes(peer.encrypt(IP(PONG))), 0.0)  # the configured pair's traffic
    assert to_device(a) == [PONG]


def test_a_transport_mode_sa_never_reaches_the_device():
    a, _ = sites()
    ab, ba = sa_pair()
    selectors = ((LAN_A, 0, 0), (LAN_B, 0, 0))
    a.install((SaSpec(ba, "in", 0, 0, None, selectors),
               SaSpec(ab, "out", 0, 0, None, selectors)), 0.0)
    a.from_wire(bytes(oracle(ba).encrypt(IP(PONG))), 0.0)  # outer addresses outside selectors
    assert to_device(a) == [] and a.counters.selector_dropped == 1
    a.from_device(PING, 0.0)  # nor does a transport SA carry the device's traffic
    assert a.esp_out == [] and a.counters.queued == 1


def test_no_sa_yet_queues_a_few_and_acquires_with_the_policys_selectors():
    a, _ = sites()
    for i in range(QUEUE_WHILE_ACQUIRING + 2):
        a.from_device(PING, 0.1 * i)
    assert events(a) == [Acquire(A, B, "tunnel", LAN_A, LAN_B, 0, 0, 0)]
    assert a.counters.queued == QUEUE_WHILE_ACQUIRING and a.counters.no_sa_dropped == 2
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B, now=1.0)
    assert len(wire(a, A)) == QUEUE_WHILE_ACQUIRING  # what waited goes out at install


def test_two_subnet_pairs_over_one_pair_of_ends_keep_their_own_sas():
    lan_c = "10.0.3.0/24"
    text_a = policies(A, B, LAN_A, LAN_B) + policies(A, B, LAN_A, lan_c)
    a = router(A, B, text_a)
    b = router(B, A, policies(B, A, LAN_B, LAN_A) + policies(B, A, lan_c, LAN_A))
    ab1, ba1 = sa_pair(spi=0x1000)
    ab2, ba2 = sa_pair(spi=0x2000)
    up(a, b, ab1, ba1)
    up(a, b, ab2, ba2, LAN_A, lan_c)
    to_c = bytes(IP(src="10.0.1.5", dst="10.0.3.3") / ICMP())
    a.from_device(PING, 0.0)
    a.from_device(to_c, 0.0)
    first, second = wire(a, A)
    assert int.from_bytes(first[20:24], "big") == ab1.spi
    assert int.from_bytes(second[20:24], "big") == ab2.spi
    b.from_wire(first, 0.0)
    b.from_wire(second, 0.0)
    assert to_device(b) == [PING, to_c]
    # the 10.0.2.0/24 SA does not carry 10.0.3.0/24's traffic into b
    wrong = bytes(IP(src="10.0.1.5", dst="10.0.3.3") / ICMP(seq=2))
    b.install((), 0.0)
    a_sa = a.state.sad.outbound(A, B, next(g for g, sa in a.state.sad.groups(A, B)
                                           if sa.spi == ab1.spi))
    b.from_wire(ip4(A, B, IPPROTO_ESP, a_sa.seal(wrong, 4, 0.0)), 0.0)
    assert to_device(b) == [] and b.counters.selector_dropped == 1


def test_a_responder_with_generate_policy_makes_the_pair_and_drops_it_with_the_sa():
    b = ForwardingCore()
    b.set_device(DeviceSpec("tun-ipsec", 1400))
    ab, ba = sa_pair()
    install(b, ba, ab, LAN_B, LAN_A, generate=True)
    assert [(str(p.src), str(p.dst), p.direction) for p in b.state.spd.policies()] == [
        (LAN_A, LAN_B, "in"), (LAN_B, LAN_A, "out")]
    assert [str(net) for net, _, _ in b.state.tunnel_routes()] == [LAN_A]
    # not a policy of the setkey files': the IKE side must not take it for one (a rekey would
    # then lose the generated pair with the old SAs)
    assert b.state.configured_policies("out") == []
    b.from_device(PONG, 0.0)
    assert len(b.esp_out) == 1
    b.remove(ab.spi, "in")
    b.remove(ba.spi, "out")
    assert b.state.spd.policies() == [] and b.state.tunnel_routes() == []


def test_a_configured_policy_is_not_replaced_by_a_generated_one():
    a, _ = sites()
    before = a.state.spd.policies()
    assert a.state.configured_policies("out") == a.state.spd.policies("out") != []
    ab, ba = sa_pair()
    install(a, ab, ba, LAN_A, LAN_B, generate=True)
    a.remove(ba.spi, "in")
    assert a.state.spd.policies() == before


def test_inner_ipv6_over_ipv4_and_ipv4_over_ipv6_outside():
    lan6_a, lan6_b = "fd00:1::/64", "fd00:2::/64"
    a6 = router(A6, B6, policies(A6, B6, LAN_A, LAN_B) + policies(A6, B6, lan6_a, lan6_b))
    ab, ba = sa_pair(src=A6, dst=B6)
    install(a6, ab, ba, LAN_A, LAN_B)
    a6.from_device(PING, 0.0)
    assert a6.esp_out == []
    ((data, dst),) = a6.esp6_out
    assert dst == (B6, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa6 = SecurityAssociation(ESP, spi=ab.spi, crypt_algo="AES-CBC", crypt_key=ab.enc_key,
                                  auth_algo="HMAC-SHA1-96", auth_key=ab.auth_key,
                                  tunnel_header=IPv6(src=A6, dst=B6))
    outer = IPv6(bytes(IPv6(src=A6, dst=B6, nh=IPPROTO_ESP) / Raw(data)))
    assert bytes(sa6.decrypt(outer)) == PING
    # IPv6 inside IPv4 outside
    a = router(A, B, policies(A, B, lan6_a, lan6_b))
    ab4, ba4 = sa_pair(spi=0x3000)
    install(a, ab4, ba4, lan6_a, lan6_b)
    a.from_device(PING6, 0.0)
    (packet,) = wire(a, A)
    assert bytes(oracle(ab4).decrypt(IP(packet))) == PING6  # next header 41


def test_ipv6_outside_inbound_from_scapy():
    a6 = router(A6, B6, policies(A6, B6, LAN_A, LAN_B))
    ab, ba = sa_pair(src=A6, dst=B6)
    install(a6, ab, ba, LAN_A, LAN_B)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sa6 = SecurityAssociation(ESP, spi=ba.spi, crypt_algo="AES-CBC", crypt_key=ba.enc_key,
                                  auth_algo="HMAC-SHA1-96", auth_key=ba.auth_key,
                                  tunnel_header=IPv6(src=B6, dst=A6))
    sealed = sa6.encrypt(IP(PONG))
    a6.from_wire6(ipaddress.ip_address(B6).packed, ipaddress.ip_address(A6).packed,
                  IPPROTO_ESP, bytes(sealed[IPv6].payload), 0.0)
    assert to_device(a6) == [PONG]
    sealed = sa6.encrypt(IP(PONG))
    a6.from_wire6(ipaddress.ip_address("2001:db8::9").packed, ipaddress.ip_address(A6).packed,
                  IPPROTO_ESP, bytes(sealed[IPv6].payload), 0.0)
    assert to_device(a6) == [] and a6.counters.selector_dropped == 1


def test_gre_over_ipv6_outside_as_ip6gre_puts_it():
    """A `gre` block with IPv6 ends: GRE right after the IPv6 header (next header 47, as Linux's
    ip6gre sends it), in ESP transport mode; scapy opens it."""
    text = (f"spdadd {A6}/128 {B6}/128 gre -P out ipsec esp/transport//require;\n"
            f"spdadd {B6}/128 {A6}/128 gre -P in ipsec esp/transport//require;\n")
    a = ForwardingCore([TunnelSpec("gre6", A6, B6, "10.1.1.1", "10.1.1.2", 1400)])
    a.apply_setkey(*setkey_state([parse_setkey(text, "setkey.conf")], [A6], 0.0))
    ab, ba = sa_pair(src=A6, dst=B6)
    a.install((SaSpec(ba, "in", 0, 0, None, ((f"{A6}/128", 47, 0), (f"{B6}/128", 47, 0))),
               SaSpec(ab, "out", 0, 0, None, ((f"{A6}/128", 47, 0), (f"{B6}/128", 47, 0)))),
              0.0)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    ((data, dst),) = a.esp6_out
    assert dst == (B6, 0) and a.esp_out == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = SecurityAssociation(ESP, spi=ab.spi, crypt_algo="AES-CBC", crypt_key=ab.enc_key,
                                  auth_algo="HMAC-SHA1-96", auth_key=ab.auth_key)
        back = SecurityAssociation(ESP, spi=ba.spi, crypt_algo="AES-CBC", crypt_key=ba.enc_key,
                                   auth_algo="HMAC-SHA1-96", auth_key=ba.auth_key)
    opened = out.decrypt(IPv6(bytes(IPv6(src=A6, dst=B6, nh=IPPROTO_ESP) / Raw(data))))
    assert opened[IPv6].nh == 47 and bytes(opened[GRE].payload) == PING
    sealed = back.encrypt(IPv6(src=B6, dst=A6) / GRE(proto=0x0800) / IP(PONG))
    a.from_wire6(ipaddress.ip_address(B6).packed, ipaddress.ip_address(A6).packed,
                 IPPROTO_ESP, bytes(sealed[IPv6].payload), 0.0)
    assert [bytes(p) for _t, p in a.tun_out] == [PONG]



def test_a_setkey_flush_takes_the_generated_policies_with_the_sas():
    """pyike-setkey's `flush` (and racoonctl's flush-sa) reach negotiated SAs; their generated
    policies go with them, out of the SPD the same run leaves in force."""
    from pyike.sadb import run_setkey

    b = ForwardingCore()
    b.set_device(DeviceSpec("tun-ipsec", 1400))
    ab, ba = sa_pair()
    install(b, ba, ab, LAN_B, LAN_A, generate=True)
    assert len(b.state.spd.policies()) == 2
    run_setkey(b.state, parse_setkey("flush;\n", "-c"), [B], 0.0)
    assert b.state.spd.policies() == [] and len(b.state.sad) == 0


@pytest.mark.parametrize(("me", "peer", "inner"), [(A, B, PING6), (A6, B6, PING6), (A6, B6, PING)])
def test_gre_carries_ipv6_inside_over_either_family(me, peer, inner):
    """GRE's protocol type says IPv6 (0x86DD, RFC 2784 §2.4 / RFC 7676) and the far end's TUN
    device gets the IPv6 packet back, over IPv4 or IPv6 outer addresses."""
    bits = 32 if ":" not in me else 128

    def gre_router(mine: str, theirs: str) -> ForwardingCore:
        core = ForwardingCore([TunnelSpec("gre0", mine, theirs, "10.1.1.1", "10.1.1.2", 1400)])
        text = (f"spdadd {mine}/{bits} {theirs}/{bits} gre -P out ipsec esp/transport//require;\n"
                f"spdadd {theirs}/{bits} {mine}/{bits} gre -P in ipsec esp/transport//require;\n")
        core.apply_setkey(*setkey_state([parse_setkey(text, "setkey.conf")], [mine], 0.0))
        return core

    a, b = gre_router(me, peer), gre_router(peer, me)
    ab, ba = sa_pair(src=me, dst=peer)
    sel = ((f"{me}/{bits}", 47, 0), (f"{peer}/{bits}", 47, 0))
    back = (sel[1], sel[0])
    a.install((SaSpec(ba, "in", 0, 0, None, sel), SaSpec(ab, "out", 0, 0, None, sel)), 0.0)
    b.install((SaSpec(ab, "in", 0, 0, None, back), SaSpec(ba, "out", 0, 0, None, back)), 0.0)
    a.from_tunnel(a.tunnels[0], inner, 0.0)
    if bits == 32:
        (packet,) = wire(a, me)
        b.from_wire(packet, 0.0)
    else:
        ((data, _),) = a.esp6_out
        b.from_wire6(ipaddress.ip_address(me).packed, ipaddress.ip_address(peer).packed,
                     IPPROTO_ESP, data, 0.0)
    assert [bytes(p) for _t, p in b.tun_out] == [inner]
