"""An adversary in memory, on the fake clock.

1. Forged, mutated, replayed and reflected datagrams interleaved with a real negotiation: the
   tunnel still comes up on both sides with mirrored keys, at once (with losses, within the
   resends), and no forged datagram costs more than one datagram and one event.
2. The deadline heap against a brute-force minimum over the engine's state, after random
   sequences of operations: get_timer() is never later than a real deadline, lazy entries
   resolve within a few calls, and handle_timer(now) leaves nothing due at `now`.
3. Single attacks, each on one claimed property. The ones that break it are strict xfails whose
   reason names the fault.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikev1 import crypto
from ikev1.codec import (
    DeletePayload,
    Header,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    decode_header,
    decode_payloads,
    encode_message,
)
from ikev1.constants import HEADER_LEN, Exchange, Notify, Proto
from ikev1.engine import Engine
from ikev1.events import (
    NegotiationFailed,
    PeerDead,
    Phase1Down,
    Phase1Up,
    Phase2Up,
    Refused,
    SaDeleted,
    SaExpired,
)
from ikev1.limits import HALF_OPEN_PER_SOURCE, HALF_OPEN_RESERVED, HALF_OPEN_SHARED
from ikev1.policy import (
    DpdSettings,
    Identity,
    Phase1Proposal,
    RemotePolicy,
    RetransmitTimer,
    TrafficSelector,
)

from .harness import PSK, A, B, advance, events, gre_selector, make_config, of_type, pair, pump

pytestmark = pytest.mark.fuzz

C = "198.18.0.3"  # a third configured peer
ATTACKER = "203.0.113.66"
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
TEARDOWN = (Phase1Down, SaDeleted, SaExpired, PeerDead, NegotiationFailed)

REFLECTED_MM3 = (
    "phase1._i_mm4 takes the initiator's own main mode 3 (HDR, KE, Ni: the shape of message 4) "
    "sent back to it from the peer's address: it derives keys from its own g^x and nonce, sends "
    "MM5 and moves to I_MM5, so the real MM4 is dropped ('unexpected': not encrypted) and the "
    "exchange times out. _i_mm4 should refuse a KE equal to p1.gxi (or a nonce equal to "
    "p1.ni_b) as an unauthenticated failure, which _receive_phase1 then undoes")


def _anonymous(config, modes=("main", "aggressive")):
    """`remote anonymous` beside the configured peer: forged first messages from anywhere get
    state, which is what an attacker wants."""
    anon = RemotePolicy("anonymous", config.remotes[0].proposals, exchange_mode=modes)
    return replace(config, remotes=(*config.remotes, anon))


def _adversary_pair(mode: str) -> tuple[Engine, Engine]:
    remote = {"exchange_mode": (mode,)}
    a, b = pair({"remote": remote}, {"remote": remote})
    a.config, b.config = _anonymous(a.config), _anonymous(b.config)
    return a, b


def _mirrored(ua: Phase2Up, ub: Phase2Up) -> bool:
    return ua.inbound == ub.outbound and ua.outbound == ub.inbound


def _first_message(mode: str, source: str, dest: str, seed: int = 7,
                   lifetime_s: int = 86400) -> bytes:
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=lifetime_s),)
    eng = Engine(make_config(source, dest, proposals=props, remote={"exchange_mode": (mode,)}),
                 rng=random.Random(seed).randbytes)
    eng.initiate(dest, 0.0, gre_selector(source), gre_selector(dest))
    ((first, _, _),) = eng.datagrams_to_send()
    return first


def _payloads(dgram: bytes) -> list:
    hdr = decode_header(dgram)
    return decode_payloads(hdr.next_payload, dgram[HEADER_LEN:hdr.length])


# --- 1. forgeries interleaved with a real negotiation -------------------------------------------

class Wire:
    """The in-memory network: what is in flight, in order, and what was delivered (an
    eavesdropper sees it pass; it cannot overtake a datagram in flight). A datagram to any other
    address or port than the engines' IKE ports reaches only the attacker."""

    def __init__(self, a: Engine, b: Engine) -> None:
        self.engines = {A: a, B: b}
        self.flight: deque[tuple[bytes, tuple, tuple]] = deque()
        self.delivered: list[tuple[bytes, tuple, tuple]] = []

    def collect(self) -> int:
        out = [(d, lo, pe) for eng in self.engines.values() for d, lo, pe in
               eng.datagrams_to_send()]
        self.flight.extend(out)
        return len(out)

    def deliver_next(self, now: float, *, drop: bool = False) -> None:
        dgram, src, dst = self.flight.popleft()
        eng = self.engines.get(dst[0])
        if drop or eng is None or dst[1] not in (500, 4500):
            return
        eng.receive_datagram(dgram, dst, src, now)
        self.delivered.append((dgram, src, dst))

    def drain(self, now: float) -> None:
        for _ in range(400):
            self.collect()
            if not self.flight:
                return
            self.deliver_next(now)
        raise AssertionError("engines still talking")

    def run_timers(self, now: float, until: float) -> float:
        """Fire both engines' timers in order up to `until`, draining after each."""
        for _ in range(10000):
            due = [t for eng in self.engines.values() if (t := eng.get_timer()) is not None
                   and t <= until]
            if not due:
                return until
            now = max(now, min(due))
            for eng in self.engines.values():
                eng.handle_timer(now)
            self.drain(now)
        raise AssertionError("timer loop did not settle")

    def known_cookies(self) -> list[tuple[bytes, bytes]]:
        return sorted({(d[:8], d[8:16]) for d, _, _ in self.delivered if len(d) >= 16})


