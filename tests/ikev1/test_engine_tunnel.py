"""ESP tunnel mode between subnets: two engines in memory, the initiator told the selectors
and the mode by its acquire, the responder taking a tunnel only where a policy of its SPD or
its remote's `generate_policy` allows it (racoon's get_proposal_r())."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from ikev1 import natt as natt_mod
from ikev1.codec import (
    HEADER_LEN,
    IdPayload,
    NatOaPayload,
    NotifyPayload,
    SaPayload,
    decode_header,
)
from ikev1.constants import NON_ESP_MARKER, Encap, Exchange, IdType, Notify, P2Attr
from ikev1.engine import Engine
from ikev1.events import NegotiationFailed, Phase1Up, Phase2Up, SaDeleted
from ikev1.policy import Phase2Route, TrafficSelector

from .harness import A, B, advance, events, make_config, of_type, pump, relay, seeded
from .test_engine_natt import A_PRIV, nat_pair, pump_nat

LAN_A, LAN_B = "10.1.0.0/24", "10.2.0.0/24"
A6, B6 = "2001:db8::1", "2001:db8::2"
LAN6_A, LAN6_B = "fd00:1::/64", "fd00:2::/64"


def sel(net: str, proto: int = 0, port: int = 0) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(net), proto, port)


def route(local: str, remote: str, local_end: str | None = None,
          remote_end: str | None = None, **kw) -> Phase2Route:
    return Phase2Route(sel(local), sel(remote), "tunnel", local_end, remote_end, **kw)


def engines(a_local: str = A, b_local: str = B, *, policies: tuple = (), b_remote=None,
            a_kw=None, b_kw=None) -> tuple[Engine, Engine]:
    """a initiates; b holds `policies` (its `out` policies: local is b's side)."""
    a = Engine(make_config(a_local, b_local, **(a_kw or {})), rng=seeded(31))
    b_cfg = make_config(b_local, a_local, remote=b_remote, **(b_kw or {}))
    b = Engine(dataclasses.replace(b_cfg, policies=policies), rng=seeded(32))
    return a, b


B_POLICY = (route(LAN_B, LAN_A, B, A),)


def tunnel(a: Engine, b: Engine, local: str = LAN_A, remote: str = LAN_B, now: float = 0.0,
           peer: str = B) -> list[tuple[bytes, str]]:
    """a's acquire for a tunnel, carried to the end; the wire as (datagram, sender)."""
    a.initiate(peer, now, sel(local), sel(remote), mode="tunnel")
    wire: list[tuple[bytes, str]] = []
    relay(a, b, now, lambda d, lo, pe: wire.append((d, lo[0])) or [d])
    return wire


def sent_by(wire: list[tuple[bytes, str]], sender: str) -> list[bytes]:
    return [d for d, src in wire if src == sender]


def quick_first(eng: Engine, datagrams: list[bytes]) -> list:
    """The payloads of the first quick-mode message among `datagrams`, decrypted with `eng`'s
    ISAKMP SA (its IV comes from the ISAKMP SA's, RFC 2409 App. B)."""
    for dgram in datagrams:
        data = dgram[4:] if dgram[:4] == NON_ESP_MARKER else dgram
        if len(data) < HEADER_LEN:
            continue
        hdr = decode_header(data)
        if hdr.exchange == Exchange.QUICK:
            p1 = eng._by_cookies[(hdr.icookie, hdr.rcookie)]
            payloads, _, _ = eng._decrypt(p1, hdr, data[:hdr.length],
                                          eng._qm_iv(p1, hdr.message_id))
            return payloads
    raise AssertionError("no quick mode on the wire")


def encaps(payloads: list) -> set[int]:
    (sa,) = [pl for pl in payloads if isinstance(pl, SaPayload)]
    return {tr.attrs()[P2Attr.ENCAPSULATION] for prop in sa.proposals for tr in prop.transforms}


def notifies(eng: Engine, datagrams: list[bytes]) -> list[int]:
    """The notify types in the informational exchanges among `datagrams`, decrypted by `eng`."""
    out = []
    for dgram in datagrams:
        hdr = decode_header(dgram)
        if hdr.exchange != Exchange.INFORMATIONAL:
            continue
        p1 = eng._by_cookies[(hdr.icookie, hdr.rcookie)]
        payloads, _, _ = eng._decrypt(p1, hdr, dgram[:hdr.length],
                                      eng._qm_iv(p1, hdr.message_id))
        out += [pl.msg_type for pl in payloads if isinstance(pl, NotifyPayload)]
    return out


# --- a policy allows it ------------------------------------------------------------------


def test_a_tunnel_a_policy_allows_comes_up_in_tunnel_mode_with_the_subnets():
    a, b = engines(policies=B_POLICY)
    wire = tunnel(a, b)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.mode == ub.mode == "tunnel" and ua.encapsulation == "none"
    assert (ua.local_selector, ua.remote_selector) == ((LAN_A, 0, 0), (LAN_B, 0, 0))
    assert (ub.local_selector, ub.remote_selector) == ((LAN_B, 0, 0), (LAN_A, 0, 0))
    assert not ua.generated_policy and not ub.generated_policy
    assert (ua.outbound.src, ua.outbound.dst) == (A, B) and ua.outbound == ub.inbound
    assert [s["mode"] for s in a.phase2_sas() + b.phase2_sas()] == ["tunnel", "tunnel"]
    qm1 = quick_first(b, sent_by(wire, A))
    assert encaps(qm1) == {Encap.TUNNEL}  # RFC 2407 §4.5: 1
    idci, idcr = [pl for pl in qm1 if isinstance(pl, IdPayload)]
    # RFC 2407 §4.6.2.1: ID_IPV4_ADDR_SUBNET (4), protocol any, port any, address then mask
    assert idci.encode_body().hex() == "040000000a010000ffffff00"
    assert idcr.encode_body().hex() == "040000000a020000ffffff00"


def test_transport_mode_is_unchanged_without_policies():
    a, b = engines()
    a.initiate(B, 0.0)
    pump(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.mode == ub.mode == "transport" and not ub.generated_policy


def test_single_hosts_go_as_address_ids():
    a, b = engines(policies=(route("10.2.0.7/32", "10.1.0.5/32"),))
    wire = tunnel(a, b, "10.1.0.5/32", "10.2.0.7/32")
    assert of_type(events(b), Phase2Up)[0].mode == "tunnel"
    ids = [pl for pl in quick_first(b, sent_by(wire, A)) if isinstance(pl, IdPayload)]
    assert [(pl.id_type, pl.data) for pl in ids] == [
        (IdType.IPV4_ADDR, bytes([10, 1, 0, 5])), (IdType.IPV4_ADDR, bytes([10, 2, 0, 7]))]


def test_an_id_inside_the_policy_is_covered():
    a, b = engines(policies=(route("10.2.0.0/16", "10.1.0.0/16"),))
    tunnel(a, b)
    assert of_type(events(b), Phase2Up)[0].remote_selector == (LAN_A, 0, 0)


# --- refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("policies", [
    (),  # no policy at all
    (route("10.9.0.0/24", LAN_A),),  # another of our subnets
    (route(LAN_B, "10.9.0.0/24"),),  # another of the peer's
    (route(LAN_B, "10.1.0.0/25"),),  # narrower than the peer's ID: it would get more
    (route(LAN_B, LAN_A, B, "198.18.0.9"),),  # a tunnel to another gateway
    (route(LAN_B, LAN_A, "198.18.0.9", A),),  # from another of our addresses
    (Phase2Route(sel(LAN_B, 6), sel(LAN_A, 6)),),  # TCP only; the ID asks for every protocol
    (Phase2Route(sel(LAN_B), sel(LAN_A), "transport"),),  # a transport policy
], ids=["none", "our-subnet", "their-subnet", "narrower", "other-gateway", "other-local",
        "protocol", "transport"])
