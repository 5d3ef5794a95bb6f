"""racoon's `timer { phase1; phase2; }` beside the resend counter, with racoon's defaults."""

from __future__ import annotations

from ikev1.events import NegotiationFailed, Phase1Up, Phase2Up
from ikev1.policy import RetransmitTimer

from .harness import A, B, advance, events, gre_selector, of_type, pair, pump

QUICK = 32  # RFC 2409 §5.5 exchange type, header byte 18


def _phase1_up(a, b):
    a.initiate(B, 0.0)  # phase 1 only matters here; the quick mode it starts is let through
    pump(a, b, 0.0)
    events(a), events(b)


def test_defaults_are_racoon_08s():
    t = RetransmitTimer()
    assert (t.counter, t.interval, t.persend, t.phase1_timeout, t.phase2_timeout) == (
        5, 10.0, 1, 30.0, 30.0)


def test_quick_mode_gives_up_at_the_phase2_time_not_after_all_resends():
    a, b = pair()
    _phase1_up(a, b)
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    no_quick = lambda d, src, dst: d[18] != QUICK  # noqa: E731
    pump(a, b, 1.0, deliver=no_quick)
    advance(a, b, 1.0, 30.9, deliver=no_quick)
    assert not of_type(events(a), NegotiationFailed)
    assert a.counters["resends"] == 2  # at 11 and 21: the resends before the limit still go
    advance(a, b, 30.9, 31.0, deliver=no_quick)
    (fail,) = of_type(events(a), NegotiationFailed)
    assert (fail.phase, fail.reason) == (2, "timeout")
    assert a.counters["timeouts"] == 1
    assert all(qx.forget_at is not None for qx in a._quick.values())  # only the finished one


def test_lost_quick_mode_messages_recover_within_the_phase2_time():
    a, b = pair()
    _phase1_up(a, b)
    lost = [0]

    def drop_two(d, src, dst):
        if d[18] == QUICK and src == A and lost[0] < 2:
            lost[0] += 1
            return False
        return True

    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    pump(a, b, 1.0, deliver=drop_two)
    advance(a, b, 1.0, 40.0, deliver=drop_two)
    assert len(of_type(events(a), Phase2Up)) == 1 and len(of_type(events(b), Phase2Up)) == 1


def test_responder_quick_mode_without_its_third_message_gives_up_at_the_phase2_time():
    a, b = pair()
    _phase1_up(a, b)
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    seen = []

    def no_qm3(d, src, dst):  # the initiator's second quick-mode message never arrives
        if d[18] == QUICK and src == A:
            seen.append(d)
            return d == seen[0]
        return True

    pump(a, b, 1.0, deliver=no_qm3)
    advance(a, b, 1.0, 31.0, deliver=no_qm3)
    (fail,) = of_type(events(b), NegotiationFailed)
    assert (fail.phase, fail.reason) == (2, "timeout")
    assert len(b.phase2_sas()) == 1  # the pair of the first quick mode only
    assert all(qx.forget_at is not None for qx in b._quick.values())


def test_an_acquire_waits_for_phase1_only_the_phase1_time():
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    cut = [True]
    deliver = lambda *x: not cut[0]  # noqa: E731
    pump(a, b, 0.0, deliver=deliver)
    advance(a, b, 0.0, 29.9, deliver=deliver)
    assert not events(a)
    advance(a, b, 29.9, 30.0, deliver=deliver)
    (fail,) = of_type(events(a), NegotiationFailed)
    assert (fail.phase, fail.reason) == (2, "timeout waiting for phase 1")
    assert len(a.phase1_sas()) == 1  # the exchange itself goes on with its resends
    cut[0] = False
    advance(a, b, 30.0, 45.0, deliver=deliver)
    ea = events(a)
    assert len(of_type(ea, Phase1Up)) == 1 and not of_type(ea, Phase2Up)  # the acquire is gone
    a.initiate(B, 45.0, gre_selector(A), gre_selector(B))  # the next acquire gets its pair
    pump(a, b, 45.0)
    assert len(of_type(events(a), Phase2Up)) == 1


def test_zero_turns_the_phase_timers_off():
    slow = RetransmitTimer(phase1_timeout=0, phase2_timeout=0)
    a, b = pair({"timer": slow}, {"timer": slow})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    never = lambda *x: False  # noqa: E731
    pump(a, b, 0.0, deliver=never)
    advance(a, b, 0.0, 59.9, deliver=never)
    assert not events(a)
    advance(a, b, 59.9, 60.0, deliver=never)  # 5 resends 10 s apart, then 10 s more
    assert [(f.phase, f.reason) for f in of_type(events(a), NegotiationFailed)] == [
        (1, "timeout")]
