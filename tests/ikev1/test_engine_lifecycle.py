"""Engines in memory over time: deletes, INITIAL-CONTACT, DPD, loss, rekey and expiry."""

from __future__ import annotations

import pytest

from ikev1.codec import NotifyPayload
from ikev1.constants import Notify, Proto
from ikev1.engine import Engine
from ikev1.events import (
    NegotiationFailed,
    PeerDead,
    Phase1Down,
    Phase1Up,
    Phase2Up,
    SaDeleted,
    SaExpired,
)
from ikev1.policy import DpdSettings, Phase1Proposal, RetransmitTimer

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

FAST = RetransmitTimer(counter=3, interval=2.0)


def _up(a, b, now=0.0, **kw):
    a.initiate(B, now, gre_selector(A), gre_selector(B))
    pump(a, b, now, **kw)
    ea, eb = events(a), events(b)
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    return ua, ub


# --- deletes ------------------------------------------------------------------------------


def test_esp_delete_both_ways():
    a, b = pair()
    ua, ub = _up(a, b)
    a.delete_phase2(ua.inbound.spi, 1.0)
    pump(a, b, 1.0)
    (da,), (db,) = of_type(events(a), SaDeleted), of_type(events(b), SaDeleted)
    assert (da.spi_in, da.reason) == (ua.inbound.spi, "deleted")
    assert (db.spi_in, db.spi_out, db.reason) == (ub.inbound.spi, ub.outbound.spi, "peer-deleted")
    assert a.phase2_sas() == [] and b.phase2_sas() == []
    ua, ub = _up(a, b, 2.0)
    b.delete_phase2(ub.inbound.spi, 3.0)
    pump(a, b, 3.0)
    assert of_type(events(a), SaDeleted)[0].spi_in == ua.inbound.spi


def test_an_operators_isakmp_delete_takes_the_ipsec_sas_with_it_on_both_sides():
    """racoonctl delete-sa: racoon purges the IPsec SAs with the peer (purge_remote()); pyike
    does the same, and tells the peer of each one first."""
    a, b = pair()
    ua, _ub = _up(a, b)
    b.delete_phase1(A, 1.0)
    pump(a, b, 1.0)
    ea, eb = events(a), events(b)
    assert of_type(ea, Phase1Down)[0].reason == "peer-deleted"
    assert of_type(eb, Phase1Down)[0].reason == "deleted"
    assert [(d.spi_in, d.reason) for d in of_type(ea, SaDeleted)] == [
        (ua.inbound.spi, "peer-deleted")]
    assert a.phase1_sas() == a.phase2_sas() == b.phase1_sas() == b.phase2_sas() == []
    _up(a, b, 2.0)  # and the next acquire negotiates afresh


def _drop_isakmp_only(eng: Engine, now: float) -> None:
    """What racoon does on `delete-sa` (or at an ISAKMP SA's end): the delete of the ISAKMP SA
    goes out, its IPsec SAs are purged without a delete of their own."""
    (p1,) = eng._peer_p1(A if eng.config.local_addresses[0] == B else B)
    eng._drop_p1(p1, now, "deleted", notify_peer=True)


def test_a_peer_deleting_the_isakmp_sa_while_it_rekeys_has_purged_the_ipsec_sas():
    a, b = pair()  # DPD on both ends, `rekey on`: racoon purges on such a delete
    ua, _ub = _up(a, b)
    _drop_isakmp_only(b, 1.0)
    pump(a, b, 1.0)
    ea = events(a)
    assert [(d.spi_in, d.reason) for d in of_type(ea, SaDeleted)] == [
        (ua.inbound.spi, "peer-deleted-isakmp")]
    # and a negotiates the pair again at once, whoever made the old one
    (up,) = of_type(ea, Phase2Up)
    assert up.inbound.spi != ua.inbound.spi
    assert [sa["spi_in"] for sa in a.phase2_sas()] == [up.inbound.spi]


def test_a_passive_end_drops_the_purged_pair_and_waits_for_the_peer():
    a, b = pair({"remote": {"passive": True}})
    b.initiate(A, 0.0, gre_selector(B), gre_selector(A))
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up)
    events(b)
    _drop_isakmp_only(b, 1.0)
    pump(a, b, 1.0)
    ea = events(a)
    assert [d.reason for d in of_type(ea, SaDeleted)] == ["peer-deleted-isakmp"]
    assert not of_type(ea, Phase2Up) and a.phase1_sas() == a.phase2_sas() == []


