"""Inbound checks as a kernel makes them: what opens under an SA passes only when its outer
addresses are the SA's, fall within the SA's selectors with its upper protocol, and the `in`
policy's rules are what the SA is."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP

from tests.forward.helpers import (
    REQUIRE,
    A,
    B,
    carry,
    core_for,
    delivered,
    install_pair,
    ip4,
    sa_pair,
)

PING = bytes(IP(src="10.0.1.2", dst="10.0.2.2") / ICMP())
GRE_ONLY = ((f"{A}/32", 47, 0), (f"{B}/32", 47, 0))  # A's (local, remote), as quick mode made them


def flipped(selectors: tuple) -> tuple:
    return selectors[::-1]


def ping_a_to_b(a_selectors: tuple = GRE_ONLY, b_selectors: tuple = flipped(GRE_ONLY),
                b_in: str = REQUIRE, encap=None):
    a, b = core_for(A, B), core_for(B, A, REQUIRE, b_in)
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0, a_selectors=a_selectors, b_selectors=b_selectors,
                 encap=encap)
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    carry(a, A, b, 0.0)
    return a, b


def test_what_the_selectors_cover_passes_and_is_remembered():
    a, b = ping_a_to_b()
    assert delivered(b) == [PING] and b.counters.selector_dropped == 0
    t = b.tunnels[0]
    assert t.in_sa is b.state.inbound(a.state.outbound(A, B).spi)
    a.from_tunnel(a.tunnels[0], PING, 0.1)
    carry(a, A, b, 0.1)
    assert delivered(b) == [PING] and b.counters.esp_in == 2


@pytest.mark.parametrize("b_selectors", [
    ((f"{B}/32", 47, 0), ("198.18.0.9/32", 47, 0)),  # another peer's address
    (("198.18.5.0/24", 47, 0), (f"{A}/32", 47, 0)),  # not to us
    ((f"{B}/32", 17, 0), (f"{A}/32", 17, 0)),  # UDP, not GRE
], ids=["source", "destination", "protocol"])
def test_what_the_selectors_do_not_cover_is_dropped_and_counted(b_selectors):
    _, b = ping_a_to_b(b_selectors=b_selectors)
    assert delivered(b) == []
    assert b.counters.selector_dropped == 1 and b.counters.esp_in == 0
    assert b.tunnels[0].in_sa is None


def test_a_network_selector_covers_its_hosts():
    _, b = ping_a_to_b(b_selectors=(("198.18.0.0/15", 0, 0), ("198.18.0.0/24", 0, 0)))
    assert delivered(b) == [PING]


def test_the_sas_packets_from_another_address_are_dropped():
    a, b = core_for(A, B), core_for(B, A)
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0)  # no selectors: the SA's own addresses still count
    a.from_tunnel(a.tunnels[0], PING, 0.0)
    (data, _), = a.esp_out
    b.from_wire(ip4("198.18.0.7", B, 50, data), 0.0)
    assert delivered(b) == [] and b.counters.selector_dropped == 1


@pytest.mark.parametrize(("selectors", "counter"), [
    (flipped(GRE_ONLY), "selector_dropped"),  # the SA carries GRE only
    (((f"{B}/32", 0, 0), (f"{A}/32", 0, 0)), "policy_dropped"),  # any protocol, but no tunnel
])
def test_esp_that_does_not_carry_gre(selectors, counter):
    a, b = core_for(A, B), core_for(B, A)
    ab, ba = sa_pair()
    install_pair(a, b, ab, ba, 0.0, b_selectors=selectors)
    ipip = a.state.outbound(A, B).seal(PING, 4, 0.0)  # IP in IP, next header 4
    b.from_wire(ip4(A, B, 50, ipip), 0.0)
    assert delivered(b) == [] and getattr(b.counters, counter) == 1


def test_behind_a_nat_a_host_id_stands_for_the_sas_address():
    """RFC 3947 §5.2: the NATted peer's ID is its address before translation; its packets come
    from the NAT's outside address, the SA's."""
    private = ("10.99.0.5/32", 47, 0)
    _, b = ping_a_to_b(b_selectors=((f"{B}/32", 47, 0), private), encap=(4500, 4500))
    assert delivered(b) == [PING]


@pytest.mark.parametrize(("b_in", "passes"), [
    ("ipsec esp/transport//require", True),
    ("ipsec esp/transport//use", True),
    ("none", True),
    (f"ipsec esp/tunnel/{A}-{B}/require", False),  # tunnel mode: our SAs are transport
    ("discard", False),
])
def test_the_in_policy_rules_must_be_what_the_sa_is(b_in, passes):
    _, b = ping_a_to_b(b_in=b_in)
    assert (delivered(b) == [PING]) is passes
    assert b.counters.policy_dropped == (0 if passes else 1)