def test_a_tunnel_no_policy_allows_is_refused_with_no_proposal_chosen(policies):
    a, b = engines(policies=policies)
    wire = tunnel(a, b)
    ea, eb = events(a), events(b)
    assert not of_type(ea, Phase2Up) and not of_type(eb, Phase2Up)
    assert [(f.phase, f.reason) for f in of_type(eb, NegotiationFailed)] == [
        (2, "NO-PROPOSAL-CHOSEN")]
    assert notifies(a, sent_by(wire, B)) == [Notify.NO_PROPOSAL_CHOSEN]
    assert b.phase2_sas() == [] and a.phase2_sas() == []
    assert of_type(ea, Phase1Up)  # the ISAKMP SA itself stays


def test_generate_policy_takes_the_peers_selectors_and_says_so():
    a, b = engines(b_remote={"generate_policy": "require"})
    tunnel(a, b)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ub.mode == "tunnel" and ub.generated_policy and not ua.generated_policy
    assert (ub.local_selector, ub.remote_selector) == ((LAN_B, 0, 0), (LAN_A, 0, 0))


def test_generate_policy_is_not_claimed_where_a_policy_covers_the_tunnel():
    a, b = engines(policies=B_POLICY, b_remote={"generate_policy": "unique"})
    tunnel(a, b)
    assert not of_type(events(b), Phase2Up)[0].generated_policy


