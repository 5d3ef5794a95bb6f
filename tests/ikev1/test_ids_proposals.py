"""Client IDs, sainfo lookup and racoon's proposal building and choice, without an engine."""

from __future__ import annotations

import ipaddress

import pytest

from ikev1.codec import IdPayload, Proposal, SaPayload, Transform
from ikev1.constants import Encap, IdType, P1Attr, P2Attr
from ikev1.ids import find_sainfo, identity_payload, payload_selector, selector_payload
from ikev1.policy import (
    Identity,
    Phase1Proposal,
    Phase2Policy,
    RemotePolicy,
    TrafficSelector,
)
from ikev1.proposals import (
    parse_phase2_transform,
    phase1_sa,
    phase2_proposals,
    select_phase1,
    select_phase2,
)


def sel(net: str, proto: int = 47) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(net), proto, 0)


@pytest.mark.parametrize("net, id_type", [
    ("198.18.0.1/32", IdType.IPV4_ADDR), ("10.1.0.0/16", IdType.IPV4_ADDR_SUBNET),
    ("2001:db8::1/128", IdType.IPV6_ADDR), ("2001:db8::/64", IdType.IPV6_ADDR_SUBNET),
])
def test_selector_ids_round_trip(net, id_type):
    pl = selector_payload(sel(net))
    assert pl.id_type == id_type and (pl.protocol, pl.port) == (47, 0)
    assert payload_selector(pl) == sel(net)


def test_gre_transport_id_bytes():
    # RFC 2407 §4.6.2: type 1 (IPV4_ADDR), protocol 47 (GRE), port 0, then the address
    assert selector_payload(sel("198.18.0.1/32")).encode_body().hex() == "012f0000c6120001"


def test_bad_ids_refused():
    assert payload_selector(IdPayload(IdType.IPV4_ADDR_SUBNET, 0, 0, bytes(7))) is None
    assert payload_selector(IdPayload(IdType.IPV4_ADDR_SUBNET, 0, 0,
                                      bytes([10, 0, 0, 1, 255, 255, 255, 0]))) is None
    assert payload_selector(IdPayload(IdType.FQDN, 0, 0, b"x")) is None


@pytest.mark.parametrize("first, last, net", [
    ("10.1.0.0", "10.1.0.255", "10.1.0.0/24"), ("10.1.0.7", "10.1.0.7", "10.1.0.7/32"),
    ("0.0.0.0", "255.255.255.255", "0.0.0.0/0"), ("fd00:1::", "fd00:1::ffff:ffff:ffff:ffff",
                                                  "fd00:1::/64"),
    ("10.1.0.1", "10.1.0.255", None), ("10.1.0.0", "10.1.1.127", None),
    ("10.1.0.255", "10.1.0.0", None)])
def test_a_range_id_is_taken_only_as_one_subnet(first, last, net):
    lo, hi = ipaddress.ip_address(first), ipaddress.ip_address(last)
    kind = IdType.IPV4_ADDR_RANGE if lo.version == 4 else IdType.IPV6_ADDR_RANGE
    got = payload_selector(IdPayload(kind, 6, 80, lo.packed + hi.packed))
    assert got == (None if net is None else TrafficSelector(ipaddress.ip_network(net), 6, 80))


def test_ids_of_the_wrong_length_or_mask_are_refused():
    v6 = ipaddress.ip_address("fd00::1").packed
    assert payload_selector(IdPayload(IdType.IPV4_ADDR, 0, 0, v6)) is None  # no IPv6 from v4
    assert payload_selector(IdPayload(IdType.IPV6_ADDR, 0, 0, bytes(4))) is None
    gappy = bytes(16) + bytes.fromhex("ffff00ff" + "00" * 12)  # not contiguous
    assert payload_selector(IdPayload(IdType.IPV6_ADDR_SUBNET, 0, 0, gappy)) is None
    mask64 = bytes.fromhex("ff" * 8 + "00" * 8)
    assert payload_selector(IdPayload(IdType.IPV6_ADDR_SUBNET, 0, 0, v6 + mask64)) is None
    ok = ipaddress.ip_address("fd00::").packed + mask64
    assert payload_selector(IdPayload(IdType.IPV6_ADDR_SUBNET, 0, 0, ok)) == sel("fd00::/64", 0)
    assert payload_selector(IdPayload(IdType.IPV4_ADDR_RANGE, 0, 0, bytes(7))) is None


def test_phase1_identity():
    assert identity_payload(None, "198.18.0.1").encode_body().hex() == "011101f4c6120001"
    fq = identity_payload(Identity("fqdn", "gw.example"), "198.18.0.1")
    assert (fq.id_type, fq.data) == (IdType.FQDN, b"gw.example")


