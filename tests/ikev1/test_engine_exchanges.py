"""Two engines in memory: main mode, aggressive mode and quick mode, both roles."""

from __future__ import annotations

import dataclasses

import pytest

from ikev1.constants import Exchange, Flag
from ikev1.engine import Engine
from ikev1.events import NegotiationFailed, Phase1Up, Phase2Up, Refused
from ikev1.policy import Phase1Proposal, RetransmitTimer

from .harness import (
    A,
    B,
    advance,
    events,
    gre_selector,
    make_config,
    of_type,
    pair,
    pump,
    relay,
    seeded,
)


def _up(a, b, now=0.0, **kw):
    a.initiate(B, now, gre_selector(A), gre_selector(B))
    pump(a, b, now, **kw)
    return events(a), events(b)


def assert_mirrored(ua: Phase2Up, ub: Phase2Up) -> None:
    assert ua.outbound == ub.inbound and ua.inbound == ub.outbound
    assert ua.inbound.spi != ua.outbound.spi
    assert ua.inbound.enc_key != ua.outbound.enc_key
    assert ua.inbound.auth_key != ua.outbound.auth_key


def test_main_mode_then_quick_mode_with_pfs():
    a, b = pair()
    ea, eb = _up(a, b)
    (pa,), (pb,) = of_type(ea, Phase1Up), of_type(eb, Phase1Up)
    assert pa.initiator and not pb.initiator and pa.exchange == "main"
    assert (pa.icookie, pa.rcookie) == (pb.icookie, pb.rcookie)
    assert pa.encryption == "aes-128" and pa.dh_group == 2 and pa.lifetime_s == 86400
    assert pa.peer_identity == B and pb.peer_identity == A
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert_mirrored(ua, ub)
    assert ua.initiator and not ub.initiator
    assert ua.pfs_group == ub.pfs_group == 2
    assert ua.local_selector == (f"{A}/32", 47, 0) and ua.remote_selector == (f"{B}/32", 47, 0)
    assert ub.local_selector == (f"{B}/32", 47, 0)
    assert ua.inbound.enc_alg == "aes-cbc" and len(ua.inbound.enc_key) == 16
    assert ua.inbound.auth_alg == "hmac-sha1" and len(ua.inbound.auth_key) == 20
    assert ua.mode == "transport" and ua.encapsulation == "none" and ua.lifetime_s == 3600
    assert ua.outbound.src == A and ua.outbound.dst == B
    assert a.phase1_sas()[0]["phase2"] == 1 and len(b.phase2_sas()) == 1


def test_quick_mode_without_pfs_and_without_ids():
    a, b = pair({"sainfo": {"pfs_group": None}}, {"sainfo": {"pfs_group": None}})
    a.initiate(B, 0.0)
    pump(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert_mirrored(ua, ub)
    assert ua.pfs_group is None
    assert ua.local_selector == (f"{A}/32", 0, 0)


def test_responder_side_initiates_too():
    a, b = pair()
    b.initiate(A, 0.0, gre_selector(B), gre_selector(A))
    pump(a, b, 0.0)
    (ub,) = of_type(events(b), Phase2Up)
    (ua,) = of_type(events(a), Phase2Up)
    assert ub.initiator and not ua.initiator
    assert_mirrored(ub, ua)


def test_second_acquire_reuses_phase1():
    a, b = pair()
    _up(a, b)
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))  # covered by the live pair: ignored
    assert a.datagrams_to_send() == []
    a.initiate(B, 1.0)  # other selectors (IKE addresses, any protocol): a new pair
    pump(a, b, 1.0)
    ea, eb = events(a), events(b)
    assert not of_type(ea, Phase1Up) and len(of_type(ea, Phase2Up)) == 1
    assert of_type(eb, Phase2Up)[0].rekey_of is None
    assert len(a.phase1_sas()) == 1 and len(b.phase2_sas()) == 2


@pytest.mark.parametrize("enc, bits, hsh", [
    ("3des", None, "md5"), ("aes", 192, "sha256"), ("aes", 256, "sha384"),
    ("aes", 128, "sha512"),
])
def test_phase1_algorithms(enc, bits, hsh):
    props = (Phase1Proposal(enc, hsh, 14, key_length=bits, lifetime_s=86400),)
    a, b = pair({"proposals": props}, {"proposals": props})
    ea, eb = _up(a, b)
    assert of_type(ea, Phase1Up)[0].hash == hsh
    assert_mirrored(of_type(ea, Phase2Up)[0], of_type(eb, Phase2Up)[0])