def test_a_tunnel_between_the_ike_addresses_still_sends_the_ids():
    a, b = engines(b_remote={"generate_policy": "require"})
    a.initiate(B, 0.0, mode="tunnel")
    wire: list[tuple[bytes, str]] = []
    relay(a, b, 0.0, lambda d, lo, pe: wire.append((d, lo[0])) or [d])
    ids = [pl for pl in quick_first(b, sent_by(wire, A)) if isinstance(pl, IdPayload)]
    assert [(pl.id_type, str(ipaddress.ip_address(pl.data))) for pl in ids] == [
        (IdType.IPV4_ADDR, A), (IdType.IPV4_ADDR, B)]
    assert of_type(events(b), Phase2Up)[0].local_selector == (f"{B}/32", 0, 0)


def test_ids_of_two_families_are_refused():
    a, b = engines(b_remote={"generate_policy": "require"})
    a.initiate(B, 0.0, sel(LAN_A), sel(LAN6_B), mode="tunnel")
    relay(a, b, 0.0)
    assert [f.reason for f in of_type(events(b), NegotiationFailed)] == [
        "INVALID-ID-INFORMATION"]


# --- ranges ------------------------------------------------------------------------------


def _range_ids(monkeypatch, first: str, last: str) -> None:
    """The initiator sends its own selector as an ID_IPV4_ADDR_RANGE from `first` to `last`
    (pyike never sends ranges; strongSwan does for selectors that are no subnet)."""
    import ikev1.quick as quick_mod

    plain = quick_mod.selector_payload

    def payload(s: TrafficSelector) -> IdPayload:
        if str(s.network) != LAN_A:
            return plain(s)
        data = ipaddress.ip_address(first).packed + ipaddress.ip_address(last).packed
        return IdPayload(IdType.IPV4_ADDR_RANGE, s.protocol, s.port, data)

    monkeypatch.setattr(quick_mod, "selector_payload", payload)


def test_a_range_that_is_one_subnet_is_taken_as_that_subnet(monkeypatch):
    _range_ids(monkeypatch, "10.1.0.0", "10.1.0.255")
    a, b = engines(policies=B_POLICY)
    wire = tunnel(a, b)
    idci = [pl for pl in quick_first(b, sent_by(wire, A)) if isinstance(pl, IdPayload)][0]
    assert idci.encode_body().hex() == "070000000a0100000a0100ff"  # RFC 2407 §4.6.2.1: 7
    (ub,) = of_type(events(b), Phase2Up)
    assert ub.remote_selector == (LAN_A, 0, 0) and of_type(events(a), Phase2Up)


def test_a_range_that_is_no_subnet_is_refused(monkeypatch):
    _range_ids(monkeypatch, "10.1.0.1", "10.1.0.255")
    a, b = engines(policies=B_POLICY)
    wire = tunnel(a, b)
    assert [f.reason for f in of_type(events(b), NegotiationFailed)] == [
        "INVALID-ID-INFORMATION"]
    assert notifies(a, sent_by(wire, B)) == [Notify.INVALID_ID_INFORMATION]
    assert not of_type(events(a), Phase2Up)


# --- NAT-T -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, value", [("rfc", Encap.UDP_TUNNEL),
                                         ("draft", Encap.UDP_TUNNEL_DRAFT)])
