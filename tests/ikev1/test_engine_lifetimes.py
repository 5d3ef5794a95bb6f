"""Life durations a peer announces as 0 (strongSwan with rekeying off) or not at all."""

from __future__ import annotations

from ikev1.codec import Transform
from ikev1.constants import LIFE_KILOBYTES, LIFE_SECONDS, EspTransform, P2Attr, P2Auth
from ikev1.events import Phase1Down, Phase1Up, Phase2Up, SaExpired
from ikev1.policy import Phase1Proposal
from ikev1.proposals import parse_lifetime_attrs, parse_phase2_transform

from .harness import A, B, events, gre_selector, of_type, pair, pump, relay

LIFE_1000 = b"\x80\x0c\x03\xe8"  # RFC 2409 App. A: life duration (class 12) 1000, basic form
LIFE_0 = b"\x80\x0c\x00\x00"


def test_responder_keeps_its_lifetimes_when_the_initiator_announces_zero():
    zero = (Phase1Proposal("aes", "sha1", 2, lifetime_s=0),)
    ours = (Phase1Proposal("aes", "sha1", 2, lifetime_s=1000),)
    a, b = pair({"proposals": zero, "sainfo": {"lifetime_s": 0}},
                {"proposals": ours, "sainfo": {"lifetime_s": 500}})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    eb = events(b)
    assert of_type(eb, Phase1Up)[0].lifetime_s == 1000
    assert of_type(eb, Phase2Up)[0].lifetime_s == 500
    b.handle_timer(1.0)
    assert b.phase1_sas() and b.phase2_sas()
    assert not of_type(events(b), Phase1Down) and not of_type(events(b), SaExpired)
    # RESPONDER-LIFETIME told the initiator, which had no limit of its own
    assert of_type(events(a), Phase2Up)[0].lifetime_s == 500


def test_initiator_keeps_its_phase1_lifetime_when_the_responder_answers_zero():
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=1000),)
    a, b = pair({"proposals": props}, {"proposals": props})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))

    def zero_in_main_mode_2(dgram, local, peer):  # in the clear, and not under HASH_I/HASH_R
        if local[0] == B and dgram[18] == 2:
            return [dgram.replace(LIFE_1000, LIFE_0)]
        return [dgram]

    relay(a, b, 0.0, zero_in_main_mode_2)
    (up,) = of_type(events(a), Phase1Up)
    assert up.lifetime_s == 1000
    a.handle_timer(1.0)
    assert a.phase1_sas() and not of_type(events(a), Phase1Down)


def test_zero_kilobytes_is_no_byte_limit_and_an_empty_responder_lifetime_changes_nothing():
    tr = Transform(1, EspTransform.AES, ((P2Attr.LIFE_TYPE, LIFE_SECONDS),
                                         (P2Attr.LIFE_DURATION, 600),
                                         (P2Attr.LIFE_TYPE, LIFE_KILOBYTES),
                                         (P2Attr.LIFE_DURATION, 0),
                                         (P2Attr.AUTH_ALG, P2Auth.HMAC_SHA1),
                                         (P2Attr.KEY_LENGTH, 128)))
    suite = parse_phase2_transform(tr)
    assert suite is not None and (suite.lifetime_s, suite.lifetime_kb) == (600, None)
    assert parse_lifetime_attrs(((P2Attr.LIFE_TYPE, LIFE_KILOBYTES),
                                 (P2Attr.LIFE_DURATION, 100))) == (0, 100)