@pytest.mark.parametrize("remote", [{"rekey": "off"}, {"dpd": DpdSettings(0, 2, 2)}])
def test_a_peer_deleting_the_isakmp_sa_without_rekey_keeps_the_ipsec_sas(remote):
    """racoon's isakmp_ph1expire() path (`rekey off`, or `rekey on` without DPD): phase 2
    outlives phase 1."""
    a, b = pair({"remote": remote})
    _up(a, b)
    _drop_isakmp_only(b, 1.0)
    pump(a, b, 1.0)
    assert of_type(events(a), Phase1Down)[0].reason == "peer-deleted"
    assert not of_type(events(a), SaDeleted)
    assert a.phase1_sas() == [] and len(a.phase2_sas()) == 1
    a.flush(2.0)
    pump(a, b, 2.0)
    assert of_type(events(a), SaDeleted)[0].reason == "flushed"
    assert a.phase2_sas() == []


def test_an_isakmp_delete_purges_nothing_while_another_isakmp_sa_is_up():
    """A phase-1 rekey: the new ISAKMP SA is up before the old one's delete arrives."""
    short = {"proposals": (Phase1Proposal("aes", "sha1", 2, lifetime_s=100),)}
    a, b = pair(short, short)
    _up(a, b)
    advance(a, b, 0.0, 95.0)  # rekey at 90 % of the lifetime, then the old one is deleted
    events(a), events(b)
    assert len(a._peer_p1(B)) == 2 and len(b._peer_p1(A)) == 2
    old = a._peer_p1(B)[0]
    a._drop_p1(old, 96.0, "deleted", notify_peer=True)
    pump(a, b, 96.0)
    assert of_type(events(b), Phase1Down)[0].reason == "peer-deleted"
    assert not of_type(events(b), SaDeleted)
    assert len(b.phase2_sas()) == 1 and len(b.phase1_sas()) == 1


# --- INITIAL-CONTACT ----------------------------------------------------------------------


def test_initial_contact_after_peer_restart_purges_old_sas():
    a, b = pair()
    _up(a, b)
    a2 = Engine(a.config, rng=seeded(99))  # a restarts: no memory of its SAs
    _, new_b = _up(a2, b, 10.0)
    assert [sa["spi_in"] for sa in b.phase2_sas()] == [new_b.inbound.spi]
    assert [p["icookie"] for p in b.phase1_sas()] == [a2.phase1_sas()[0]["icookie"]]


def test_initial_contact_events_on_receiver():
    a, b = pair()
    _, old_b = _up(a, b)
    a2 = Engine(a.config, rng=seeded(99))
    a2.initiate(B, 10.0, gre_selector(A), gre_selector(B))
    pump(a2, b, 10.0)
    evs = events(b)
    deleted = of_type(evs, SaDeleted)
    assert [(d.spi_in, d.reason) for d in deleted] == [(old_b.inbound.spi, "initial-contact")]
    assert of_type(evs, Phase1Down)[0].reason == "initial-contact"
    assert len(of_type(evs, Phase2Up)) == 1
    # the purge comes before the new pair, so the data plane never loses the new SA
    assert evs.index(deleted[0]) < evs.index(of_type(evs, Phase2Up)[0])


def test_initial_contact_inside_main_mode_5_is_honoured():
    class StrongswanStyle(Engine):
        def _mm5_payloads(self, p1, auth):
            ic = NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, p1.spi)
            return [*super()._mm5_payloads(p1, auth), ic]

    cfg = make_config(A, B, remote={"initial_contact": False})
    a, b = pair()
    _, old_b = _up(a, b)
    a2 = StrongswanStyle(cfg, rng=seeded(7))
    a2.initiate(B, 5.0, gre_selector(A), gre_selector(B))
    pump(a2, b, 5.0)
    evs = events(b)
    assert [d.reason for d in of_type(evs, SaDeleted)] == ["initial-contact"]
    assert b.counters["notifies_received"] == 1  # only the quick mode's peer delete earlier


def test_initial_contact_rides_in_main_mode_5_too():
    a, b = pair()
    _, old_b = _up(a, b)
    a2 = Engine(a.config, rng=seeded(99))  # a restarts
    a2.initiate(B, 10.0, gre_selector(A), gre_selector(B))
    no_informational = lambda d, src, dst: d[18] != 5  # noqa: E731 - only main mode 5 tells
    pump(a2, b, 10.0, deliver=no_informational)
    evs = events(b)
    assert [(d.spi_in, d.reason) for d in of_type(evs, SaDeleted)] == [
        (old_b.inbound.spi, "initial-contact")]
    a3 = Engine(a.config, rng=seeded(98))  # a later ISAKMP SA of the same run: no second one
    a3._contacted.add(B)
    _up(a3, b, 20.0)
    assert len(b.phase2_sas()) == 2  # a2's pair survives a3's main mode


def test_no_initial_contact_when_disabled():
    a, b = pair({"remote": {"initial_contact": False}})
    _up(a, b)
    a2 = Engine(a.config, rng=seeded(5))
    _up(a2, b, 10.0)
    assert len(b.phase2_sas()) == 2