def test_responder_takes_first_acceptable_proposal_in_peer_order():
    ours = (Phase1Proposal("3des", "md5", 2, lifetime_s=86400),
            Phase1Proposal("aes", "sha1", 14, key_length=256, lifetime_s=86400))
    theirs = (Phase1Proposal("aes", "sha1", 14, key_length=256, lifetime_s=86400),
              Phase1Proposal("3des", "md5", 2, lifetime_s=86400))
    a, b = pair({"proposals": ours}, {"proposals": theirs})
    ea, _ = _up(a, b)
    up = of_type(ea, Phase1Up)[0]
    assert (up.encryption, up.dh_group) == ("3des", 2)


def test_esp_transforms_enc_x_auth():
    sainfo = {"encryption": (("3des", None), ("aes", 256)),
              "authentication": ("hmac_md5", "hmac_sha256")}
    a, b = pair({"sainfo": sainfo}, {"sainfo": {"encryption": (("aes", 256),),
                                                "authentication": ("hmac_sha256",)}})
    ea, eb = _up(a, b)
    ua = of_type(ea, Phase2Up)[0]
    assert ua.inbound.enc_alg == "aes-cbc" and len(ua.inbound.enc_key) == 32
    assert ua.inbound.auth_alg == "hmac-sha256" and len(ua.inbound.auth_key) == 32
    assert_mirrored(ua, of_type(eb, Phase2Up)[0])


def test_aggressive_mode():
    a, b = pair({"remote": {"exchange_mode": ("aggressive",)}},
                {"remote": {"exchange_mode": ("aggressive", "main")}})
    ea, eb = _up(a, b)
    (pa,), (pb,) = of_type(ea, Phase1Up), of_type(eb, Phase1Up)
    assert pa.exchange == pb.exchange == "aggressive"
    assert_mirrored(of_type(ea, Phase2Up)[0], of_type(eb, Phase2Up)[0])


def test_aggressive_psk_by_identifier():
    from ikev1.policy import Identity
    ident = Identity("fqdn", "gw-a.example")
    a, b = pair({"remote": {"exchange_mode": ("aggressive",), "my_identifier": ident}},
                {"remote": {"exchange_mode": ("aggressive",)}})
    b.config = type(b.config)(**{**b.config.__dict__, "psk": {"gw-a.example": b"by-name"}})
    a.config = type(a.config)(**{**a.config.__dict__, "psk": {B: b"by-name"}})
    ea, eb = _up(a, b)
    assert of_type(eb, Phase1Up)[0].peer_identity == "gw-a.example"
    assert of_type(ea, Phase2Up)


def test_wrong_psk_fails_authentication():
    a, b = pair({"psk": b"one"}, {"psk": b"two"})
    ea, eb = _up(a, b)
    assert not ea and not eb  # message 5 is dropped like a forgery; the exchange waits
    advance(a, b, 0.0, 60.0)  # 5 resends 10 s apart, then 10 s more
    ea, eb = events(a), events(b)
    assert not of_type(ea, Phase1Up) and not of_type(eb, Phase1Up)
    # the responder cannot tell a wrong key from a forgery: a folded Refused, no failure
    assert not of_type(eb, NegotiationFailed)
    assert [f.reason for f in of_type(eb, Refused)] == [
        "authentication failed in main mode as responder"]
    assert [(f.phase, f.reason) for f in of_type(ea, NegotiationFailed)] == [
        (2, "timeout waiting for phase 1"), (1, "timeout")]
    assert b.counters["decrypt_failed"] + b.counters["hash_mismatch"] >= 6  # MM5, resends
    assert a.phase1_sas() == [] and b.phase1_sas() == []


def test_no_proposal_chosen_phase1():
    a, b = pair({"proposals": (Phase1Proposal("aes", "sha1", 2),)},
                {"proposals": (Phase1Proposal("3des", "sha1", 2),)})
    ea, eb = _up(a, b)
    assert of_type(eb, Refused)[0].reason == "NO-PROPOSAL-CHOSEN" and not ea
    # the notify came in clear, so it ends nothing; it names the cause when phase 1 times out
    advance(a, b, 0.0, 60.0)
    assert [(f.phase, f.reason) for f in of_type(events(a), NegotiationFailed)] == [
        (2, "timeout waiting for phase 1"), (1, "timeout after NO-PROPOSAL-CHOSEN in clear")]


def test_no_proposal_chosen_phase2():
    a, b = pair({"sainfo": {"encryption": (("3des", None),)}},
                {"sainfo": {"encryption": (("aes", None),)}})
    ea, eb = _up(a, b)
    assert of_type(ea, Phase1Up)
    fa, fb = of_type(ea, NegotiationFailed), of_type(eb, NegotiationFailed)
    assert (fa[0].phase, fa[0].reason) == (2, "NO-PROPOSAL-CHOSEN")
    assert fb[0].reason == "NO-PROPOSAL-CHOSEN"
    assert not of_type(ea, Phase2Up)


