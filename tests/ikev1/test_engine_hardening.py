"""What forged, replayed or unexpected messages can make the engine do: no more than one
datagram per datagram from an unproven address, bounded state, no purge by a replay."""

from __future__ import annotations

import ipaddress

from ikev1.codec import DeletePayload, HashPayload, Header, NotifyPayload, encode_message
from ikev1.constants import Exchange, Notify, Proto
from ikev1.events import NegotiationFailed, Phase1Down, Phase2Up, SaDeleted
from ikev1.limits import HALF_OPEN_RESERVED
from ikev1.policy import Phase1Proposal, TrafficSelector

from .harness import A, B, advance, events, gre_selector, of_type, pair, pump, relay

INFORMATIONAL = 5  # RFC 2408 §3.1 exchange type, header byte 18


def _up(a, b, now=0.0):
    a.initiate(B, now, gre_selector(A), gre_selector(B))
    wire = pump(a, b, now)
    assert of_type(events(a), Phase2Up) and of_type(events(b), Phase2Up)
    return wire


def _any(address: str) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(f"{address}/32"), 0, 0)


def test_a_replayed_dpd_probe_gets_no_second_answer():
    a, b = pair()
    _up(a, b)
    a.handle_timer(20.0)  # dpd_delay 20: the first R-U-THERE
    (probe, local, peer), = a.datagrams_to_send()
    b.receive_datagram(probe, peer, local, 20.0)
    assert len(b.datagrams_to_send()) == 1  # the ACK
    b.receive_datagram(probe, peer, local, 21.0)
    assert b.datagrams_to_send() == [] and b.counters["duplicates"] == 1


def test_a_replayed_initial_contact_cannot_purge_newer_sas():
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=1000),)
    a, b = pair({"proposals": props, "remote": {"lifetime_s": 1000, "rekey": "force"},
                 "sainfo": {"lifetime_s": 5000}},
                {"proposals": props, "sainfo": {"lifetime_s": 5000}})
    wire = _up(a, b)
    (contact,) = [d for d, src, _ in wire if src == A and d[18] == INFORMATIONAL]
    advance(a, b, 0.0, 950.0)  # a renews phase 1 at 900; both ISAKMP SAs live until 1000
    a.initiate(B, 950.0, _any(A), _any(B))  # a second pair, made under the new ISAKMP SA
    pump(a, b, 950.0)
    events(a), events(b)
    assert len(b.phase1_sas()) == 2 and len(b.phase2_sas()) == 2
    b.receive_datagram(contact, (B, 500), (A, 500), 960.0)
    assert not of_type(events(b), SaDeleted) and not of_type(events(b), Phase1Down)
    assert len(b.phase1_sas()) == 2 and len(b.phase2_sas()) == 2


def test_an_error_about_an_spi_we_do_not_know_ends_no_quick_mode():
    a, b = pair()
    _up(a, b)
    a.initiate(B, 1.0, _any(A), _any(B))
    a.datagrams_to_send()  # its first message is lost
    (qx,) = [qx for qx in a._quick.values() if qx.state == "I_QM1"]
    p1 = b._newest_p1(A)
    other = ((qx.spi_in ^ 1) or 1).to_bytes(4, "big")
    b._send_info(p1, [NotifyPayload(Notify.INVALID_SPI, Proto.ESP, other)])
    pump(a, b, 1.0)
    assert not of_type(events(a), NegotiationFailed) and qx in a._quick.values()
    mine = qx.spi_in.to_bytes(4, "big")
    b._send_info(p1, [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN, Proto.ESP, mine)])
    pump(a, b, 1.0)
    (fail,) = of_type(events(a), NegotiationFailed)
    assert (fail.phase, fail.reason) == (2, "NO-PROPOSAL-CHOSEN")