# --- DPD (RFC 3706) -----------------------------------------------------------------------


def test_dpd_declares_silent_peer_dead_at_configured_time():
    dpd = {"dpd": DpdSettings(delay=20, retry=3, maxfail=4)}
    a, b = pair({"remote": dpd}, {"remote": dpd})
    ua, _ = _up(a, b)
    silent = lambda d, src, dst: src != B  # noqa: E731 - b stops answering
    # first probe at 20, then maxfail unanswered probes retry seconds apart: dead at 20 + 4*3
    advance(a, b, 0.0, 31.9, deliver=silent)
    assert not of_type(events(a), PeerDead)
    advance(a, b, 31.9, 32.0, deliver=silent)
    evs = events(a)
    assert isinstance(evs[-1], PeerDead) and evs[-1].peer == (B, 500)
    assert [(e.spi_in, e.reason) for e in of_type(evs, SaDeleted)] == [(ua.inbound.spi, "dead")]
    assert of_type(evs, Phase1Down)[0].reason == "dead"
    assert evs.index(of_type(evs, SaDeleted)[0]) < evs.index(evs[-1])
    assert a.phase1_sas() == [] and a.phase2_sas() == []


def test_dpd_live_peer_stays_up():
    a, b = pair()
    _up(a, b)
    advance(a, b, 0.0, 200.0)
    assert not of_type(events(a), PeerDead) and not of_type(events(b), PeerDead)
    assert b.counters["notifies_received"] >= 9  # R-U-THEREs answered every 20 s
    assert len(a.phase1_sas()) == 1


# --- loss, duplication, reordering --------------------------------------------------------


def _drop_nth(n):
    count = [0]

    def deliver(dgram, src, dst):
        count[0] += 1
        return count[0] != n + 1

    return deliver


@pytest.mark.parametrize("lost", range(10))
def test_any_lost_datagram_is_recovered_by_retransmission(lost):
    a, b = pair({"timer": FAST}, {"timer": FAST})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    deliver = _drop_nth(lost)
    pump(a, b, 0.0, deliver=deliver)
    advance(a, b, 0.0, 30.0, deliver=deliver)
    ua, ub = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert len(ua) == 1 and len(ub) == 1
    assert ua[0].outbound == ub[0].inbound


def test_duplicates_get_stored_reply_and_are_not_reprocessed():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    relay(a, b, 0.0, lambda dgram, local, peer: [dgram, dgram])
    ea, eb = events(a), events(b)
    assert len(of_type(ea, Phase1Up)) == 1 and len(of_type(eb, Phase2Up)) == 1
    assert a.counters["duplicates"] >= 3 and b.counters["duplicates"] >= 3
    assert a.counters["internal_errors"] == b.counters["internal_errors"] == 0


def test_reordered_datagrams():
    a, b = pair()
    engines = {A: a, B: b}
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    held = []
    for _ in range(20):
        out = [(d, lo, pe) for eng in (a, b) for d, lo, pe in eng.datagrams_to_send()]
        if not out and not held:
            break
        batch, held = held + out, []
        batch.reverse()  # the informational (INITIAL-CONTACT) and quick mode 1 swap places
        for dgram, local, peer in batch:
            engines[peer[0]].receive_datagram(dgram, peer, local, 0.0)
    assert len(of_type(events(b), Phase2Up)) == 1


def test_exchange_timeout():
    a, b = pair({"timer": FAST})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    never = lambda *x: False  # noqa: E731
    pump(a, b, 0.0, deliver=never)
    advance(a, b, 0.0, 7.9, deliver=never)
    assert not events(a)
    advance(a, b, 7.9, 8.0, deliver=never)  # 3 resends 2 s apart, then 2 s more
    (fail,) = of_type(events(a), NegotiationFailed)
    assert (fail.phase, fail.reason) == (1, "timeout")
    assert a.phase1_sas() == [] and a.get_timer() is None


# --- lifetimes and rekey ------------------------------------------------------------------


