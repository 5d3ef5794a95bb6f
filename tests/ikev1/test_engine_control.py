"""The engine's calls for racoonctl: `establish-sa isakmp` (phase 1 alone) and
`show-schedule` (every pending timer, by name)."""

from __future__ import annotations

from ikev1.events import Phase1Up, Phase2Up

from .harness import B, events, of_type, pair, pump


def test_initiate_phase1_makes_an_isakmp_sa_and_no_quick_mode():
    a, b = pair()
    a.initiate_phase1(B, 0.0)
    pump(a, b, 0.0)
    evs = events(a)
    assert len(of_type(evs, Phase1Up)) == 1 and not of_type(evs, Phase2Up)
    a.initiate_phase1(B, 1.0)  # one is up: nothing more is started
    assert a.datagrams_to_send() == []


def test_schedule_lists_each_timer_soonest_first():
    a, b = pair()
    a.initiate_phase1(B, 0.0)
    early = a.schedule()
    assert [r["timer"] for r in early] == ["phase1-resend"]  # waiting for message 2
    assert early[0]["peer"] == B and early[0]["created"] == 0.0 and early[0]["due"] > 0.0
    pump(a, b, 0.0)
    rows = a.schedule()
    timers = {r["timer"] for r in rows}
    assert "phase1-lifetime" in timers and "phase1-resend" not in timers
    assert [r["due"] for r in rows] == sorted(r["due"] for r in rows)
    # the heap's next timer is the listing's first
    assert a.get_timer() <= rows[0]["due"]