def _mutate(draw, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 48))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif data:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


FIRST = {(mode, src, dst): _first_message(mode, src, dst)
         for mode in ("main", "aggressive") for src, dst in ((A, B), (B, A))}
KINDS = ["random", "mutated", "replayed", "reflected", "first", "first-anywhere",
         "clear-notify", "clear-delete", "encrypted-garbage"]


def _forge(draw, wire: Wire, now: float) -> tuple[bytes, tuple, tuple] | None:
    """One forged datagram: (data, from, to)."""
    kind = draw(st.sampled_from(KINDS))
    to = draw(st.sampled_from([A, B]))
    other = B if to == A else A
    spoof_port = draw(st.sampled_from([500, 500, 4500, 31337]))
    dst = (to, 500)
    if kind == "random":
        return draw(st.binary(max_size=300)), (other, spoof_port), dst
    if kind in ("mutated", "replayed", "reflected"):
        if not wire.delivered:
            return None
        dgram, src, rcv = draw(st.sampled_from(wire.delivered))
        if kind == "mutated":
            return _mutate(draw, dgram), src, rcv
        if kind == "replayed":
            return dgram, src, rcv
        return dgram, rcv, src  # back to its sender, from the address it went to
    if kind in ("first", "first-anywhere"):
        mode = draw(st.sampled_from(["main", "aggressive"]))
        template = FIRST[(mode, other, to)]
        cookie = draw(st.binary(min_size=8, max_size=8))
        if kind == "first":
            src = (other, spoof_port)
        else:
            src = (f"198.19.{draw(st.integers(0, 255))}.{draw(st.integers(1, 254))}", 500)
        return cookie + template[8:], src, dst
    cookies = wire.known_cookies()
    if not cookies:
        return None
    icookie, rcookie = draw(st.sampled_from(cookies))
    if kind == "encrypted-garbage":
        exchange = draw(st.sampled_from([2, 4, 5, 32]))
        body = draw(st.binary(min_size=0, max_size=120))
        mid = draw(st.integers(0, 2**32 - 1))
        head = struct.pack("!BBBBII", draw(st.integers(0, 140)), 0x10, exchange,
                           draw(st.integers(0, 7)), mid, 28 + len(body))
        return icookie + rcookie + head + body, (other, 500), dst
    mid = draw(st.sampled_from([0, draw(st.integers(1, 2**32 - 1))]))
    hdr = Header(icookie, rcookie, 0, Exchange.INFORMATIONAL, 0, mid)
    if kind == "clear-notify":
        code = draw(st.sampled_from([Notify.INVALID_SPI, Notify.NO_PROPOSAL_CHOSEN,
                                     Notify.AUTHENTICATION_FAILED, Notify.INVALID_COOKIE,
                                     Notify.INITIAL_CONTACT, Notify.R_U_THERE,
                                     Notify.R_U_THERE_ACK, Notify.CONNECTED]))
        payload = NotifyPayload(code, Proto.ISAKMP, icookie + rcookie, bytes(4))
    else:
        spis = [sa.spi_in for eng in wire.engines.values() for sa in eng._p2.values()]
        if spis and draw(st.booleans()):  # ESP SPIs are on the wire in every ESP packet
            payload = DeletePayload(Proto.ESP, (draw(st.sampled_from(spis)).to_bytes(4, "big"),))
        else:
            payload = DeletePayload(Proto.ISAKMP, (icookie + rcookie,))
    return encode_message(hdr, [payload]), (other, 500), dst


def _negotiate_under_attack(data, *, mode: str, initiator: str, budget: int = 16):
    a, b = _adversary_pair(mode)
    if initiator == "a":
        a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    else:
        b.initiate(A, 0.0, gre_selector(B), gre_selector(A))
    wire = Wire(a, b)
    now = 0.0
    forged = drops = 0
    lossy = data.draw(st.booleans())
    for _ in range(80):
        wire.collect()
        if not wire.flight and forged >= budget:
            break
        if forged < budget and (not wire.flight or data.draw(st.integers(0, 2)) == 0):
            item = _forge(data.draw, wire, now)
            forged += 1
            if item is None:
                continue
            dgram, src, dst = item
            target = wire.engines[dst[0]]
            seen = len(target._events)
            target.receive_datagram(dgram, dst, src, now)
            replies = target.datagrams_to_send()
            # one datagram and one event at most per forged datagram, and only a Refused
            assert len(replies) <= 1, (item, replies)
            caused = list(target._events)[seen:]
            assert len(caused) <= 1 and all(isinstance(e, Refused) for e in caused), caused
            wire.flight.extend(replies)
            continue
        if wire.flight:
            drop = lossy and drops < 3 and data.draw(st.integers(0, 4)) == 0
            drops += drop
            wire.deliver_next(now, drop=drop)
    wire.drain(now)
    if lossy:  # what was lost comes again within the resends, before any exchange gives up
        wire.run_timers(now, 55.0)
    ea, eb = events(a), events(b)
    assert a.counters["internal_errors"] == b.counters["internal_errors"] == 0
    assert not [e for e in ea + eb if isinstance(e, TEARDOWN)], (ea, eb)
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert _mirrored(ua, ub)
    assert ua.initiator == (initiator == "a") and ub.initiator == (initiator == "b")


@pytest.mark.parametrize("initiator", ["a", "b"])
@pytest.mark.parametrize("mode", ["main", "aggressive"])
@PROPERTY
@given(data=st.data())
def test_forgeries_interleaved_with_a_negotiation_change_nothing(data, mode, initiator):
    _negotiate_under_attack(data, mode=mode, initiator=initiator)