def test_rekey_before_hard_expiry_without_gap():
    a, b = pair({"sainfo": {"lifetime_s": 100}}, {"sainfo": {"lifetime_s": 100}})
    ua, ub = _up(a, b)
    advance(a, b, 0.0, 79.9)
    assert not events(a)
    advance(a, b, 79.9, 80.0)
    ea, eb = events(a), events(b)
    (na,), (nb,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert na.rekey_of == ua.inbound.spi and nb.rekey_of == ub.inbound.spi
    assert na.outbound == nb.inbound
    # new pair up first, then the old one deleted (by its initiator, with a delete to the peer)
    assert ea.index(na) < ea.index(of_type(ea, SaDeleted)[0])
    assert of_type(ea, SaDeleted)[0].reason == "rekeyed"
    assert of_type(eb, SaDeleted)[0].spi_in == ub.inbound.spi
    assert [s["spi_in"] for s in b.phase2_sas()] == [nb.inbound.spi]
    advance(a, b, 80.0, 400.0)
    ea = events(a)
    assert not of_type(ea, SaExpired) and len(of_type(ea, Phase2Up)) == 4


def test_hard_expiry_when_rekey_is_impossible():
    no_dpd = {"dpd": DpdSettings(delay=0)}
    a, b = pair({"sainfo": {"lifetime_s": 100}, "timer": FAST, "remote": no_dpd},
                {"sainfo": {"lifetime_s": 100}})
    ua, _ = _up(a, b)
    cut = lambda *x: False  # noqa: E731
    advance(a, b, 0.0, 100.0, deliver=cut)
    (exp,) = of_type(events(a), SaExpired)
    assert exp.spi_in == ua.inbound.spi
    assert a.phase2_sas() == []


def test_phase1_expires_and_force_rekeys():
    remote = {"lifetime_s": 1000, "rekey": "force"}
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=1000),)
    a, b = pair({"proposals": props, "remote": remote, "sainfo": {"lifetime_s": 5000}},
                {"proposals": props, "sainfo": {"lifetime_s": 5000}})
    _up(a, b)
    advance(a, b, 0.0, 1000.0)
    ea, eb = events(a), events(b)
    assert len(of_type(ea, Phase1Up)) == 1  # a new ISAKMP SA before the old one expired
    assert of_type(ea, Phase1Down)[0].reason == "expired"
    assert of_type(eb, Phase1Down)[0].reason == "expired"
    assert len(a.phase1_sas()) == 1 and a.phase1_sas()[0]["created"] == 900.0
    assert len(b.phase1_sas()) == 1 and len(a.phase2_sas()) == 1


def test_rekey_keeps_the_original_ids_or_their_absence():
    a, b = pair({"sainfo": {"lifetime_s": 100}}, {"sainfo": {"lifetime_s": 100}})
    a.initiate(B, 0.0)  # no IDs: the IKE addresses
    pump(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    advance(a, b, 0.0, 80.0)
    (na,), (nb,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert (na.rekey_of, nb.rekey_of) == (ua.inbound.spi, ub.inbound.spi)
    assert na.local_selector == ua.local_selector == (f"{A}/32", 0, 0)
    rekey_exchanges = [qx for qx in a._quick.values() if qx.rekey_of == ua.inbound.spi]
    assert rekey_exchanges and all(qx.id_ci is None for qx in rekey_exchanges)


def test_replayed_quick_mode_after_it_was_forgotten_makes_nothing():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    wire = pump(a, b, 0.0)
    events(a), events(b)
    qm1 = [d for d, src, _ in wire if src == A and d[18] == 32][0]
    advance(a, b, 0.0, 100.0)  # the finished exchange is forgotten
    b.receive_datagram(qm1, (B, 500), (A, 500), 100.0)
    assert b.datagrams_to_send() == [] and b.counters["duplicates"] == 1
    assert len(b.phase2_sas()) == 1


def test_simultaneous_acquires_on_both_sides_never_leave_a_gap():
    a, b = pair({"sainfo": {"lifetime_s": 100}}, {"sainfo": {"lifetime_s": 100}})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    b.initiate(A, 0.0, gre_selector(B), gre_selector(A))
    pump(a, b, 0.0)
    assert len(of_type(events(a), Phase2Up)) == 2  # one pair each way: a collision
    events(b)
    now = 0.0
    while now < 400.0:  # every 10 s both sides still hold a live pair, and none ever expires
        now = advance(a, b, now, now + 10.0)
        assert a.phase2_sas() and b.phase2_sas()
    assert not of_type(events(a), SaExpired) and not of_type(events(b), SaExpired)


def test_byte_lifetimes_reported_by_the_data_plane():
    a, b = pair()
    ua, ub = _up(a, b)
    a.sa_soft_expired(ua.inbound.spi, 5.0)  # soft: the initiator renegotiates at once
    pump(a, b, 5.0)
    (new,) = of_type(events(a), Phase2Up)
    assert new.rekey_of == ua.inbound.spi
    events(b)
    b.sa_hard_expired(ub.inbound.spi, 6.0)  # already replaced and deleted: nothing
    assert events(b) == []
    b.sa_hard_expired(of_type([new], Phase2Up)[0].outbound.spi, 7.0)
    pump(a, b, 7.0)
    (exp,) = of_type(events(b), SaExpired)
    assert exp.spi_in == new.outbound.spi
    assert of_type(events(a), SaDeleted)[0].spi_in == new.inbound.spi  # told by b's delete
