"""The ingress queue: what a received datagram's header says of its urgency, and a tunnel brought
up while forged first messages arrive many times faster than the engine can answer them."""

from __future__ import annotations

import random
from dataclasses import replace

from ikev1.engine import Engine
from ikev1.events import Phase2Up
from ikev1.ingress import QUEUE_LIMITS, TURN, IngressQueue, Priority

from .harness import A, B, events, gre_selector, make_config, of_type, pair, seeded
from .test_engine_attacks import ATTACKER_PORT, _first_message, _forged

STRANGER = "198.19.7.7"


def _anonymous_too(local: str, peer: str) -> Engine:
    """`remote PEER` plus a passive `remote anonymous`: first messages from anywhere answered."""
    cfg = make_config(local, peer)
    (named,) = cfg.remotes
    anonymous = replace(named, remote="anonymous", passive=True)
    return Engine(replace(cfg, remotes=(named, anonymous)), rng=seeded(1))


def test_the_header_says_how_urgent_a_datagram_is():
    a, b = _anonymous_too(A, B), Engine(make_config(B, A), rng=seeded(2))
    rng = random.Random(3)
    mm1 = _first_message(source=B, dest=A)
    forged_from_b = _forged(mm1, rng)
    assert a.ingress_priority(forged_from_b, (A, 500), (B, ATTACKER_PORT)) == Priority.CONFIGURED
    assert a.ingress_priority(_forged(mm1, rng), (A, 500), (STRANGER, 500)) == Priority.OTHER
    assert a.ingress_priority(b"\x00" * 12, (A, 500), (B, 500)) == Priority.OTHER  # short
    assert a.ingress_priority(rng.randbytes(8) + mm1[8:], (A, 4500), (B, 4500)) == Priority.OTHER

    # B's real first message ranks as a first message, resent too; the rest of that exchange is
    # EXCHANGE (B is a configured peer)
    b.initiate(A, 0.0, gre_selector(B), gre_selector(A))
    ((b_mm1, _, _),) = b.datagrams_to_send()
    assert a.ingress_priority(b_mm1, (A, 500), (B, 500)) == Priority.CONFIGURED
    a.receive_datagram(b_mm1, (A, 500), (B, 500), 0.0)
    assert a.ingress_priority(b_mm1, (A, 500), (B, 500)) == Priority.CONFIGURED  # a resend too
    ((mm2, _, _),) = a.datagrams_to_send()
    b.receive_datagram(mm2, (B, 500), (A, 500), 0.0)
    ((mm3, _, _),) = b.datagrams_to_send()
    assert a.ingress_priority(mm3, (A, 500), (B, 500)) == Priority.EXCHANGE
    assert a.ingress_priority(mm3[:8] + rng.randbytes(8) + mm3[16:], (A, 500),
                              (B, 500)) == Priority.OTHER  # a responder cookie nobody issued
    assert a.ingress_priority(b"\x00\x00\x00\x00" + mm3, (A, 4500), (B, 4500)) == Priority.EXCHANGE

    # and a reply to our own first message, whatever responder cookie it carries
    a2, b2 = pair()
    a2.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    ((a_mm1, _, _),) = a2.datagrams_to_send()
    b2.receive_datagram(a_mm1, (B, 500), (A, 500), 0.0)
    ((b_mm2, _, _),) = b2.datagrams_to_send()
    assert a2.ingress_priority(b_mm2, (A, 500), (B, 500)) == Priority.EXCHANGE


def test_the_queue_gives_the_most_urgent_first_and_sheds_the_oldest_when_full():
    order = iter([Priority.OTHER] * 70 + [Priority.CONFIGURED, Priority.EXCHANGE])
    q = IngressQueue(lambda data, local, peer: next(order))
    for i in range(72):
        q.push(i.to_bytes(2, "big"), (A, 500), (B, 500))
    assert len(q) == QUEUE_LIMITS[Priority.OTHER] + 2
    assert q.shed == {"exchange": 0, "configured": 0, "anonymous": 0,
                      "other": 70 - QUEUE_LIMITS[Priority.OTHER]}
    popped = [int.from_bytes(q.pop()[0], "big") for _ in range(len(q))]
    assert popped[:2] == [71, 70]  # EXCHANGE, then CONFIGURED
    assert popped[2:] == list(range(70 - QUEUE_LIMITS[Priority.OTHER], 70))  # the newest kept
    assert q.pop() is None and not q


