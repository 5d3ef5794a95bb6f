"""The responder's inbound SA goes live with quick mode's message 2 (InboundReady), so that the
initiator's first packets, sent as soon as it sends message 3, are not lost while message 3 is
on its way; the pair follows at message 3, or the inbound SA is withdrawn."""

from __future__ import annotations

from ikev1.events import InboundReady, InboundWithdrawn, NegotiationFailed, Phase2Up

from .harness import A, B, advance, events, gre_selector, of_type, pair, pump
from .test_engine_tunnel import LAN_A, LAN_B, engines, sel

QUICK = 32  # RFC 2409 §5.5 exchange type, header byte 18


def _phase1_up(a, b):
    a.initiate_phase1(B, 0.0)
    pump(a, b, 0.0)
    events(a), events(b)


class HoldQm3:
    """A pump filter that keeps the initiator's quick-mode messages after the first (message
    3 and its resends) from the responder, for the test to deliver or lose; with `after`, what
    the initiator sends after message 3 too (a rekey's delete of the old pair)."""

    def __init__(self, *, after: bool = False) -> None:
        self.after = after
        self.sent: list[bytes] = []
        self.later: list[bytes] = []

    def __call__(self, d: bytes, src: str, dst: str) -> bool:
        if src != A:
            return True
        if d[18] != QUICK:
            if self.after and len(self.sent) > 1:
                self.later.append(d)
                return False
            return True
        self.sent.append(d)
        return len(self.sent) == 1


def _until_qm2(a, b, hold: HoldQm3, now: float = 1.0):
    a.initiate(B, now, gre_selector(A), gre_selector(B))
    pump(a, b, now, deliver=hold)
    return events(a), events(b)


def _waiting_for_qm3():
    """Phase 1 up, then a quick mode whose message 3 is held: (a, b, hold, b's InboundReady)."""
    a, b = pair()
    _phase1_up(a, b)
    hold = HoldQm3()
    _, eb = _until_qm2(a, b, hold)
    (ready,) = of_type(eb, InboundReady)
    return a, b, hold, ready


def test_the_responder_makes_its_inbound_sa_live_with_message_2_and_the_pair_keeps_it():
    a, b = pair()
    _phase1_up(a, b)
    hold = HoldQm3()
    ea, eb = _until_qm2(a, b, hold)
    (ua,) = of_type(ea, Phase2Up)  # the initiator has its pair and may send under it now
    (ready,) = of_type(eb, InboundReady)
    assert not of_type(eb, Phase2Up)  # no outbound SA before HASH(3)
    assert ready.inbound == ua.outbound  # the keys the initiator seals its first packets with
    assert ready.peer == (A, 500)
    assert ready.mode == "transport" and ready.encap_ports is None
    assert ready.selectors == ((f"{B}/32", 47, 0), (f"{A}/32", 47, 0))
    assert ready.lifetime_s == 3600 and not ready.generated_policy
    b.receive_datagram(hold.sent[1], (B, 500), (A, 500), 1.0)  # message 3 arrives at last
    eb = events(b)
    (ub,) = of_type(eb, Phase2Up)
    assert ub.inbound == ready.inbound and ub.outbound == ua.inbound
    assert ub.lifetime_s == ready.lifetime_s
    assert (ub.local_selector, ub.remote_selector) == ready.selectors
    advance(a, b, 1.0, 200.0)  # the finished exchange is forgotten: nothing withdrawn
    assert not of_type(events(b), InboundWithdrawn)
    assert len(b.phase2_sas()) == 1


def test_an_unanswered_message_2_withdraws_the_inbound_sa_at_the_phase2_time():
    a, b, hold, ready = _waiting_for_qm3()
    advance(a, b, 1.0, 30.9, deliver=hold)
    assert not of_type(events(b), InboundWithdrawn)  # QM2's resends go on meanwhile
    advance(a, b, 30.9, 31.0, deliver=hold)
    eb = events(b)
    assert [type(e) for e in eb] == [InboundWithdrawn, NegotiationFailed]
    assert eb[0] == InboundWithdrawn((A, 500), ready.inbound.spi)
    assert eb[1].reason == "timeout"
    assert not b.phase2_sas()