def test_an_isakmp_delete_must_name_both_cookies():
    a, b = pair()
    _up(a, b)
    p1 = b._newest_p1(A)
    b._send_info(p1, [DeletePayload(Proto.ISAKMP, (p1.icookie + bytes(8),))])
    pump(a, b, 1.0)
    assert len(a.phase1_sas()) == 1 and not of_type(events(a), Phase1Down)
    b._send_info(p1, [DeletePayload(Proto.ISAKMP, (p1.spi,))])
    pump(a, b, 1.0)
    assert of_type(events(a), Phase1Down)[0].reason == "peer-deleted"
    # gone (a then negotiates afresh: the peer, as racoon does, purged the pair it made)
    assert p1.icookie.hex() not in {row["icookie"] for row in a.phase1_sas()}


def test_main_mode_responder_answers_each_first_message_once():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, local, peer),) = a.datagrams_to_send()
    b.receive_datagram(mm1, peer, local, 0.0)
    assert len(b.datagrams_to_send()) == 1
    b.receive_datagram(mm1, peer, local, 5.0)  # the initiator's resend gets the reply again
    assert len(b.datagrams_to_send()) == 1
    sent = []
    for t in range(6, 70):
        b.handle_timer(float(t))
        sent += b.datagrams_to_send()
    assert sent == []  # nothing unprompted towards an address that may be forged
    assert b.phase1_sas() == [] and b.get_timer() is None  # the state ends with the timer
    assert b.counters["resends"] == 0 and b.counters["timeouts"] == 1


def test_half_open_responder_state_is_bounded_and_counted():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, local, peer),) = a.datagrams_to_send()
    for i in range(HALF_OPEN_RESERVED + 10):
        b.receive_datagram((i + 1).to_bytes(8, "big") + mm1[8:], peer, local, 0.0)
    assert len(b.phase1_sas()) == HALF_OPEN_RESERVED  # the oldest were evicted for the newest
    assert b.counters["half_open_evicted"] == 10
    assert len(b.datagrams_to_send()) == HALF_OPEN_RESERVED + 10
    never = lambda *x: False  # noqa: E731
    advance(a, b, 0.0, 61.0, deliver=never)  # forged and real exchanges all time out
    assert b.phase1_sas() == []
    events(a), events(b)
    a.initiate(B, 61.0, gre_selector(A), gre_selector(B))
    pump(a, b, 61.0)
    assert of_type(events(b), Phase2Up)


def test_our_message_ids_are_never_reused_on_an_isakmp_sa():
    a, b = pair()
    wire = _up(a, b)
    (contact,) = [d for d, src, _ in wire if src == A and d[18] == INFORMATIONAL]
    used = contact[20:24]  # the INITIAL-CONTACT informational's message ID
    fresh = (int.from_bytes(used, "big") ^ 0x5A5A5A5A).to_bytes(4, "big")
    draws = iter([used, fresh])
    a._rng = lambda n: next(draws) if n == 4 else bytes(n)
    a.handle_timer(20.0)  # the DPD probe draws a message ID: the used one is passed over
    ((probe, local, peer),) = a.datagrams_to_send()
    assert probe[20:24] == fresh
    b.receive_datagram(probe, peer, local, 20.0)
    assert len(b.datagrams_to_send()) == 1  # b answers: no replay in its eyes


def test_a_forged_main_mode_5_leaves_the_exchange_to_the_real_one():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    forged = [0]

    def carry(dgram, local, peer):
        if local[0] == A and dgram[18] == 2 and dgram[19] & 1 and not forged[0]:  # MM5
            forged[0] += 1
            bad = dgram[:28] + bytes(b ^ 0xFF for b in dgram[28:44]) + dgram[44:]
            return [bad, dgram]  # garbage under the right cookies first, then the real one
        return [dgram]

    relay(a, b, 0.0, carry)
    assert forged[0] == 1
    assert of_type(events(b), Phase2Up) and of_type(events(a), Phase2Up)
    assert b.counters["decrypt_failed"] + b.counters["hash_mismatch"] == 1


