"""Random and mutated datagrams into engines with established SAs: never an exception, never a
change to what is established."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikev1.events import PeerDead, Phase1Down, Phase2Up, SaDeleted, SaExpired

from .harness import A, B, events, gre_selector, pair, pump

pytestmark = pytest.mark.fuzz

_a, _b = pair()
_a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
CAPTURE = [d for d, _src, _dst in pump(_a, _b, 0.0)]
events(_a), events(_b)
_COOKIES = CAPTURE[0][:8] + CAPTURE[1][8:16]


def _snapshot(eng):
    return ([p for p in eng.phase1_sas() if p["state"] == "established"], eng.phase2_sas())


BEFORE = {A: _snapshot(_a), B: _snapshot(_b)}


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(CAPTURE)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def forged(draw):
    """A well-formed header on the established SA with an arbitrary (encrypted) body."""
    exchange = draw(st.sampled_from([2, 4, 5, 32, 99]))
    body = draw(st.binary(min_size=0, max_size=160))
    flags = draw(st.integers(0, 7))
    mid = draw(st.integers(0, 2**32 - 1))
    first = draw(st.integers(0, 140))
    return _COOKIES + struct.pack("!BBBBII", first, 0x10, exchange, flags, mid,
                                  28 + len(body)) + body


@settings(max_examples=300, deadline=2000, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(st.binary(max_size=400), mutated(), forged()),
       to_a=st.booleans(), port=st.sampled_from([500, 4500]))
def test_garbage_never_raises_nor_changes_established_sas(data, to_a, port):
    eng, here, there = (_a, A, B) if to_a else (_b, B, A)
    if port == 4500:
        data = bytes(4) + data
    eng.receive_datagram(data, (here, port), (there, 500), 1.0)
    eng.datagrams_to_send()
    evs = events(eng)
    assert not [e for e in evs if isinstance(e, (Phase1Down, SaDeleted, SaExpired, PeerDead,
                                                 Phase2Up))]
    assert _snapshot(eng) == BEFORE[here]
    assert eng.counters["internal_errors"] == 0


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), loss=st.floats(0.0, 0.35),
       dup=st.floats(0.0, 0.3), swap=st.booleans())
def test_lossy_wire_ends_with_mirrored_keys_or_a_clean_failure(seed, loss, dup, swap):
    """Any pattern of loss, duplication and reordering: both sides agree, or a side gives up."""
    import random

    from ikev1.events import NegotiationFailed
    from ikev1.policy import RetransmitTimer

    rnd = random.Random(seed)
    timer = {"timer": RetransmitTimer(counter=4, interval=1.0)}
    a, b = pair(timer, timer)
    engines = {A: a, B: b}

    def wire(now):
        batch = [(d, lo, pe) for eng in (a, b) for d, lo, pe in eng.datagrams_to_send()]
        if swap:
            rnd.shuffle(batch)
        for dgram, local, peer in batch:
            copies = 0 if rnd.random() < loss else 1 + (rnd.random() < dup)
            for _ in range(copies):
                engines[peer[0]].receive_datagram(dgram, peer, local, now)
        return bool(batch)

    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    now = 0.0
    for _ in range(200):
        while wire(now):
            pass
        nxt = [t for t in (a.get_timer(), b.get_timer()) if t is not None and t <= 15.0]
        if not nxt:
            break
        now = min(nxt)
        a.handle_timer(now)
        b.handle_timer(now)
    ea, eb = events(a), events(b)
    ua, ub = [e for e in ea if isinstance(e, Phase2Up)], [e for e in eb if isinstance(e, Phase2Up)]
    assert a.counters["internal_errors"] == b.counters["internal_errors"] == 0
    for up in ua:  # every pair a installed is one b installed with the same keys, mirrored
        match = [u for u in ub if u.inbound.spi == up.outbound.spi]
        if match:
            assert match[0].inbound == up.outbound and match[0].outbound == up.inbound
        else:  # only when b never got quick mode 3 before giving up
            assert any(isinstance(e, NegotiationFailed) for e in eb)
    if not ua:
        assert any(isinstance(e, NegotiationFailed) for e in ea)