def test_under_a_nat_a_tunnel_is_udp_encapsulated_tunnel_mode(monkeypatch, kind, value):
    if kind == "draft":  # both ends know only the drafts' vendor IDs
        known = natt_mod.vendor.is_natt
        monkeypatch.setattr(natt_mod.vendor, "is_natt", lambda d: known(d) and "draft")
    a, b = nat_pair(b_remote={"generate_policy": "require"})
    a.initiate(B, 0.0, sel(LAN_A), sel(LAN_B), mode="tunnel")
    wire = pump_nat(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.mode == ub.mode == "tunnel" and ua.encapsulation == ub.encapsulation == "udp"
    assert b.phase1_sas()[0]["nat_traversal"] == kind
    qm1 = quick_first(b, [d for who, d, *_ in wire if who == "a"])
    assert encaps(qm1) == {value}  # RFC 3947 §5: 3; the drafts' 61443
    # NAT-OA is for transport mode's checksums only (racoon sends none in tunnel mode)
    assert not [pl for pl in qm1 if isinstance(pl, NatOaPayload)]


def test_under_a_nat_transport_mode_keeps_nat_oa():
    a, b = nat_pair()
    a.initiate(B, 0.0)
    wire = pump_nat(a, b, 0.0)
    qm1 = quick_first(b, [d for who, d, *_ in wire if who == "a"])
    assert encaps(qm1) == {Encap.UDP_TRANSPORT}
    # NAT-OAi, NAT-OAr: the addresses a sees (RFC 3947 §5.2)
    assert [pl.data for pl in qm1 if isinstance(pl, NatOaPayload)] == [
        ipaddress.ip_address(A_PRIV).packed, ipaddress.ip_address(B).packed]


# --- several subnet pairs over one ISAKMP SA ----------------------------------------------


def test_two_subnet_pairs_acquired_during_phase1_share_it():
    policies = (route(LAN_B, LAN_A), route("10.2.1.0/24", "10.1.1.0/24"))
    a, b = engines(policies=policies)
    a.initiate(B, 0.0, sel(LAN_A), sel(LAN_B), mode="tunnel")
    a.initiate(B, 0.0, sel("10.1.1.0/24"), sel("10.2.1.0/24"), mode="tunnel")
    a.initiate(B, 0.0, sel(LAN_A), sel(LAN_B), mode="tunnel")  # a repeat: the same acquire
    assert len(a._acquires[B]) == 2
    pump(a, b, 0.0)
    ea, eb = events(a), events(b)
    assert len(of_type(ea, Phase1Up)) == len(of_type(eb, Phase1Up)) == 1
    ups = of_type(ea, Phase2Up)
    assert sorted(u.local_selector[0] for u in ups) == [LAN_A, "10.1.1.0/24"]
    assert all(u.mode == "tunnel" for u in ups) and len(of_type(eb, Phase2Up)) == 2
    assert a.phase1_sas()[0]["phase2"] == 2 and len(b.phase2_sas()) == 2
    # a third pair once phase 1 is up: quick mode alone
    a.initiate(B, 1.0, sel("10.1.2.0/24"), sel("10.2.2.0/24"), mode="tunnel")
    b.config = dataclasses.replace(b.config, policies=(*policies, route("10.2.2.0/24",
                                                                        "10.1.2.0/24")))
    pump(a, b, 1.0)
    ea = events(a)
    assert not of_type(ea, Phase1Up) and len(of_type(ea, Phase2Up)) == 1
    assert len(a.phase1_sas()) == 1 and len(a.phase2_sas()) == 3


def test_a_live_tunnel_stops_its_acquire_but_not_other_modes():
    a, b = engines(policies=B_POLICY)
    tunnel(a, b)
    events(a), events(b)
    a.initiate(B, 1.0, sel(LAN_A), sel(LAN_B), mode="tunnel")  # covered: nothing sent
    assert a.datagrams_to_send() == []
    a.initiate(B, 1.0, sel(LAN_A), sel(LAN_B))  # transport for the same selectors: its own
    pump(a, b, 1.0)
    assert [u.mode for u in of_type(events(a), Phase2Up)] == ["transport"]


def test_an_unknown_mode_is_an_error():
    a, _b = engines()
    with pytest.raises(ValueError, match="tunnel"):
        a.initiate(B, 0.0, mode="beet")


# --- IPv6 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("peers, lans", [
    ((A6, B6), (LAN6_A, LAN6_B)), ((A6, B6), (LAN_A, LAN_B)), ((A, B), (LAN6_A, LAN6_B))],
    ids=["v6-over-v6", "v4-over-v6", "v6-over-v4"])