# --- 2. the deadline heap against a brute-force minimum ------------------------------------------

def _deadlines(eng: Engine) -> list[float]:
    """Every deadline the engine's state holds, read from the state itself, not the heap."""
    timer = eng.config.timer
    out: list[float | None] = []
    for p1 in eng._phase1:
        out += [p1.flight.resend_at, p1.expires_at, p1.rekey_at, p1.dpd.next_probe,
                p1.dpd.ack_deadline, p1.keepalive_at]
    for qx in eng._quick.values():
        out += [qx.flight.resend_at, qx.forget_at]
        if qx.forget_at is None and timer.phase2_timeout > 0:
            out.append(qx.created + timer.phase2_timeout)
    for sa in eng._p2.values():
        out.append(sa.hard_at)
        if not sa.rekeying and not sa.replaced:
            out.append(sa.soft_at)
    for pending in eng._acquires.values():
        if pending and timer.phase1_timeout > 0:
            out.append(min(since for *_, since in pending) + timer.phase1_timeout)
    return [t for t in out if t is not None]


def _brute(eng: Engine) -> float | None:
    times = _deadlines(eng)
    return min(times) if times else None


def _check_heap(eng: Engine) -> None:
    """get_timer() is never later than the first real deadline; handle_timer() at an earlier
    (lazy) time does nothing, and a few such calls reach the real deadline."""
    for _ in range(len(eng._timers) + 3):
        t, real = eng.get_timer(), _brute(eng)
        if real is None:
            return  # lazy entries may be left; nothing is lost
        assert t is not None and t <= real, f"lost timer: heap says {t}, state says {real}"
        if t == real:
            return
        seen = len(eng._events)
        eng.handle_timer(t)
        assert eng.datagrams_to_send() == [] and len(eng._events) == seen
    raise AssertionError("lazy entries did not resolve within a few calls")


def _fire(eng: Engine, now: float) -> None:
    eng.handle_timer(now)
    left = [t for t in _deadlines(eng) if t <= now]
    assert not left, f"handle_timer({now}) left work due at {left}"


def _timer_pair(data) -> tuple[Engine, Engine]:
    timer = RetransmitTimer(counter=data.draw(st.integers(1, 3)),
                            interval=data.draw(st.sampled_from([1.0, 2.5, 4.0])),
                            phase1_timeout=data.draw(st.sampled_from([0.0, 6.0, 15.0])),
                            phase2_timeout=data.draw(st.sampled_from([0.0, 5.0, 12.0])))
    p1_life = data.draw(st.sampled_from([60, 150]))
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=p1_life),)
    common = {"proposals": props, "timer": timer,
              "sainfo": {"lifetime_s": data.draw(st.sampled_from([40, 100])),
                         "pfs_group": data.draw(st.sampled_from([None, 2]))}}
    a_remote = {"lifetime_s": p1_life, "rekey": data.draw(st.sampled_from(["on", "force"])),
                "dpd": DpdSettings(data.draw(st.sampled_from([0, 7, 20])), 2, 2)}
    return pair({**common, "remote": a_remote},
                {**common, "remote": {"lifetime_s": p1_life, "dpd": DpdSettings(9, 3, 2)}})


ANY_A = TrafficSelector(gre_selector(A).network, 0, 0)
ANY_B = TrafficSelector(gre_selector(B).network, 0, 0)


@settings(PROPERTY, max_examples=100)
@given(data=st.data())
def test_the_timer_is_never_later_than_the_state_says(data):
    a, b = _timer_pair(data)
    wire = Wire(a, b)
    sides = {"a": (a, B, A), "b": (b, A, B)}
    now = 0.0
    for _ in range(data.draw(st.integers(5, 45))):
        op = data.draw(st.sampled_from(
            ["initiate", "initiate", "pump", "pump", "pump", "deliver", "drop",
             "delete_phase1", "delete_phase2", "flush", "soft", "hard", "exact", "exact",
             "exact", "late"]))
        eng, peer, me = sides[data.draw(st.sampled_from(["a", "b"]))]
        if op == "initiate":
            sels = data.draw(st.sampled_from([(gre_selector(me), gre_selector(peer)),
                                              (None, None), (ANY_A, ANY_B)]))
            eng.initiate(peer, now, *sels)
        elif op == "pump":
            wire.drain(now)
        elif op in ("deliver", "drop"):
            wire.collect()
            for _ in range(data.draw(st.integers(1, 6))):
                if wire.flight:
                    wire.deliver_next(now, drop=op == "drop")
        elif op == "delete_phase1":
            eng.delete_phase1(peer, now)
        elif op == "flush":
            eng.flush(now)
        elif op in ("delete_phase2", "soft", "hard"):
            if eng._p2:
                spi = data.draw(st.sampled_from(sorted(eng._p2)))
                {"delete_phase2": eng.delete_phase2, "soft": eng.sa_soft_expired,
                 "hard": eng.sa_hard_expired}[op](spi, now)
        elif op == "exact":  # the shell wakes at each timer, on time
            until = now + data.draw(st.sampled_from([0.5, 3.0, 11.0, 40.0]))
            connected = data.draw(st.booleans())  # the wire carries what the timers send
            for _ in range(2000):
                due = [t for e in (a, b) if (t := e.get_timer()) is not None and t <= until]
                if not due:
                    break
                now = max(now, min(due))
                _fire(a, now)
                _fire(b, now)
                if connected:
                    wire.drain(now)
                wire.collect()
                _check_heap(a), _check_heap(b)
            now = until
        else:  # the shell wakes late, once
            now += data.draw(st.sampled_from([1.0, 7.0, 33.0]))
            _fire(a, now)
            _fire(b, now)
        wire.collect()
        _check_heap(a)
        _check_heap(b)
    assert a.counters["internal_errors"] == b.counters["internal_errors"] == 0