def _plain_notify(icookie: bytes, rcookie: bytes, code: int) -> bytes:
    hdr = Header(icookie, rcookie, 0, Exchange.INFORMATIONAL, 0, 0)
    return encode_message(hdr, [NotifyPayload(code, Proto.ISAKMP, icookie + rcookie)])


def test_unprotected_notifies_are_never_answered():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, local, peer),) = a.datagrams_to_send()
    icookie = mm1[:8]
    a.receive_datagram(_plain_notify(icookie, bytes(8), 24576), local, peer, 0.0)  # a status
    assert a.datagrams_to_send() == [] and len(a.phase1_sas()) == 1
    assert a.counters["unexpected"] == 1  # read, and only an error ends an attempt
    a.receive_datagram(_plain_notify(icookie, bytes(8), Notify.NO_PROPOSAL_CHOSEN), local,
                       peer, 0.0)
    # anyone could have sent it: the attempt goes on, and only its timeout would name it
    assert a.datagrams_to_send() == [] and len(a.phase1_sas()) == 1 and not events(a)
    b.receive_datagram(mm1, peer, local, 0.0)
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up)
    before = (a.phase1_sas(), a.phase2_sas())
    p1 = a._newest_p1(B)
    for code in (Notify.INVALID_SPI, Notify.NO_PROPOSAL_CHOSEN, Notify.INITIAL_CONTACT):
        a.receive_datagram(_plain_notify(p1.icookie, p1.rcookie, code), local, peer, 2.0)
    assert a.datagrams_to_send() == [] and (a.phase1_sas(), a.phase2_sas()) == before
    assert a.counters["unexpected"] == 4 and not events(a)


def test_an_informational_with_a_wrong_hash_changes_nothing():
    a, b = pair()
    _up(a, b)
    p1 = b._newest_p1(A)
    spi = b.phase2_sas()[0]["spi_in"].to_bytes(4, "big")
    msgid = b._new_msgid(p1)
    hdr = Header(p1.icookie, p1.rcookie, 0, Exchange.INFORMATIONAL, 0, msgid)
    payloads = [HashPayload(bytes(20)), DeletePayload(Proto.ESP, (spi,))]
    dgram, _ = b._encrypt(p1, hdr, payloads, b._qm_iv(p1, msgid))
    a.receive_datagram(dgram, (A, 500), (B, 500), 1.0)
    assert a.counters["hash_mismatch"] == 1 and len(a.phase2_sas()) == 1 and not events(a)
    assert a.datagrams_to_send() == []


def test_our_own_informational_sent_back_to_us_is_not_taken_as_the_peers():
    a, b = pair()
    _up(a, b)
    a.handle_timer(20.0)
    ((probe, local, peer),) = a.datagrams_to_send()
    a.receive_datagram(probe, local, peer, 20.0)  # HASH(1) and IV check out: no direction
    assert a.datagrams_to_send() == [] and a.counters["duplicates"] == 1


def test_our_own_quick_mode_sent_back_to_us_starts_nothing():
    a, b = pair()
    wire = _up(a, b)
    qm1 = next(d for d, src, _ in wire if src == A and d[18] == 32)  # its first message
    advance(a, b, 0.0, 100.0)  # the finished exchange is forgotten
    events(a)
    a.receive_datagram(qm1, (A, 500), (B, 500), 100.0)
    assert a.datagrams_to_send() == [] and not a._quick and a.counters["duplicates"] == 1


def test_our_own_first_message_sent_back_to_us_is_no_reply():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, local, peer),) = a.datagrams_to_send()
    a.receive_datagram(mm1, local, peer, 0.0)  # one transform, so it would pass as a choice
    assert a.datagrams_to_send() == [] and a.phase1_sas()[0]["state"] == "I_MM1"
    b.receive_datagram(mm1, peer, local, 0.0)
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up)