def _bring_up_under_flood(initiator: str, forged_per_turn: int, from_peer_per_turn: int,
                          *, sort: bool) -> int | None:
    """Turns until both ends have the SA pair, with A taking TURN datagrams a turn from its
    ingress queue while `forged_per_turn` forged first messages arrive (of which
    `from_peer_per_turn` "from" B's address) and B answering at once; None: not within 60."""
    a, b = _anonymous_too(A, B), Engine(make_config(B, A), rng=seeded(2))
    rng = random.Random(5)
    template = _first_message(source=B, dest=A)
    fifo = Priority.OTHER
    q = IngressQueue(a.ingress_priority if sort else (lambda data, local, peer: fifo),
                     {p: 4096 if not sort else QUEUE_LIMITS[p] for p in Priority})
    starter = a if initiator == "a" else b
    starter.initiate(B if starter is a else A, 0.0,
                     gre_selector(A if starter is a else B), gre_selector(B if starter is a else A))
    up = {"a": False, "b": False}
    for turn in range(1, 61):
        now = turn * 0.001
        for i in range(forged_per_turn):
            src = B if i < from_peer_per_turn else f"198.19.{rng.randrange(256)}.{i + 1}"
            q.push(_forged(template, rng), (A, 500), (src, rng.randrange(1024, 65536)))
        for data, _local, peer in b.datagrams_to_send():
            if peer[0] == A:
                q.push(data, (A, 500), (B, 500))
        for _ in range(TURN):
            item = q.pop()
            if item is None:
                break
            a.receive_datagram(item[0], item[1], item[2], now)
        for data, _local, peer in a.datagrams_to_send():
            if peer[0] == B:
                b.receive_datagram(data, (B, 500), (A, 500), now)
        up["a"] |= bool(of_type(events(a), Phase2Up))
        up["b"] |= bool(of_type(events(b), Phase2Up))
        if all(up.values()):
            return turn
    return None


def test_a_tunnel_comes_up_while_forged_first_messages_arrive_ten_times_faster_than_answered():
    forged, from_peer = 10 * TURN, TURN // 4
    for initiator in ("a", "b"):
        quiet = _bring_up_under_flood(initiator, 0, 0, sort=True)
        flooded = _bring_up_under_flood(initiator, forged, from_peer, sort=True)
        assert quiet is not None and flooded is not None, initiator
        assert flooded <= quiet + 2, (initiator, quiet, flooded)
        # in arrival order, the same flood holds every real message behind it
        assert _bring_up_under_flood(initiator, forged, from_peer, sort=False) is None, initiator


def test_a_flood_cannot_take_the_rank_of_the_exchanges_the_engine_holds():
    """EXCHANGE is the queue of messages that a configured or authenticated peer's exchange
    needs (message 3 and on, quick modes, DPD acks); a flood that reached it would shed them.
    Neither a blind spoofer repeating a first message a has answered (to the address it forged)
    nor an attacker under the cookies of an exchange it opened from its own address (it got
    message 2) may reach it, nor anyone under another address's cookies."""
    a = _anonymous_too(A, B)
    rng = random.Random(9)
    for source, rank in ((B, Priority.CONFIGURED), (STRANGER, Priority.OTHER)):
        forged = _forged(_first_message(source=source, dest=A), rng)
        a.receive_datagram(forged, (A, 500), (source, ATTACKER_PORT), 0.0)
        assert a.datagrams_to_send(), source  # answered: the exchange is held
        for _ in range(3):  # the same message again and again: no more urgent than the first
            assert a.ingress_priority(forged, (A, 500), (source, ATTACKER_PORT)) == rank, source

    # from the attacker's own address, with no key for a: it got message 2, so it knows both
    # cookies of an exchange a holds for an address only `remote anonymous` takes
    keyless = Engine(make_config(STRANGER, A, psk=b"not a key"), rng=seeded(4))
    keyless.initiate(A, 0.0, gre_selector(STRANGER), gre_selector(A))
    ((mm1, _, _),) = keyless.datagrams_to_send()
    a.receive_datagram(mm1, (A, 500), (STRANGER, 500), 0.0)
    ((mm2, _, _),) = a.datagrams_to_send()
    keyless.receive_datagram(mm2, (STRANGER, 500), (A, 500), 0.0)
    ((mm3, _, _),) = keyless.datagrams_to_send()
    rank = a.ingress_priority(mm3, (A, 500), (STRANGER, 500))
    assert Priority.CONFIGURED < rank < Priority.OTHER  # above first messages, below the rest
    assert a.ingress_priority(mm3, (A, 500), (B, 500)) == Priority.OTHER  # not B's exchange
    q = IngressQueue(a.ingress_priority)
    for _ in range(2 * QUEUE_LIMITS[Priority.EXCHANGE]):
        q.push(mm3, (A, 500), (STRANGER, 500))
    assert q.shed["exchange"] == 0