# --- 3. single attacks ---------------------------------------------------------------------------

def _up(a: Engine, b: Engine, now: float = 0.0, *, by: str = "a"
        ) -> tuple[list, Phase2Up, Phase2Up]:
    first, peer, lsel, rsel = ((a, B, gre_selector(A), gre_selector(B)) if by == "a"
                               else (b, A, gre_selector(B), gre_selector(A)))
    first.initiate(peer, now, lsel, rsel)
    wire = pump(a, b, now)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert _mirrored(ua, ub)
    return wire, ua, ub


def _state(eng: Engine) -> tuple:
    return ([p for p in eng.phase1_sas() if p["state"] == "established"], eng.phase2_sas())


def _stepwise(a: Engine, b: Engine, now: float, after_each) -> list:
    """Carry one datagram at a time, in order, calling after_each(index, datagram, src, dst)
    once each is delivered; returns what was carried."""
    engines = {A: a, B: b}
    queue: deque = deque()
    carried = []
    for _ in range(200):
        for eng in (a, b):
            queue.extend(eng.datagrams_to_send())
        if not queue:
            return carried
        dgram, src, dst = queue.popleft()
        if dst[0] not in engines:
            continue  # to the attacker
        engines[dst[0]].receive_datagram(dgram, dst, src, now)
        carried.append((dgram, src, dst))
        after_each(len(carried) - 1, dgram, src, dst)
    raise AssertionError("engines still talking")


# Reflection: each of our messages sent back to us from the peer's address, right after the peer
# got it, at every stage of main mode, aggressive mode and quick mode, both roles.

def _reflection_stages(mode: str) -> int:
    a, b = _adversary_pair(mode)
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    return len(_stepwise(a, b, 0.0, lambda *_: None))


_MAIN_STAGES = _reflection_stages("main")
_AGGRESSIVE_STAGES = _reflection_stages("aggressive")
_MM3 = 2  # the third datagram of main mode: the initiator's KE and nonce


@pytest.mark.parametrize("stage", [
    *[pytest.param(("main", i), id=f"main-{i}") for i in range(_MAIN_STAGES)],
    *[pytest.param(("aggressive", i), id=f"aggressive-{i}") for i in range(_AGGRESSIVE_STAGES)]])
def test_each_message_reflected_to_its_sender_changes_nothing(stage):
    mode, index = stage
    a, b = _adversary_pair(mode)
    engines = {A: a, B: b}
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))

    def reflect(i, dgram, src, dst):
        if i == index:
            engines[src[0]].receive_datagram(dgram, src, dst, 0.0)

    _stepwise(a, b, 0.0, reflect)
    ea, eb = events(a), events(b)
    if not (of_type(ea, Phase2Up) and of_type(eb, Phase2Up)):
        advance(a, b, 0.0, 200.0)  # let it fail the way it would, to show how
        ea, eb = ea + events(a), eb + events(b)
    assert not of_type(ea + eb, NegotiationFailed), (ea, eb)
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert _mirrored(ua, ub)


def test_a_reflected_main_mode_3_hijacks_our_initiator():
    """The reflection above, in four lines of wire, with the state it leaves."""
    a, b = pair()
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, la, pb),) = a.datagrams_to_send()
    b.receive_datagram(mm1, pb, la, 0.0)
    ((mm2, _, _),) = b.datagrams_to_send()
    a.receive_datagram(mm2, la, pb, 0.0)
    ((mm3, _, _),) = a.datagrams_to_send()
    b.receive_datagram(mm3, pb, la, 0.0)
    mm4 = b.datagrams_to_send()
    a.receive_datagram(mm3, la, pb, 0.0)  # a's own message 3, from b's address
    state_after = a.phase1_sas()[0]["state"]
    a.datagrams_to_send()
    for dgram, lo, pe in mm4:
        a.receive_datagram(dgram, pe, lo, 0.0)
    pump(a, b, 0.0)
    assert state_after == "I_MM3"  # is I_MM5: a sent MM5 under keys nobody else has
    assert of_type(events(a), Phase2Up) and of_type(events(b), Phase2Up)



# A forged first message whose initiator cookie is one of ours, or an established SA's

@pytest.mark.parametrize("holder", ["initiator", "responder"])
@pytest.mark.parametrize("source", ["peer", "peer-other-port", "elsewhere"])
def test_a_first_message_with_the_cookie_of_an_established_sa_changes_nothing(holder, source):
    a, b = _adversary_pair("main")
    _up(a, b, by="a" if holder == "responder" else "b")
    p1 = b._newest_p1(A)
    before = _state(b)
    src = {"peer": (A, 500), "peer-other-port": (A, 31337), "elsewhere": (ATTACKER, 500)}[source]
    for mode in ("main", "aggressive"):
        forged = p1.icookie + FIRST[(mode, A, B)][8:]
        b.receive_datagram(forged, (B, 500), src, 1.0)
    b.datagrams_to_send()
    assert _state(b) == before and not of_type(events(b), Phase1Down)
    advance(a, b, 1.0, 100.0)  # the forged exchanges time out; DPD keeps the real one
    evs = events(a) + events(b)
    assert not [e for e in evs if isinstance(e, TEARDOWN)] and _state(b) == before


