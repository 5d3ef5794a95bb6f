"""A responder's inbound SA installed before its pair (ikev1 InboundReady): the initiator's first
packets under the pair open instead of dropping as an unknown SPI; the pair's install keeps that
SA as it is; a withdrawal removes it, and only it."""

from __future__ import annotations

from forward.core import IPPROTO_ESP, ForwardingCore
from forward.specs import DeviceSpec, SaSpec
from tests.forward.helpers import A, B, carry, core_for, delivered, ip4, sa_pair
from tests.forward.test_tunnel_mode import LAN_A, LAN_B, PING, PONG, install, to_device, wire

INNER = bytes.fromhex("4500001c000000004001") + bytes(10) + bytes(8)  # an IPv4 header + 8
GRE_SEL_B = ((f"{B}/32", 47, 0), (f"{A}/32", 47, 0))  # the responder's (local, remote)
GRE_SEL_A = ((f"{A}/32", 47, 0), (f"{B}/32", 47, 0))


def _initiator_sends(a, b, ab, ba):
    """a has its pair (quick mode's message 3 sent) and sends one packet into its tunnel."""
    a.install((SaSpec(ba, "in", 3600, 0, None, GRE_SEL_A),
               SaSpec(ab, "out", 3600, 0, None, GRE_SEL_A)), 0.0)
    a.from_tunnel(a.tunnels[0], INNER, 0.0)
    esp = list(a.esp_out)
    carry(a, A, b, 0.0)
    return esp


def test_without_it_the_first_packet_is_an_unknown_spi():
    a, b = core_for(A, B), core_for(B, A)
    ab, ba = sa_pair()
    _initiator_sends(a, b, ab, ba)
    assert b.counters.unknown_spi == 1 and delivered(b) == []


def test_an_early_inbound_sa_opens_and_the_pair_keeps_it_with_its_replay_window():
    a, b = core_for(A, B), core_for(B, A)
    ab, ba = sa_pair()
    early = SaSpec(ab, "in", 3600, 0, None, GRE_SEL_B)
    b.install_inbound(early, 0.0)
    sa = b.state.inbound(ab.spi)
    assert b.state.sad.outbound(B, A) is None  # nothing to send under before message 3
    (first,) = _initiator_sends(a, b, ab, ba)
    assert delivered(b) == [INNER] and b.counters.unknown_spi == 0
    b.install((early, SaSpec(ba, "out", 3600, 0, None, GRE_SEL_B)), 1.0)  # message 3 in
    assert b.state.inbound(ab.spi) is sa and sa.packets == 1
    assert [s for s in b.state.sad._order if s.direction == "in"] == [sa]  # no duplicate
    assert not b.state.early
    data, (dst, _) = first
    b.from_wire(ip4(A, dst, IPPROTO_ESP, data), 1.0)  # the first packet again: a replay still
    assert sa.replay_drops == 1 and delivered(b) == []
    b.from_tunnel(b.tunnels[0], INNER, 1.0)  # the pair works the other way too
    assert carry(b, B, a, 1.0) == 1 and delivered(a) == [INNER]
    b.withdraw_inbound(ab.spi)  # late: the pair took it, nothing goes
    assert b.state.inbound(ab.spi) is sa


def test_a_withdrawal_removes_the_early_sa_only():
    b = core_for(B, A)
    ab, ba = sa_pair()
    b.install_inbound(SaSpec(ab, "in", 3600, 0, None, GRE_SEL_B), 0.0)
    b.withdraw_inbound(ab.spi)
    assert b.state.inbound(ab.spi) is None and not b.state.early and not b.state.selectors
    b.install((SaSpec(ab, "in", 3600, 0, None, GRE_SEL_B),
               SaSpec(ba, "out", 3600, 0, None, GRE_SEL_B)), 0.0)
    b.withdraw_inbound(ab.spi)  # a paired SA of the same SPI is not the early one
    assert b.state.inbound(ab.spi) is not None


def test_a_pair_that_names_other_keys_replaces_the_early_sa():
    b = core_for(B, A)
    ab, ba = sa_pair()
    other, _ = sa_pair(spi=ab.spi)  # the same SPI, other keys
    b.install_inbound(SaSpec(other, "in", 3600, 0, None, GRE_SEL_B), 0.0)
    early = b.state.inbound(ab.spi)
    b.install((SaSpec(ab, "in", 3600, 0, None, GRE_SEL_B),
               SaSpec(ba, "out", 3600, 0, None, GRE_SEL_B)), 0.0)
    sa = b.state.inbound(ab.spi)
    assert sa is not early and not b.state.early
    assert [s for s in b.state.sad._order if s.direction == "in"] == [sa]


def test_a_flush_forgets_the_early_sa():
    b = core_for(B, A)
    ab, _ = sa_pair()
    b.install_inbound(SaSpec(ab, "in", 3600, 0, None, GRE_SEL_B), 0.0)
    b.flush()
    assert not b.state.early and b.state.inbound(ab.spi) is None


def test_generate_policy_tunnel_mode_the_early_sa_brings_its_in_policy_and_delivers():
    """A responder under generate_policy has no policy for the peer's selectors: the early SA
    brings the `in` one (what a tunnel-mode packet is checked against), never the `out` one,
    which with its route waits for the pair, as the outbound SA does."""
    a = ForwardingCore()
    a.set_device(DeviceSpec("tun-ipsec", 1400))
    b = ForwardingCore()
    b.set_device(DeviceSpec("tun-ipsec", 1400))
    ab, ba = sa_pair()
    selectors = ((LAN_B, 0, 0), (LAN_A, 0, 0))
    early = SaSpec(ab, "in", 0, 0, None, selectors, mode="tunnel", generate_policy=True)
    b.install_inbound(early, 0.0)
    assert [(str(p.src), str(p.dst), p.direction) for p in b.state.spd.policies()] == [
        (LAN_A, LAN_B, "in")]
    assert b.state.tunnel_routes() == []
    install(a, ab, ba, LAN_A, LAN_B, generate=True)  # the initiator: pair, then its ping
    a.from_device(PING, 0.0)
    for packet in wire(a, A):
        b.from_wire(packet, 0.0)
    assert to_device(b) == [PING] and b.counters.unknown_spi == 0
    sa = b.state.inbound(ab.spi)
    b.install((early, SaSpec(ba, "out", 0, 0, None, selectors, mode="tunnel",
                             generate_policy=True)), 0.0)
    assert b.state.inbound(ab.spi) is sa and sa.packets == 1
    assert sorted((str(p.src), str(p.dst), p.direction) for p in b.state.spd.policies()) == [
        (LAN_A, LAN_B, "in"), (LAN_B, LAN_A, "out")]
    b.from_device(PONG, 0.0)
    for packet in wire(b, B):
        a.from_wire(packet, 0.0)
    assert to_device(a) == [PONG]


def test_generate_policy_withdrawal_takes_its_in_policy():
    b = ForwardingCore()
    b.set_device(DeviceSpec("tun-ipsec", 1400))
    ab, _ = sa_pair()
    b.install_inbound(SaSpec(ab, "in", 0, 0, None, ((LAN_B, 0, 0), (LAN_A, 0, 0)),
                             mode="tunnel", generate_policy=True), 0.0)
    b.withdraw_inbound(ab.spi)
    assert b.state.spd.policies() == [] and b.state.inbound(ab.spi) is None