def test_pfs_group_mismatch_rejected_under_strict():
    a, b = pair({"sainfo": {"pfs_group": 2}}, {"sainfo": {"pfs_group": 14}})
    ea, _ = _up(a, b)
    assert of_type(ea, NegotiationFailed)[0].reason == "NO-PROPOSAL-CHOSEN"


@pytest.mark.parametrize("check, expect", [("obey", 7200), ("strict", None), ("claim", 3600),
                                           ("exact", None)])
def test_proposal_check_lifetimes(check, expect):
    a, b = pair({"sainfo": {"lifetime_s": 7200}},
                {"sainfo": {"lifetime_s": 3600}, "remote": {"proposal_check": check}})
    ea, eb = _up(a, b)
    ups = of_type(ea, Phase2Up)
    if expect is None:
        assert not ups and of_type(ea, NegotiationFailed)
    else:
        # claim: the responder keeps its own and tells us with RESPONDER-LIFETIME
        assert ups[0].lifetime_s == of_type(eb, Phase2Up)[0].lifetime_s == expect


class _CommittingResponder(Engine):
    """A responder that sets the commit bit in quick mode 2 (RFC 2408 §3.1)."""

    def _send_quick(self, qx, payloads, now, *, expect_reply, flags=0):
        if qx.state == "R_QM2":
            qx.connected_wait = True
            flags |= Flag.COMMIT
        super()._send_quick(qx, payloads, now, expect_reply=expect_reply, flags=flags)


def test_commit_bit_initiator_waits_for_connected():
    a, _ = pair({"timer": RetransmitTimer(counter=3, interval=2.0)})
    b = _CommittingResponder(make_config(B, A), rng=seeded(3))
    quick = []

    def deliver(dgram, src, dst):
        if dgram[18] == Exchange.QUICK:
            quick.append(dgram)
            return len(quick) != 4  # lose the first CONNECTED
        return True

    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0, deliver=deliver)
    assert of_type(events(b), Phase2Up)
    assert not of_type(events(a), Phase2Up)  # not before CONNECTED
    advance(a, b, 0.0, 3.0, deliver=deliver)  # QM3 resent, CONNECTED answered again
    (ua,) = of_type(events(a), Phase2Up)
    assert len(quick) == 6 and quick[3][19] & Flag.COMMIT


def test_only_pre_shared_key_proposals_are_offered():
    rsa = Phase1Proposal("aes", "sha1", 2, auth_method="rsasig")
    a, _ = pair({"proposals": (rsa,)})
    a.initiate(B, 0.0)
    assert a.datagrams_to_send() == []
    assert of_type(events(a), NegotiationFailed)[0].reason == "no pre-shared key proposal"
    a, b = pair({"proposals": (rsa, Phase1Proposal("aes", "sha1", 2, lifetime_s=86400))})
    ea, _ = _up(a, b)
    assert of_type(ea, Phase2Up)


def test_sainfo_without_supported_algorithms_fails_cleanly():
    a, b = pair({"sainfo": {"encryption": (("blowfish", None),)}})
    ea, _ = _up(a, b)
    fail = of_type(ea, NegotiationFailed)[0]
    assert (fail.phase, fail.reason) == (2, "no supported ESP algorithm in sainfo")
    assert a.counters["internal_errors"] == 0


def test_ipv6_peers():
    a6, b6 = "2001:db8::1", "2001:db8::2"
    a = Engine(make_config(a6, b6), rng=seeded(21))
    b = Engine(make_config(b6, a6), rng=seeded(22))
    a.initiate(b6, 0.0)
    relay(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert_mirrored(ua, ub)
    assert ua.local_selector == (f"{a6}/128", 0, 0) and ua.outbound.dst == b6


def test_random_padding_lengths_still_interoperate():
    a, b = pair()
    a.config = dataclasses.replace(a.config, pad_randomize=True, pad_randomize_length=True,
                                   pad_max_length=64)
    ea, eb = _up(a, b)
    assert_mirrored(of_type(ea, Phase2Up)[0], of_type(eb, Phase2Up)[0])


def test_an_internal_error_is_counted_and_named_not_raised():
    a, b = pair()

    def broken(*args):
        raise KeyError("boom")

    b._respond_phase1 = broken
    a.initiate(B, 0.0)
    pump(a, b, 0.0)
    assert b.counters["internal_errors"] == 1
    assert b.last_internal_error == "KeyError in broken:" + str(broken.__code__.co_firstlineno + 1)
