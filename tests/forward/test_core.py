"""Two forwarding cores back to back, in memory: a ping through GRE in ESP both ways, acquires,
policies, ESP in UDP and lifetimes, without root, sockets or devices."""

from __future__ import annotations

import struct
import warnings

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from forward.core import QUEUE_WHILE_ACQUIRING
from forward.events import Acquire, Expire
from forward.specs import TunnelSpec
from tests.forward.helpers import (
    REQUIRE,
    A,
    B,
    carry,
    core_for,
    delivered,
    events,
    install_pair,
    ip4,
    sa_pair,
)

PING = bytes(IP(src="10.0.1.2", dst="10.0.2.2") / ICMP(type=8, id=7, seq=1) / Raw(b"ping" * 8))
PONG = bytes(IP(src="10.0.2.2", dst="10.0.1.2") / ICMP(type=0, id=7, seq=1) / Raw(b"ping" * 8))


@pytest.fixture
def pair():
    return core_for(A, B), core_for(B, A)


def test_a_ping_both_ways_after_acquire_install_and_flush(pair):
    a, b = pair
    ta, tb = a.tunnels[0], b.tunnels[0]
    a.from_tunnel(ta, PING, 10.0)
    assert a.esp_out == [] and ta.queue  # no SA yet: queued while one is negotiated
    assert events(a) == [Acquire(A, B)]
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 10.5)
    assert ta.queue == [] and len(a.esp_out) == 1  # the install flushed the queue
    assert carry(a, A, b, 10.5) == 1
    assert delivered(b) == [PING]
    b.from_tunnel(tb, PONG, 10.6)
    assert events(b) == []  # b's SA was there: no acquire
    carry(b, B, a, 10.6)
    assert delivered(a) == [PONG]
    ca, cb = a.counters, b.counters
    assert (ca.tun_in, ca.queued, ca.acquires, ca.esp_out, ca.esp_in, ca.tun_out) == (
        1, 1, 1, 1, 1, 1)
    assert (cb.esp_in, cb.tun_out, cb.esp_out, cb.esp_in_bytes) == (1, 1, 1, len(PING) + 4)
    assert ca.gre_clear_out == cb.gre_clear_out == 0


def test_scapy_opens_what_the_core_sends(pair):
    a, b = pair
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    (data, dst), = a.esp_out
    assert dst == (B, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = SecurityAssociation(ESP, spi=ab.spi, crypt_algo="AES-CBC", crypt_key=ab.enc_key,
                                     auth_algo="HMAC-SHA1-96", auth_key=ab.auth_key)
    opened = oracle.decrypt(IP(ip4(A, B, 50, data)))
    assert opened.proto == 47
    assert bytes(opened[GRE].payload) == PING and opened[GRE].proto == 0x0800


def test_the_queue_is_bounded_and_acquires_rate_limited(pair):
    a, _ = pair
    t = a.tunnels[0]
    for i in range(QUEUE_WHILE_ACQUIRING + 3):
        a.from_tunnel(t, PING, 5.0 + i * 0.01)
    assert len(t.queue) == QUEUE_WHILE_ACQUIRING
    assert a.counters.no_sa_dropped == 3
    assert events(a) == [Acquire(A, B)]  # one a second
    a.from_tunnel(t, PING, 6.0)
    assert events(a) == [Acquire(A, B)]


@pytest.mark.parametrize(("action", "clear", "acquire", "discarded"), [
    ("none", 1, 0, 0),
    ("discard", 0, 0, 1),
    ("ipsec esp/transport//use", 1, 1, 0),  # negotiate, and meanwhile send in clear
])
def test_outbound_policy_actions(action, clear, acquire, discarded):
    a = core_for(A, B, action)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    assert len(a.gre_out) == clear and a.esp_out == []
    assert len(events(a)) == acquire and a.counters.discarded == discarded
    if clear:
        (data, dst), = a.gre_out
        assert data == b"\x00\x00\x08\x00" + PING and dst == (B, 0)  # RFC 2784 header


@pytest.mark.parametrize("level", ["require", "unique", "default"])
def test_clear_gre_is_dropped_where_a_required_policy_covers_it(level):
    """Every level but `use` requires ESP, `default` included, as Linux's PF_KEY makes it."""
    sender = core_for(A, B, "none")
    strict = core_for(B, A, f"ipsec esp/transport//{level}")
    lax, optional = core_for(B, A, "none"), core_for(B, A, "ipsec esp/transport//use")
    for receiver in (strict, lax, optional):
        sender.from_tunnel(sender.tunnels[0], PING, 0.0)
        carry(sender, A, receiver, 0.0)
    assert delivered(strict) == [] and strict.counters.gre_clear_dropped == 1
    assert delivered(lax) == [PING] and lax.counters.gre_clear_in == 1
    assert delivered(optional) == [PING]


def test_an_in_policy_discard_drops_what_opens():
    a, b = core_for(A, B), core_for(B, A, REQUIRE, "discard")
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    carry(a, A, b, 0.0)
    assert delivered(b) == [] and b.counters.policy_dropped == 1


def test_esp_in_udp_round_trip(pair):
    a, b = pair
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0, encap=(4500, 4501))
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    assert a.esp_out == []
    (data, _), = a.udp_out
    sport, dport, length, checksum = struct.unpack("!HHHH", data[:8])
    assert (sport, dport, length, checksum) == (4500, 4501, len(data), 0)  # RFC 3948 §2.1
    assert data[8:12] == ab.spi.to_bytes(4, "big")
    b.natt_port = 4501
    carry(a, A, b, 0.0)
    assert delivered(b) == [PING]
    b.from_tunnel(b.tunnels[0], PONG, 0.0)
    assert struct.unpack("!HH", b.udp_out[0][0][:4]) == (4501, 4500)
    carry(b, B, a, 0.0)
    assert delivered(a) == [PONG]


