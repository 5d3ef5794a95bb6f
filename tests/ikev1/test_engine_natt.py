"""NAT traversal (RFC 3947) between engines, with a NAT simulated in the in-memory wire."""

from __future__ import annotations

import pytest

from ikev1.engine import Engine
from ikev1.events import Phase1Up, Phase2Up
from ikev1.natt import KEEPALIVE

from .harness import B, events, make_config, of_type, seeded

A_PRIV = "198.19.0.1"  # a's own address, behind the NAT
A_PUB = "198.18.0.1"  # what b sees
SHIFT = 10000  # the NAT maps a's port p to p + SHIFT


def nat_pair(a_remote: dict | None = None, b_remote: dict | None = None,
             *, a_local: str = A_PRIV) -> tuple[Engine, Engine]:
    natt = {"nat_traversal": "on"}
    a = Engine(make_config(a_local, B, remote={**natt, **(a_remote or {})}), rng=seeded(11))
    b = Engine(make_config(B, A_PUB, remote={**natt, **(b_remote or {})}), rng=seeded(12))
    return a, b


def pump_nat(a: Engine, b: Engine, now: float, *, nat: bool = True) -> list:
    """Carry datagrams; a's source (address, port) is rewritten on the way out and back."""
    wire = []
    for _ in range(40):
        moved = False
        for dgram, (laddr, lport), peer in a.datagrams_to_send():
            moved = True
            src = (A_PUB, lport + SHIFT) if nat else (laddr, lport)
            wire.append(("a", dgram, lport, peer[1]))
            b.receive_datagram(dgram, peer, src, now)
        for dgram, local, (paddr, pport) in b.datagrams_to_send():
            moved = True
            dst = (A_PRIV, pport - SHIFT) if nat else (paddr, pport)
            wire.append(("b", dgram, local[1], pport))
            a.receive_datagram(dgram, dst, local, now)
        if not moved:
            return wire
    raise AssertionError("no quiet")


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_nat_detected_float_and_udp_encapsulation(mode):
    modes = {"exchange_mode": (mode,)}
    a, b = nat_pair(modes, modes)
    a.initiate(B, 0.0)
    wire = pump_nat(a, b, 0.0)
    ea, eb = events(a), events(b)
    assert of_type(ea, Phase1Up) and of_type(eb, Phase1Up)
    sa_a, sa_b = a.phase1_sas()[0], b.phase1_sas()[0]
    assert (sa_a["nat_traversal"], sa_a["nat_local"], sa_a["nat_peer"]) == ("rfc", True, False)
    assert (sa_b["nat_local"], sa_b["nat_peer"]) == (False, True)
    assert sa_a["src_port"] == 4500 and sa_b["dst_port"] == 4500 + SHIFT
    first_float = 4 if mode == "main" else 2  # MM5 / AM3 go to port 4500 (RFC 3947 §4)
    assert [w[2] for w in wire[:first_float]] == [500] * first_float
    assert all(w[2] == 4500 and w[1][:4] == bytes(4) for w in wire[first_float:])
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert ua.encapsulation == ub.encapsulation == "udp"
    assert ua.encap_ports == (4500, 4500) and ub.encap_ports == (4500, 4500 + SHIFT)
    def keys(k):
        return (k.spi, k.enc_key, k.auth_key)

    # addresses differ across the NAT; SPIs and keys must mirror
    assert keys(ua.outbound) == keys(ub.inbound) and keys(ua.inbound) == keys(ub.outbound)


def test_keepalives_from_the_side_behind_nat():
    a, b = nat_pair()
    a.initiate(B, 0.0)
    pump_nat(a, b, 0.0)
    a.handle_timer(19.9)
    assert a.datagrams_to_send() == []
    a.handle_timer(20.0)  # RFC 3948 §2.3 keepalive every natt_keepalive seconds
    out = [d for d in a.datagrams_to_send() if d[0] == KEEPALIVE]
    assert out == [(KEEPALIVE, (A_PRIV, 4500), (B, 4500))]
    b.receive_datagram(KEEPALIVE, (B, 4500), (A_PUB, 4500 + SHIFT), 20.0)
    assert b.counters["keepalives"] == 1 and b.counters["malformed"] == 0
    b.handle_timer(40.0)
    assert [d for d in b.datagrams_to_send() if d[0] == KEEPALIVE] == []


def test_no_nat_no_float():
    a, b = nat_pair(a_local=A_PUB)
    a.initiate(B, 0.0)
    wire = pump_nat(a, b, 0.0, nat=False)
    assert {w[2] for w in wire} == {500}
    (ua,) = of_type(events(a), Phase2Up)
    assert ua.encapsulation == "none" and ua.encap_ports is None
    assert a.phase1_sas()[0]["nat_traversal"] == "rfc"


def test_force_encapsulates_without_nat():
    a, b = nat_pair({"nat_traversal": "force"}, a_local=A_PUB)
    a.initiate(B, 0.0)
    pump_nat(a, b, 0.0, nat=False)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.encapsulation == ub.encapsulation == "udp"


def test_peer_without_natt_keeps_plain_ike():
    a, b = nat_pair(b_remote={"nat_traversal": "off"}, a_local=A_PUB)
    a.initiate(B, 0.0)
    pump_nat(a, b, 0.0, nat=False)
    assert a.phase1_sas()[0]["nat_traversal"] is None
    assert of_type(events(a), Phase2Up)[0].encapsulation == "none"