def test_a_first_message_with_the_cookie_of_our_exchange_in_progress_changes_nothing():
    a, b = _adversary_pair("main")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    (ours,) = a._initiating

    def collide(i, dgram, src, dst):
        hdr = decode_header(dgram)
        real = hdr.rcookie == bytes(8) or (ours, hdr.rcookie) in b._by_cookies
        if src[0] == A and hdr.icookie == ours and real and hdr.exchange == Exchange.MAIN:
            for mode in ("main", "aggressive"):
                forged = dgram[:8] + FIRST[(mode, B, A)][8:]
                a.receive_datagram(forged, (A, 500), (B, 500), 0.0)
                a.receive_datagram(forged, (A, 500), (ATTACKER, 500), 0.0)

    _stepwise(a, b, 0.0, collide)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert _mirrored(ua, ub)


# An on-path attacker who sees message n of main mode and answers before the real peer does

EAVESDROPPER = (
    "main mode messages 1-4 carry no authentication, and an exchange takes the first "
    "well-formed one that arrives from the peer's address: a forged MM1 with the peer's cookie, "
    "a forged MM2 (any responder cookie, one offered transform), MM3 or MM4 (the attacker's own "
    "KE) moves the exchange on, after which the real message is dropped and the exchange times "
    "out. Nothing fails before the HASH, so the undo in _receive_phase1 never runs; holding "
    "would need the pre-message state kept for the real message (a fork per distinct reply) "
    "until MM5/MM6 authenticates one")


def _forged_reply(n: int, real: bytes, seen: bytes) -> bytes:
    """Message n as an attacker makes it from what it saw (message n-1, or n's own header)."""
    hdr = decode_header(seen)
    if n == 1:  # the peer's cookie, another offer we accept (another lifetime)
        return real[:8] + _first_message("main", A, B, lifetime_s=3600)[8:]
    if n == 2:
        offer = next(p for p in _payloads(seen) if isinstance(p, SaPayload))
        prop = offer.proposals[0]
        choice = SaPayload((prop.__class__(prop.number, prop.protocol, prop.spi,
                                           prop.transforms[:1]),), offer.doi, offer.situation)
        out = Header(hdr.icookie, b"\x66" * 8, 0, Exchange.MAIN, 0, 0)
        return encode_message(out, [choice])
    _, gx = crypto.dh_group(2).generate(random.Random(n).randbytes)  # the attacker's own
    out = Header(hdr.icookie, hdr.rcookie, 0, Exchange.MAIN, 0, 0)
    return encode_message(out, [KePayload(gx), NoncePayload(b"\x42" * 16)])


@pytest.mark.xfail(strict=True, reason=EAVESDROPPER)
@pytest.mark.parametrize("n", [1, 2, 3, 4], ids=lambda n: f"forged-mm{n}")
def test_an_eavesdropper_answering_first_stops_main_mode(n):
    a, b = pair()
    engines = {A: a, B: b}
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    wire = []
    for _ in range(20):
        out = [x for eng in (a, b) for x in eng.datagrams_to_send()]
        if not out:
            break
        for dgram, src, dst in out:
            wire.append(dgram)
            if len(wire) == n:  # the attacker saw message n-1 (or n) pass: its forgery first
                seen = wire[-2] if n > 1 else dgram
                engines[dst[0]].receive_datagram(_forged_reply(n, dgram, seen), dst, src, 0.0)
                engines[dst[0]].datagrams_to_send()
            engines[dst[0]].receive_datagram(dgram, dst, src, 0.0)
    ea = events(a)
    if not of_type(ea, Phase2Up):
        advance(a, b, 0.0, 200.0)
        ea = ea + events(a)
    assert not of_type(ea, NegotiationFailed)
    assert of_type(ea, Phase2Up)


# An authenticated peer naming another peer's SA

def _hub() -> tuple[Engine, Engine, Engine]:
    """b serves a and c, each with its own key."""
    a = Engine(make_config(A, B), rng=random.Random(31).randbytes)
    c = Engine(make_config(C, B, psk=b"c's own key"), rng=random.Random(32).randbytes)
    ca, cc = make_config(B, A), make_config(B, C)
    b = Engine(replace(ca, remotes=(*ca.remotes, *cc.remotes), psk={A: PSK, C: b"c's own key"}),
               rng=random.Random(33).randbytes)
    return a, b, c


def _carry(engines: dict[str, Engine], now: float) -> None:
    for _ in range(40):
        out = [x for eng in engines.values() for x in eng.datagrams_to_send()]
        if not out:
            return
        for dgram, src, dst in out:
            if dst[0] in engines:
                engines[dst[0]].receive_datagram(dgram, dst, src, now)
    raise AssertionError("engines still talking")


def test_a_peer_deleting_or_contacting_anew_touches_only_its_own_sas():
    a, b, c = _hub()
    engines = {A: a, B: b, C: c}
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    c.initiate(B, 0.0, gre_selector(C), gre_selector(B))
    _carry(engines, 0.0)
    for eng in engines.values():
        assert of_type(events(eng), Phase2Up)
    a_p1 = b._newest_p1(A)
    a_spis = [s.to_bytes(4, "big") for sa in b._peer_p2(A) for s in (sa.spi_in, sa.spi_out)]
    before = [x for x in _state(b)[0] if x["dst"] == A], [x for x in _state(b)[1]
                                                           if x["dst"] == A]
    c_p1 = c._newest_p1(B)
    c._send_info(c_p1, [DeletePayload(Proto.ISAKMP, (a_p1.spi,))])
    c._send_info(c_p1, [DeletePayload(Proto.ESP, tuple(a_spis))])
    c._send_info(c_p1, [NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, c_p1.spi)])
    c._send_info(c_p1, [NotifyPayload(Notify.NO_PROPOSAL_CHOSEN, Proto.ESP, a_spis[0])])
    _carry(engines, 1.0)
    after = [x for x in _state(b)[0] if x["dst"] == A], [x for x in _state(b)[1] if x["dst"] == A]
    assert after == before and not events(b) and not events(a)