@pytest.mark.parametrize("payload", [
    b"\x00\x00\x00\x00" + b"IKE message after the non-ESP marker",  # RFC 3948 §2.2
    b"\xff",  # NAT keepalive, RFC 3948 §2.3
])
def test_ike_and_keepalives_on_the_natt_port_are_not_esp(pair, payload):
    _, b = pair
    udp = struct.pack("!HHHH", 4500, 4500, 8 + len(payload), 0) + payload
    b.from_wire(ip4(A, B, 17, udp), 0.0)
    other_port = struct.pack("!HHHH", 500, 500, 8 + 40, 0) + bytes(range(1, 41))
    b.from_wire(ip4(A, B, 17, other_port), 0.0)
    assert set(b.counters.as_dict().values()) == {0}


def test_two_icv_lengths_until_the_peer_answers(pair):
    """A negotiated hmac-sha256 sends 128 then 96 bits of ICV, same sequence number, until the
    peer's first packet shows which it uses (esp.sa)."""
    a, b = pair
    ab, ba = sa_pair(auth="hmac-sha256")
    install_pair(a, b, ab, ba, 0.0)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    (first, _), (second, _) = a.esp_out
    assert len(first) == len(second) + 4 and first[:8] == second[:8]
    assert a.counters.esp_out == a.counters.esp_out_other_icv == 1
    carry(a, A, b, 0.0)
    assert delivered(b) == [PING]
    assert b.counters.open_dropped == 1  # the copy: same sequence number, replayed
    b.from_tunnel(b.tunnels[0], PONG, 0.0)
    assert len(b.esp_out) == 1  # b has seen a's 128-bit packet: only that length now
    carry(b, B, a, 0.0)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    assert len(a.esp_out) == 1


def test_lifetimes_are_events(pair):
    a, b = pair
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 100.0, lifetime_s=10)
    assert a.get_timer() <= 100.0
    a.handle_timer(100.0)
    assert events(a) == [] and a.get_timer() == 101.0
    a.handle_timer(108.5)
    assert set(events(a)) == {Expire(ba.spi, "in", "soft"), Expire(ab.spi, "out", "soft")}
    a.handle_timer(110.0)
    assert set(events(a)) == {Expire(ba.spi, "in", "hard"), Expire(ab.spi, "out", "hard")}
    a.from_tunnel(a.tunnels[0], PING, 110.1)
    assert a.esp_out == [] and events(a) == [Acquire(A, B)]  # gone: negotiate again


def test_what_the_wire_brings_that_is_not_ours(pair):
    _, b = pair
    b.from_wire(b"\x45\x00", 0.0)
    b.from_wire(ip4(A, B, 50, bytes(4)), 0.0)  # shorter than an ESP header
    assert b.counters.malformed == 2
    b.from_wire(ip4(A, B, 50, (0x4444).to_bytes(4, "big") + bytes(40)), 0.0)
    assert b.counters.unknown_spi == 1
    b.from_wire(ip4("198.18.0.99", B, 47, b"\x00\x00\x08\x00" + PING), 0.0)
    assert delivered(b) == [] and b.counters.gre_clear_dropped == 0  # not one of our tunnels
    b.from_tunnel(b.tunnels[0], b"\x00not ip", 0.0)
    assert b.counters.malformed == 3


def test_a_gre_key_picks_the_tunnel():
    a = core_for(A, B, "none", key=7)
    b = core_for(B, A, "none")
    b.set_tunnels([b.tunnels[0].spec, TunnelSpec("tun1", B, A, "10.1.9.1", "10.1.9.2", 1400, 7)])
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    carry(a, A, b, 0.0)
    ((t, packet),) = b.tun_out
    assert t.spec.name == "tun1" and packet == PING


def test_gre_in_esp_picks_the_tunnel_by_its_key():
    """An unkeyed tunnel takes the plain 4-byte GRE header only; keyed GRE goes by its key."""
    a, b = core_for(A, B), core_for(B, A)
    keyed = TunnelSpec("tun1", A, B, "10.1.9.1", "10.1.9.2", 1400, 7)
    a.set_tunnels([a.tunnels[0].spec, keyed])
    plain = b.tunnels[0].spec  # the keyed tunnel first: the outer pair alone finds it
    b.set_tunnels([TunnelSpec("tun1", B, A, "10.1.9.2", "10.1.9.1", 1400, 7), plain])
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0)
    for t, packet in zip(a.tunnels, (PING, PONG), strict=True):
        a.from_tunnel(t, packet, 0.0)
    assert carry(a, A, b, 0.0) == 2
    assert [(t.spec.name, packet) for t, packet in b.tun_out] == [("tun0", PING), ("tun1", PONG)]
    assert b.counters.esp_in == b.counters.tun_out == 2
    b.tun_out.clear()
    b.set_tunnels([plain])  # no tunnel with key 7 any more
    a.from_tunnel(a.tunnels[1], PING, 0.0)
    carry(a, A, b, 0.0)
    assert delivered(b) == [] and b.counters.malformed == 1