def test_tunnels_of_either_family_over_peers_of_either_family(peers, lans):
    (ia, ib), (la, lb) = peers, lans
    a, b = engines(ia, ib, policies=(route(lb, la, ib, ia),))
    wire = tunnel(a, b, la, lb, peer=ib)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.mode == ub.mode == "tunnel"
    assert (ub.local_selector[0], ub.remote_selector[0]) == (lb, la)
    assert (ua.outbound.src, ua.outbound.dst) == (ia, ib) and ua.outbound == ub.inbound
    ids = [pl for pl in quick_first(b, sent_by(wire, ia)) if isinstance(pl, IdPayload)]
    v6 = ":" in la
    assert {pl.id_type for pl in ids} == {IdType.IPV6_ADDR_SUBNET if v6 else
                                          IdType.IPV4_ADDR_SUBNET}
    if v6:  # RFC 2407 §4.6.2.1: 16 octets of address, 16 of mask
        assert ids[0].data == (ipaddress.ip_address("fd00:1::").packed
                               + ipaddress.ip_network(LAN6_A).netmask.packed)


def test_natt_over_ipv6_peers():
    natt = {"remote": {"nat_traversal": "force"}}
    a, b = engines(A6, B6, b_remote={"nat_traversal": "force", "generate_policy": "require"},
                   a_kw=natt)
    tunnel(a, b, LAN6_A, LAN6_B, peer=B6)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert ua.encapsulation == ub.encapsulation == "udp" and ua.mode == "tunnel"
    assert a.phase1_sas()[0]["nat_traversal"] == "rfc"
    assert a.phase1_sas()[0]["src_port"] == 4500


def test_no_local_address_of_the_peers_family_fails_instead_of_sending_from_another():
    a = Engine(make_config(A, B6), rng=seeded(33))
    a.initiate(B6, 0.0, sel(LAN6_A), sel(LAN6_B), mode="tunnel")
    assert a.datagrams_to_send() == []
    (fail,) = of_type(events(a), NegotiationFailed)
    assert fail.phase == 1 and "family" in fail.reason


# --- rekey keeps the mode and the selectors ------------------------------------------------


def _soft_rekey(a, b, ua):
    advance(a, b, 0.0, 80.0)


def _byte_rekey(a, b, ua):
    a.sa_soft_expired(ua.inbound.spi, 5.0)
    pump(a, b, 5.0)


def _isakmp_purge(a, b, ua):
    (p1,) = b._peer_p1(A)
    b._drop_p1(p1, 5.0, "deleted", notify_peer=True)  # racoon's purge on its ISAKMP delete
    pump(a, b, 5.0)


@pytest.mark.parametrize("renew", [_soft_rekey, _byte_rekey, _isakmp_purge],
                         ids=["soft-lifetime", "byte-lifetime", "isakmp-delete"])
def test_a_renewed_tunnel_is_a_tunnel_for_the_same_subnets(renew):
    life = {"sainfo": {"lifetime_s": 100}}
    a, b = engines(policies=B_POLICY, a_kw=life, b_kw=life)
    tunnel(a, b)
    (ua,), _ = of_type(events(a), Phase2Up), events(b)
    wire = []
    real = a.datagrams_to_send

    def spy():
        out = real()
        wire.extend(out)
        return out

    a.datagrams_to_send = spy
    renew(a, b, ua)
    ea, eb = events(a), events(b)
    (na,), (nb,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert na.mode == nb.mode == "tunnel"
    assert (na.local_selector, na.remote_selector) == (ua.local_selector, ua.remote_selector)
    assert (nb.local_selector, nb.remote_selector) == ((LAN_B, 0, 0), (LAN_A, 0, 0))
    if renew is not _isakmp_purge:
        assert na.rekey_of == ua.inbound.spi and nb.rekey_of is not None
        assert of_type(ea, SaDeleted)[0].reason == "rekeyed"
    payloads = quick_first(b, [d for d, _lo, _pe in wire])
    assert encaps(payloads) == {Encap.TUNNEL}
    assert len([pl for pl in payloads if isinstance(pl, IdPayload)]) == 2