# Floods: what thousands of forged datagrams of every kind leave behind

def test_a_flood_of_every_kind_of_forgery_leaves_bounded_state_and_traffic():
    a, b = _adversary_pair("main")
    b.config = _anonymous(replace(b.config, remotes=(replace(b.config.remotes[0], exchange_mode=(
        "main", "aggressive")),)))
    wire, _, _ = _up(a, b)
    real = [d for d, _, _ in wire]
    p1 = b._newest_p1(A)
    rng = random.Random(41)
    sent_in = 0
    out = []
    evs = []
    for i in range(6000):
        now = 1.0 + i / 1000  # a thousand a second, six seconds
        src = ((A, rng.randrange(1024, 65536)) if i % 7 == 0
               else (f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}", 500))
        kind = i % 6
        if kind in (0, 1):
            dgram = rng.randbytes(8) + FIRST[("main" if kind == 0 else "aggressive", A, B)][8:]
        elif kind == 2:
            dgram = rng.randbytes(rng.randrange(0, 200))
        elif kind == 3:
            base = bytearray(rng.choice(real))
            for _ in range(3):
                if base:
                    base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            dgram = bytes(base)
        elif kind == 4:
            hdr = Header(p1.icookie, p1.rcookie, 0, Exchange.INFORMATIONAL, 0, rng.randrange(2**32))
            dgram = encode_message(hdr, [rng.choice([
                NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, p1.spi),
                DeletePayload(Proto.ISAKMP, (p1.spi,)),
                NotifyPayload(rng.randrange(1, 31), Proto.ISAKMP, p1.spi)])])
            src = (A, 500)
        else:
            body = rng.randbytes(rng.randrange(16, 160))
            dgram = p1.icookie + p1.rcookie + struct.pack(
                "!BBBBII", 8, 0x10, rng.choice([5, 32]), 1, rng.randrange(2**32),
                28 + len(body)) + body
            src = (A, 500)
        b.receive_datagram(dgram, (B, 500), src, now)
        sent_in += 1
        out += b.datagrams_to_send()
        b.handle_timer(now)
        out += b.datagrams_to_send()
        evs += events(b)
        assert len(b._phase1) <= HALF_OPEN_SHARED + HALF_OPEN_RESERVED + 1
        assert len(b._first_seen) <= HALF_OPEN_SHARED + HALF_OPEN_RESERVED
    assert len(out) <= sent_in  # no amplification in datagrams
    assert len(evs) <= 20 and not [e for e in evs if isinstance(e, TEARDOWN)]
    assert set(b._peers) == {A} and len(b._half_open) <= HALF_OPEN_SHARED + HALF_OPEN_RESERVED
    assert len(b._notify_replies._by_source) <= 4096 and len(b._refusals._next) <= 20
    assert len(b._timers._heap) <= max(64, 4 * len(b._timers))  # superseded entries compacted
    assert b.counters["internal_errors"] == 0
    Wire(a, b).run_timers(7.0, 200.0)  # everything forged times out; DPD keeps the real pair
    assert len(b._phase1) == 1 and len(b._timers) <= 2 and not b._first_seen
    assert not [e for e in events(a) + events(b) if isinstance(e, TEARDOWN)]


def test_a_flood_of_forged_first_messages_never_evicts_our_own_initiation():
    a, b = _adversary_pair("main")
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((mm1, la, pb),) = a.datagrams_to_send()
    rng = random.Random(42)
    for _ in range(HALF_OPEN_RESERVED * 3):  # as b, and from everywhere
        for mode in ("main", "aggressive"):
            forged = rng.randbytes(8) + FIRST[(mode, B, A)][8:]
            a.receive_datagram(forged, la, (B, rng.choice([500, 4500, 31337])), 0.1)
            a.receive_datagram(forged, la, (f"198.19.0.{rng.randrange(1, 255)}", 500), 0.1)
    a.datagrams_to_send()
    assert mm1[:8] in a._initiating
    b.receive_datagram(mm1, pb, la, 0.2)
    pump(a, b, 0.2)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    assert _mirrored(ua, ub)


# --- the breaks ----------------------------------------------------------------------------------

KEEPALIVE_SPIN = (
    "natt._float (called from phase1._i_mm4 when a NAT is seen) arms keepalive_at while main "
    "mode is still in I_MM5; phase1._p1_timers returns before _keepalive_timer until the SA is "
    "up, yet engine._schedule counts keepalive_at, so once it passes, get_timer() stays at that "
    "past time and every handle_timer() finds it due again: the shell spins until MM6 arrives "
    "or the exchange times out")


def test_handle_timer_leaves_nothing_due_while_main_mode_waits_behind_a_nat():
    natt = {"remote": {"nat_traversal": "force"}}  # as if behind a NAT: a floats after MM4
    a, b = pair(natt, {"remote": {"nat_traversal": "on"}})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))

    def no_mm6(dgram, src, dst):
        ike = dgram[4:] if dgram[:4] == bytes(4) else dgram  # the non-ESP marker on 4500
        return not (src == B and ike[19] & 1)

    pump(a, b, 0.0, deliver=no_mm6)  # a waits in I_MM5 past natt_keepalive (20 s)
    assert a.phase1_sas()[0]["state"] == "I_MM5"
    now = 0.0
    for _ in range(6):
        now = a.get_timer()
        assert now is not None and now <= 60.0
        _fire(a, now)  # raises: handle_timer(20.0) leaves 20.0 due, forever
        a.datagrams_to_send()


