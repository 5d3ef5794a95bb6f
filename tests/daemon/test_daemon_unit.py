"""The IKE process's decisions that need no sockets: no initiate without a local address, and
background tasks whose failures are logged rather than lost."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from forward.events import Acquire
from pyike import config
from pyike import daemon as daemon_mod
from pyike import live as live_mod

SEED_A = Path(__file__).resolve().parents[2] / "examples" / "seed" / "a"


@pytest.fixture
def bare_config(tmp_path):
    """Router a's seed configuration without `listen isakmp` addresses or `gre` blocks."""
    for f in SEED_A.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "psk.txt").chmod(0o600)
    cfg = config.load(str(tmp_path / "racoon.conf"))
    engine = dataclasses.replace(cfg.engine, local_addresses=())
    return dataclasses.replace(cfg, engine=engine, gre_tunnels=(), listen_isakmp=())


def _daemon(cfg, monkeypatch, addresses: list[list[str]]):
    """A Daemon whose host address lookups answer from `addresses`, one list per call."""
    answers = iter(addresses)
    monkeypatch.setattr(live_mod, "host_addresses", lambda: next(answers))
    d = daemon_mod.Daemon(cfg, "racoon.conf")
    calls = []
    monkeypatch.setattr(d.engine, "initiate", lambda *a, **kw: calls.append((a, kw)))
    return d, calls


def test_no_local_address_means_no_initiate_and_a_reason(bare_config, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pyike")
    d, calls = _daemon(bare_config, monkeypatch, [[], []])
    assert d.engine.config.local_addresses == ()
    assert d.acquires.acquire(Acquire("198.18.0.1", "198.18.0.2")) is False
    assert calls == []
    reasons = [r.getMessage() for r in caplog.records if "no local address" in r.getMessage()]
    assert len(reasons) == 2  # once at start, once for the refused acquire
    assert "cannot negotiate with 198.18.0.2" in reasons[1]
    # the acquire guard keeps the refusal to one line per pair
    assert d.acquires.acquire(Acquire("198.18.0.1", "198.18.0.2")) is True
    assert calls == [] and len([r for r in caplog.records if "no local" in r.getMessage()]) == 2


def test_an_address_that_appears_later_is_used(bare_config, monkeypatch):
    d, calls = _daemon(bare_config, monkeypatch, [[], ["198.18.0.1"]])
    assert d.acquires.acquire(Acquire("198.18.0.1", "198.18.0.2")) is True
    assert d.engine.config.local_addresses == ("198.18.0.1",)
    assert len(calls) == 1 and calls[0][0][0] == "198.18.0.2"


def test_gre_locals_come_first(bare_config, monkeypatch):
    monkeypatch.setattr(live_mod, "host_addresses", lambda: ["198.18.5.5", "198.18.0.1"])
    tunnels = [live_mod.TunnelSpec("tun0", "198.18.0.1", "198.18.0.2", "10.1.1.1", "10.1.1.2",
                                     1400)]
    cfg = live_mod.engine_config(bare_config, tunnels)
    assert cfg.local_addresses == ("198.18.0.1", "198.18.5.5")


def test_a_failing_background_task_is_logged_not_lost(bare_config, monkeypatch, caplog):
    d, _calls = _daemon(bare_config, monkeypatch, [["198.18.0.1"]])

    async def boom():
        raise RuntimeError("hook exploded")

    async def main():
        task = d.spawn(boom(), "script /x (phase1_up)")
        assert task in d.tasks
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return task

    task = asyncio.run(main())
    assert task.done() and task not in d.tasks
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert msgs == ["script /x (phase1_up) failed: RuntimeError: hook exploded"]


def test_a_failing_engine_timer_is_retried_at_a_pace_and_logged_once(bare_config, monkeypatch,
                                                                      caplog):
    d, _calls = _daemon(bare_config, monkeypatch, [["198.18.0.1"]])
    fired = []

    def broken(now):
        fired.append(now)
        raise KeyError("stale")

    monkeypatch.setattr(d.engine, "handle_timer", broken)
    monkeypatch.setattr(d.engine, "get_timer", lambda: 0.0)  # always due

    async def main():
        d.service()
        await asyncio.sleep(0.5)
        d.timer.cancel()

    asyncio.run(main())
    assert len(fired) == 1  # then a second's pause, not a busy loop
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["engine failed in its timer (KeyError; further ones are counted only)"]
    assert d.live.counters["engine_exceptions"] == 1


class _FakeIkeSocket:
    """What recvmsg would give for a queue of datagrams, then EAGAIN."""

    def __init__(self, local: str, datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.local = local
        self.datagrams = list(datagrams)

    def recvmsg(self, bufsize: int, ancbufsize: int):
        if not self.datagrams:
            raise BlockingIOError
        data, peer = self.datagrams.pop(0)
        return data, [], 0, peer

    def getsockname(self):
        return (self.local, 500)


def test_a_message_of_a_known_exchange_is_handled_before_a_flood_of_first_messages(
        bare_config, monkeypatch):
    """The shell reads everything the socket holds, then lets the engine take the most urgent:
    the real peer's message read last is handled first, and the flood beyond the queue's room
    is shed and counted."""
    from ikev1.ingress import QUEUE_LIMITS, TURN, IngressQueue, Priority

    d, _calls = _daemon(bare_config, monkeypatch, [["198.18.0.1"]])
    real = bytes(range(1, 9)) + bytes(range(9, 17)) + bytes(12)
    monkeypatch.setattr(d.engine, "ingress_priority",
                        lambda data, local, peer: Priority.EXCHANGE if data == real
                        else Priority.OTHER)
    d.sockets.ingress = IngressQueue(d.engine.ingress_priority)
    handled = []
    monkeypatch.setattr(d.engine, "receive_datagram",
                        lambda data, local, peer, now: handled.append(data))
    flood = [(i.to_bytes(4, "big") + bytes(24), ("198.19.0.9", 1000 + i)) for i in range(300)]
    sock = _FakeIkeSocket("198.18.0.1", [*flood, (real, ("198.18.0.2", 500))])

    async def main():
        d.sockets.socks = {("198.18.0.1", 500): sock}
        d.sockets.readable(sock, 500)
        assert handled[0] == real and len(handled) == TURN  # one turn, then the loop again
        for _ in range(50):
            await asyncio.sleep(0)
            if not d.sockets.ingress:
                break

    asyncio.run(main())
    assert not sock.datagrams and not d.sockets.ingress
    assert len(handled) == 1 + QUEUE_LIMITS[Priority.OTHER]
    assert d.drop_counters()["shed_other"] == 300 - QUEUE_LIMITS[Priority.OTHER]
