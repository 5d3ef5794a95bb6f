"""Engines wired back to back in memory, with a fake clock."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import replace

from ikev1.engine import Engine
from ikev1.events import Event
from ikev1.policy import (
    DpdSettings,
    EngineConfig,
    Phase1Proposal,
    Phase2Policy,
    RemotePolicy,
    RetransmitTimer,
    TrafficSelector,
)

A = "198.18.0.1"
B = "198.18.0.2"
PSK = b"a shared secret"


def gre_selector(address: str) -> TrafficSelector:
    """The seed set-up's policy: `spdadd A/32[0] B/32[0] gre` (IP protocol 47)."""
    return TrafficSelector(ipaddress.ip_network(f"{address}/32"), 47, 0)


def make_config(local: str, peer: str, *, psk: bytes = PSK,
                proposals: tuple[Phase1Proposal, ...] | None = None,
                remote: dict | None = None, sainfo: dict | None = None,
                timer: RetransmitTimer | None = None) -> EngineConfig:
    props = proposals or (Phase1Proposal("aes", "sha1", 2, lifetime_s=86400),)
    rp = RemotePolicy(peer, props, lifetime_s=86400, dpd=DpdSettings(20, 2, 2))
    if remote:
        rp = replace(rp, **remote)
    sa = Phase2Policy(pfs_group=2, lifetime_s=3600)
    if sainfo:
        sa = replace(sa, **sainfo)
    return EngineConfig((local,), (rp,), (sa,), {peer: psk}, timer or RetransmitTimer())


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def pair(a_kw: dict | None = None, b_kw: dict | None = None) -> tuple[Engine, Engine]:
    a = Engine(make_config(A, B, **(a_kw or {})), rng=seeded(1))
    b = Engine(make_config(B, A, **(b_kw or {})), rng=seeded(2))
    return a, b


Filter = Callable[[bytes, str, str], bool]  # (datagram, from, to) -> deliver?


def pump(a: Engine, b: Engine, now: float, *, deliver: Filter | None = None,
         rounds: int = 40) -> list[tuple[bytes, str, str]]:
    """Carry datagrams between a (at A) and b (at B) until both are quiet; returns the traffic."""
    engines = {A: a, B: b}
    seen = []
    for _ in range(rounds):
        moved = False
        for src, eng in ((A, a), (B, b)):
            for dgram, local, peer in eng.datagrams_to_send():
                moved = True
                seen.append((dgram, src, peer[0]))
                if deliver is None or deliver(dgram, src, peer[0]):
                    engines[peer[0]].receive_datagram(dgram, peer, local, now)
        if not moved:
            return seen
    raise AssertionError("engines still talking after the round limit")


Carry = Callable[[bytes, tuple[str, int], tuple[str, int]], list[bytes]]  # what arrives


def relay(a: Engine, b: Engine, now: float, carry: Carry | None = None) -> None:
    """Like pump, for any addresses, with `carry` deciding what each datagram becomes on the way
    (dropped, doubled, altered); rounds until both engines are quiet."""
    engines = {eng.config.local_addresses[0]: eng for eng in (a, b)}
    for _ in range(20):
        out = [(d, lo, pe) for eng in (a, b) for d, lo, pe in eng.datagrams_to_send()]
        if not out:
            return
        for dgram, local, peer in out:
            for arriving in (carry(dgram, local, peer) if carry else [dgram]):
                engines[peer[0]].receive_datagram(arriving, peer, local, now)
    raise AssertionError("engines still talking after the round limit")


def events(eng: Engine) -> list[Event]:
    out = []
    while (ev := eng.next_event()) is not None:
        out.append(ev)
    return out


def advance(a: Engine, b: Engine, now: float, until: float, *,
            deliver: Filter | None = None) -> float:
    """Fire both engines' timers in order up to `until`, pumping after each; returns `until`."""
    for _ in range(10000):
        times = [t for t in (a.get_timer(), b.get_timer()) if t is not None and t <= until]
        if not times:
            return until
        now = max(now, min(times))
        a.handle_timer(now)
        b.handle_timer(now)
        pump(a, b, now, deliver=deliver)
    raise AssertionError("timer loop did not settle")


def of_type(evs: list, cls: type) -> list:
    return [e for e in evs if isinstance(e, cls)]