RECONFIGURE = (
    "Engine.reconfigure() swaps config.timer without rescheduling anything: waiting acquires "
    "(phase1_timeout) and quick modes (phase2_timeout) keep heap entries computed from the old "
    "values, while _acquire_timers/_quick_timers judge by the new ones, so a shorter timeout "
    "fires late, and one that was 0 never gets an entry at all")


@pytest.mark.parametrize("old", [30.0, 0.0])
def test_a_reload_with_a_shorter_phase1_timer_is_not_a_lost_timer(old):
    a, b = pair({"timer": RetransmitTimer(phase1_timeout=old)})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    a.datagrams_to_send()  # lost: phase 1 waits for its resends
    a.reconfigure(replace(a.config, timer=RetransmitTimer(phase1_timeout=5.0)), 1.0)
    _check_heap(a)  # raises: the heap says 10.0 (a resend), the acquire is due at 5.0


FOLDING = (
    "informational._plain_informational keeps notify_name(msg_type) of any cleartext error "
    "notify (8191 codes, NOTIFY-<n> for unknown ones) in p1.problem, and phase1._fail_phase1 "
    "folds the timeout's Refused event by that text: one cleartext notify per half-open exchange "
    "(the attacker saw its own MM2, so it knows both cookies) makes one Refused event each, and "
    "a FoldedEvents key each, instead of one event per reason per minute")


def test_attacker_chosen_notify_codes_do_not_unfold_refused_events():
    a, b = pair()
    b.config = _anonymous(b.config, modes=("main",))
    rng = random.Random(51)
    exchanges = 0
    for host in range(1, 26):  # 25 addresses the attacker owns, 8 exchanges each
        for _ in range(HALF_OPEN_PER_SOURCE):
            src = (f"198.19.7.{host}", 500)
            b.receive_datagram(rng.randbytes(8) + FIRST[("main", A, B)][8:], (B, 500), src, 0.0)
            ((mm2, local, peer),) = b.datagrams_to_send()
            exchanges += 1
            hdr = Header(mm2[:8], mm2[8:16], 0, Exchange.INFORMATIONAL, 0, 0)
            code = 1000 + exchanges  # any error type, a new one each time
            b.receive_datagram(encode_message(hdr, [NotifyPayload(code, Proto.ISAKMP, mm2[:16])]),
                               local, peer, 0.5)
    events(b)
    while (t := b.get_timer()) is not None:
        b.handle_timer(t)
    refused = of_type(events(b), Refused)
    assert exchanges == 200
    assert len(refused) <= 5, f"{len(refused)} Refused events, e.g. {refused[0].reason!r}"


REPLAYED_CONTACT = (
    "sa.MessageIds remembers only the latest 4096 message IDs a peer used on an ISAKMP SA; DPD "
    "alone passes that on a long-lived SA (both sides probing), after which a captured encrypted "
    "INITIAL-CONTACT informational from the SA's first second verifies and is claimed again, and "
    "informational._initial_contact purges every newer ISAKMP SA with the peer and the pairs made "
    "under it: the live tunnel is torn down by a replay. Remembering the IDs for the SA's whole "
    "life, or honouring INITIAL-CONTACT only under the peer's newest ISAKMP SA, would hold")


def test_a_replayed_initial_contact_never_tears_down_the_tunnel_however_late():
    props = (Phase1Proposal("aes", "sha1", 2, lifetime_s=3000),)
    kw = {"proposals": props, "remote": {"lifetime_s": 3000, "dpd": DpdSettings(1, 1, 2)},
          "sainfo": {"lifetime_s": 3400}}
    a, b = pair(kw, kw)
    wire, _, _ = _up(a, b)
    (contact,) = [d for d, src, _ in wire if src == A and d[18] == Exchange.INFORMATIONAL]
    advance(a, b, 0.0, 2750.0)  # phase 1 renewed at 2700, the pair under it at 2720
    events(a), events(b)
    assert len(b.phase1_sas()) == 2 and b.phase2_sas()[0]["created"] >= 2700
    b.receive_datagram(contact, (B, 500), (A, 500), 2750.0)  # a copy taken at second 0
    evs = events(b)
    assert not of_type(evs, SaDeleted) and not of_type(evs, Phase1Down), evs
    assert len(b.phase1_sas()) == 2 and len(b.phase2_sas()) == 1


IDENTITY = (
    "in aggressive mode the pre-shared key is looked up by the peer's ID (phase1._psk via "
    "ids.identity_text) before the address, and identity_text turns an ID_IPV4_ADDR into the "
    "text of the address, the way psk.txt names peers: whoever holds C's key, answering from (or "
    "for) A's address with ID C, authenticates as A's address; nothing binds the ID to the "
    "address unless verify_identifier is set (off by default). At b it sends INITIAL-CONTACT "
    "under the new SA and a's tunnel is purged; at a it stands in for b")