def test_sainfo_exact_match_beats_anonymous():
    anon = Phase2Policy()
    exact = Phase2Policy(local_id=sel("198.18.0.1/32"), remote_id=sel("198.18.0.2/32"),
                         pfs_group=5)
    sainfos = (anon, exact)
    assert find_sainfo(sainfos, sel("198.18.0.1/32"), sel("198.18.0.2/32"), None) is exact
    assert find_sainfo(sainfos, sel("198.18.0.1/32", 0), sel("198.18.0.2/32"), None) is anon
    assert find_sainfo((exact,), sel("198.18.0.9/32"), sel("198.18.0.2/32"), None) is None


def test_sainfo_subnets_and_protocols_as_racoon_compares_them():
    """racoon's getsainfo()/ipsecdoi_chkcmpids(): the same network and the same protocol, `any`
    (0) matching only 0; an address ID and a /32 subnet alike."""
    subnets = Phase2Policy(local_id=sel("10.1.0.0/24", 0), remote_id=sel("10.2.0.0/24", 0))
    gre = Phase2Policy(local_id=sel("10.1.0.0/24"), remote_id=sel("10.2.0.0/24"))
    both = (subnets, gre)
    assert find_sainfo(both, sel("10.1.0.0/24", 0), sel("10.2.0.0/24", 0), None) is subnets
    assert find_sainfo(both, sel("10.1.0.0/24"), sel("10.2.0.0/24"), None) is gre
    assert find_sainfo((gre,), sel("10.1.0.0/24", 0), sel("10.2.0.0/24", 0), None) is None
    assert find_sainfo((subnets,), sel("10.1.0.0/24", 6), sel("10.2.0.0/24", 6), None) is None
    # neither a narrower nor a wider ID is the same ID
    assert find_sainfo(both, sel("10.1.0.0/25", 0), sel("10.2.0.0/24", 0), None) is None
    assert find_sainfo(both, sel("10.1.0.0/16", 0), sel("10.2.0.0/24", 0), None) is None
    host = Phase2Policy(local_id=sel("10.1.0.5/32", 0), remote_id=sel("10.2.0.7/32", 0))
    address_ids = payload_selector(IdPayload(IdType.IPV4_ADDR, 0, 0, bytes([10, 1, 0, 5])))
    assert find_sainfo((host,), address_ids, sel("10.2.0.7/32", 0), None) is host


def test_sainfo_ports_any_takes_every_port_and_a_port_its_own():
    anyport = Phase2Policy(local_id=sel("10.1.0.0/24", 6), remote_id=sel("10.2.0.0/24", 6))
    web = Phase2Policy(local_id=TrafficSelector(ipaddress.ip_network("10.1.0.0/24"), 6, 80),
                       remote_id=sel("10.2.0.0/24", 6))
    port80 = TrafficSelector(ipaddress.ip_network("10.1.0.0/24"), 6, 80)
    assert find_sainfo((anyport,), port80, sel("10.2.0.0/24", 6), None) is anyport
    assert find_sainfo((web,), port80, sel("10.2.0.0/24", 6), None) is web
    assert find_sainfo((web,), sel("10.1.0.0/24", 6), sel("10.2.0.0/24", 6), None) is None


def test_sainfo_order_is_racoons_weight_then_the_file():
    """racoon's inssainfo()/prisainfo(): `from` ID 3, each named side 1, file order among
    equals; a side `anonymous` takes any ID."""
    local, remote = sel("10.1.0.0/24", 0), sel("10.2.0.0/24", 0)
    anon = Phase2Policy(pfs_group=1)
    half = Phase2Policy(local_id=local, pfs_group=2)  # `sainfo address ... anonymous`
    exact = Phase2Policy(local_id=local, remote_id=remote, pfs_group=5)
    exact2 = Phase2Policy(local_id=local, remote_id=remote, pfs_group=14)
    gw = Identity("fqdn", "gw.example")
    from_gw = Phase2Policy(peer_identity=gw, pfs_group=15)  # `sainfo anonymous from fqdn ...`
    order = (anon, half, exact, exact2, from_gw)
    assert find_sainfo(order, local, remote, "gw.example") is from_gw
    assert find_sainfo(order, local, remote, "other") is exact
    assert find_sainfo((anon, half), local, sel("10.9.0.0/24", 0), None) is half
    assert find_sainfo((anon, half), sel("10.9.0.0/24", 0), remote, None) is anon


def test_phase2_proposal_is_enc_times_auth_in_config_order():
    sa = Phase2Policy(encryption=(("aes", 256), ("3des", None)),
                      authentication=("hmac_sha1", "hmac_md5"), pfs_group=2, lifetime_s=600)
    (prop,) = phase2_proposals(sa, b"\x00\x00\x10\x01")
    suites = [parse_phase2_transform(t) for t in prop.transforms]
    assert [(s.encryption, s.authentication) for s in suites] == [
        ("aes", "hmac_sha1"), ("aes", "hmac_md5"), ("3des", "hmac_sha1"), ("3des", "hmac_md5")]
    assert all(s.pfs_group == 2 and s.lifetime_s == 600 and s.encap == Encap.TRANSPORT
               for s in suites)
    assert [t.number for t in prop.transforms] == [1, 2, 3, 4]