def test_a_message_3_with_a_bad_hash_installs_nothing_and_the_sa_is_withdrawn_later():
    a, b = pair()
    _phase1_up(a, b)
    hold = HoldQm3()
    _until_qm2(a, b, hold)
    bad = bytearray(hold.sent[1])
    bad[-1] ^= 1  # the last cipher block: HASH(3) no longer checks
    b.receive_datagram(bytes(bad), (B, 500), (A, 500), 1.0)
    assert b.counters["hash_mismatch"] + b.counters["decrypt_failed"] == 1
    assert not events(b) and not b.phase2_sas()
    advance(a, b, 1.0, 31.0, deliver=hold)
    assert len(of_type(events(b), InboundWithdrawn)) == 1


def test_a_forged_message_1_makes_no_inbound_sa():
    a, b = pair()
    _phase1_up(a, b)
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    (qm1, _local, _peer), = a.datagrams_to_send()
    forged = bytearray(qm1)
    forged[40] ^= 1  # a block under HASH(1) garbled: nothing of it may reach the data plane
    b.receive_datagram(bytes(forged), (B, 500), (A, 500), 1.0)
    assert b.counters["hash_mismatch"] + b.counters["decrypt_failed"] == 1
    assert not events(b) and not b.datagrams_to_send()


def test_the_isakmp_sa_deleted_before_message_3_withdraws_the_inbound_sa():
    a, b, hold, ready = _waiting_for_qm3()
    b.delete_phase1(A, 2.0)
    eb = events(b)
    assert InboundWithdrawn((A, 500), ready.inbound.spi) in eb
    assert eb.index(InboundWithdrawn((A, 500), ready.inbound.spi)) < len(eb) - 1


def test_a_flush_before_message_3_withdraws_the_inbound_sa():
    a, b, hold, ready = _waiting_for_qm3()
    b.flush(2.0)
    assert InboundWithdrawn((A, 500), ready.inbound.spi) in events(b)


def test_an_acquire_while_the_peers_pair_is_coming_starts_no_second_one():
    """The responder's side answers the initiator's first packets before message 3 is in:
    its data plane asks for the pair that is on its way; no second quick mode starts."""
    a, b = pair()
    _phase1_up(a, b)
    hold = HoldQm3()
    _until_qm2(a, b, hold)
    b.initiate(A, 1.5, gre_selector(B), gre_selector(A))
    assert not b.datagrams_to_send() and not events(b)
    b.receive_datagram(hold.sent[1], (B, 500), (A, 500), 1.5)
    assert len(of_type(events(b), Phase2Up)) == 1
    assert len(b.phase2_sas()) == 1 and len(a.phase2_sas()) == 1


def test_the_initiator_makes_no_early_inbound_sa():
    a, b = pair()
    _phase1_up(a, b)
    ea, _ = _until_qm2(a, b, HoldQm3())
    assert not of_type(ea, InboundReady)


def test_a_generated_tunnel_says_so_already_in_its_inbound_ready():
    a, b = engines(b_remote={"generate_policy": "require"})
    _phase1_up(a, b)
    hold = HoldQm3()
    a.initiate(B, 1.0, sel(LAN_A), sel(LAN_B), mode="tunnel")
    pump(a, b, 1.0, deliver=hold)
    (ready,) = of_type(events(b), InboundReady)
    assert ready.mode == "tunnel" and ready.generated_policy
    assert ready.selectors == ((LAN_B, 0, 0), (LAN_A, 0, 0))
    b.receive_datagram(hold.sent[1], (B, 500), (A, 500), 1.0)
    (ub,) = of_type(events(b), Phase2Up)
    assert ub.inbound == ready.inbound and ub.generated_policy


def test_a_rekey_by_the_peer_gets_its_inbound_sa_early_and_still_replaces_the_old_pair():
    a, b = pair()
    _phase1_up(a, b)
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    pump(a, b, 1.0)
    (old,) = of_type(events(b), Phase2Up)
    hold = HoldQm3(after=True)
    advance(a, b, 1.0, 1.0 + 0.8 * 3600 + 1, deliver=hold)  # a's soft lifetime: a rekeys
    (ready,) = of_type(events(b), InboundReady)
    assert len(hold.later) == 1  # a's delete of the old pair, sent after message 3
    for d in (hold.sent[1], *hold.later):
        b.receive_datagram(d, (B, 500), (A, 500), 2882.0)
    eb = events(b)
    (new,) = of_type(eb, Phase2Up)
    assert new.inbound == ready.inbound and new.rekey_of == old.inbound.spi
    assert not of_type(eb, InboundWithdrawn)
    assert [sa["spi_in"] for sa in b.phase2_sas()] == [ready.inbound.spi]