@pytest.mark.parametrize("victim", ["responder", "initiator"])
def test_another_peers_key_never_authenticates_this_peers_address(victim):
    aggressive = {"exchange_mode": ("aggressive",)}
    key_c = b"c's own key"
    c_ident = {**aggressive, "my_identifier": Identity("address", C)}
    if victim == "responder":  # b serves a and c; the holder of c's key speaks from a's address
        a = Engine(make_config(A, B, remote=aggressive), rng=random.Random(61).randbytes)
        ca, cc = make_config(B, A, remote=aggressive), make_config(B, C, remote=aggressive)
        b = Engine(replace(ca, remotes=(*ca.remotes, *cc.remotes), psk={A: PSK, C: key_c}),
                   rng=random.Random(62).randbytes)
        _up(a, b)
        x = Engine(make_config(A, B, psk=key_c, remote=c_ident), rng=random.Random(63).randbytes)
        x.initiate(B, 5.0, gre_selector(A), gre_selector(B))
        pump(x, b, 5.0)
        evs = events(b)
        assert not of_type(evs, SaDeleted) and not of_type(evs, Phase1Up), evs
    else:  # a knows b and c; the holder of c's key answers a's first message for b
        ca = make_config(A, B, remote=aggressive)
        a = Engine(replace(ca, psk={B: PSK, C: key_c}), rng=random.Random(64).randbytes)
        x = Engine(make_config(B, A, psk=key_c, remote=c_ident), rng=random.Random(65).randbytes)
        a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
        pump(a, x, 0.0)
        assert not of_type(events(a), Phase1Up)


UNBOUNDED_PROVEN = (
    "limits.HalfOpenPool bounds only exchanges before message 3; engine._p1_proven takes a "
    "responder exchange out of the pool at MM3, though its peer is authenticated only at MM5. "
    "A host at a configured peer's address (the peer, or anything on its path) needs no key to "
    "hold any number of R_MM4 exchanges, each with a Diffie-Hellman computed for it")


def test_exchanges_past_message_3_from_one_source_are_bounded():
    a, b, _ = _hub()
    keyless = Engine(make_config(C, B, psk=b"not c's key"), rng=random.Random(71).randbytes)
    for _ in range(3 * HALF_OPEN_RESERVED):
        keyless.initiate(B, 0.0, gre_selector(C), gre_selector(B))
        for _ in range(2):  # MM1 -> MM2 -> MM3 -> MM4, then it walks away
            ((dgram, lo, pe),) = keyless.datagrams_to_send()
            b.receive_datagram(dgram, pe, lo, 0.0)
            ((reply, _, _),) = b.datagrams_to_send()
            keyless.receive_datagram(reply, lo, pe, 0.0)
        keyless.flush(0.0)
        keyless.datagrams_to_send(), events(keyless)
    assert len(b._phase1) <= HALF_OPEN_RESERVED, f"{len(b._phase1)} exchanges held for {C}"


def test_spoofing_a_peers_address_in_aggressive_mode_does_not_lock_it_out():
    """Below the shared pacing rate a flood spoofing the peer's address no longer holds it off
    (above it, aggressive mode is held off: a documented limit; main mode is not)."""
    aggressive = {"remote": {"exchange_mode": ("aggressive",)}}
    a, b = pair(aggressive, aggressive)
    wire = Wire(a, b)
    rng = random.Random(81)
    up_at = None
    for tick in range(600):  # a minute, 20 forged AM1 a second from a's address
        now = tick * 0.1
        for _ in range(2):
            forged = rng.randbytes(8) + FIRST[("aggressive", A, B)][8:]
            b.receive_datagram(forged, (B, 500), (A, rng.randrange(1024, 65536)), now)
        if tick == 10:
            a.initiate(B, now, gre_selector(A), gre_selector(B))
        a.handle_timer(now)
        b.handle_timer(now)
        wire.drain(now)
        if up_at is None and of_type(events(a), Phase2Up):
            up_at = now
    assert b.counters["half_open_evicted"] > 0  # the flood did reach b's room for a
    assert up_at is not None, "a's aggressive mode never got through"


class _Watched(dict):
    """A dict that counts every walk over it."""

    walks = 0

    def __iter__(self):
        _Watched.walks += 1
        return super().__iter__()

    def keys(self):
        _Watched.walks += 1
        return super().keys()

    def values(self):
        _Watched.walks += 1
        return super().values()

    def items(self):
        _Watched.walks += 1
        return super().items()


def test_no_datagram_or_timer_walks_every_sa():
    a, b = _adversary_pair("main")
    _up(a, b)
    rng = random.Random(91)
    for _ in range(300):  # state to walk over, if anything did
        src = (f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}", 500)
        b.receive_datagram(rng.randbytes(8) + FIRST[("main", A, B)][8:], (B, 500), src, 0.5)
    b.datagrams_to_send()
    for name in ("_phase1", "_by_cookies", "_initiating", "_first_seen", "_peers", "_p2",
                 "_quick", "_acquires"):
        setattr(b, name, _Watched(getattr(b, name)))
    _Watched.walks = 0
    p1 = b._newest_p1(A)
    for i in range(200):
        now = 1.0 + i * 0.01
        src = (f"198.19.{rng.randrange(256)}.{rng.randrange(1, 255)}", 500)
        b.receive_datagram(rng.randbytes(8) + FIRST[("main", A, B)][8:], (B, 500), src, now)
        b.receive_datagram(rng.randbytes(8) + FIRST[("aggressive", A, B)][8:], (B, 500), src,
                           now)
        hdr = Header(p1.icookie, p1.rcookie, 0, Exchange.INFORMATIONAL, 0, i + 1)
        b.receive_datagram(encode_message(hdr, [DeletePayload(Proto.ISAKMP, (p1.spi,))]),
                           (B, 500), (A, 500), now)
        b.handle_timer(now)
    Wire(a, b).run_timers(3.0, 45.0)  # DPD both ways, the forged exchanges timing out
    assert _Watched.walks == 0
    assert of_type(events(b), Refused) and not of_type(events(a), PeerDead)