def _esp(*attrs, tid=12):
    return Proposal(1, 3, b"\x00\x00\x20\x00", (Transform(1, tid, attrs),))


def test_phase2_choice_life_in_four_bytes_and_kilobytes():
    prop = _esp((P2Attr.LIFE_TYPE, 1), (P2Attr.LIFE_DURATION, b"\x00\x00\x0e\x10"),
                (P2Attr.LIFE_TYPE, 2), (P2Attr.LIFE_DURATION, b"\x00\x01\x86\xa0"),
                (P2Attr.ENCAPSULATION, 2), (P2Attr.AUTH_ALG, 2), (P2Attr.KEY_LENGTH, 128))
    choice = select_phase2((prop,), Phase2Policy(lifetime_s=3600), "strict", (Encap.TRANSPORT,))
    assert choice is not None
    assert (choice.suite.lifetime_s, choice.suite.lifetime_kb) == (3600, 100000)
    assert choice.responder_lifetime is None


def test_phase2_choice_refuses_bundles_and_tunnel():
    tunnel = _esp((P2Attr.ENCAPSULATION, 1), (P2Attr.AUTH_ALG, 2))
    assert select_phase2((tunnel,), Phase2Policy(), "obey", (Encap.TRANSPORT,)) is None
    esp = _esp((P2Attr.ENCAPSULATION, 2), (P2Attr.AUTH_ALG, 2))
    ipcomp = Proposal(1, 4, b"\x00\x01", (Transform(1, 2, ()),))
    assert select_phase2((esp, ipcomp), Phase2Policy(), "obey", (Encap.TRANSPORT,)) is None


def test_phase1_choice_respects_group_and_key_length():
    remote = RemotePolicy("198.18.0.2", (Phase1Proposal("aes", "sha1", 14, key_length=256),))
    offered = phase1_sa(RemotePolicy("x", (Phase1Proposal("aes", "sha1", 14),
                                           Phase1Proposal("aes", "sha1", 14, key_length=256))))
    prop, suite = select_phase1(offered, remote)
    assert prop.transforms[0].attrs()[P1Attr.KEY_LENGTH] == 256 and suite.key_bits == 256
    other = SaPayload((Proposal(1, 1, b"", (Transform(1, 1, ((P1Attr.ENCRYPTION, 7),)),)),))
    assert select_phase1(other, remote) is None


@pytest.mark.parametrize("check, peer_bits, ours, accepted", [
    ("strict", 256, 128, True), ("strict", 128, 256, False), ("claim", 192, 128, True),
    ("exact", 256, 128, False), ("exact", 256, 256, True), ("obey", 128, 256, True),
])
def test_phase2_key_length_under_proposal_check(check, peer_bits, ours, accepted):
    prop = _esp((P2Attr.LIFE_TYPE, 1), (P2Attr.LIFE_DURATION, 3600), (P2Attr.ENCAPSULATION, 2),
                (P2Attr.AUTH_ALG, 2), (P2Attr.KEY_LENGTH, peer_bits))
    choice = select_phase2((prop,), Phase2Policy(encryption=(("aes", ours),)), check,
                           (Encap.TRANSPORT,))
    assert (choice is not None) == accepted
    if choice:
        assert choice.suite.key_bits == peer_bits  # the initiator's key length is used


def test_unspecified_encapsulation_is_transport_as_racoon():
    # no life attributes either: RFC 2407 §4.5's 28800 s default, shorter under obey only
    choice = select_phase2((_esp((P2Attr.AUTH_ALG, 2)),), Phase2Policy(), "obey",
                           (Encap.TRANSPORT,))
    assert choice is not None and choice.suite.mode == "transport"


def test_phase2_choice_skips_a_pfs_group_pyike_cannot_compute():
    life = ((P2Attr.LIFE_TYPE, 1), (P2Attr.LIFE_DURATION, 3600))
    ec2n = _esp(*life, (P2Attr.GROUP_DESC, 3), (P2Attr.ENCAPSULATION, 2), (P2Attr.AUTH_ALG, 2))
    modp = _esp(*life, (P2Attr.GROUP_DESC, 14), (P2Attr.ENCAPSULATION, 2), (P2Attr.AUTH_ALG, 2))
    no_pfs = Phase2Policy()  # without PFS of its own the responder takes the peer's group
    assert select_phase2((ec2n,), no_pfs, "strict", (Encap.TRANSPORT,)) is None
    second = Proposal(2, modp.protocol, modp.spi, modp.transforms)
    choice = select_phase2((ec2n, second), no_pfs, "strict", (Encap.TRANSPORT,))
    assert choice is not None and choice.suite.pfs_group == 14
