"""The control verbs' effects, as racoon's admin port has them, on a daemon stand-in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from ikev1.events import EspKeys, Phase1Up, Phase2Up
from ikev1.policy import EngineConfig
from pyike import control, feed
from pyike.events import EventHandler
from pyike.live import Live
from pyike.ops import Operations


def _pair(spi_in: int, spi_out: int, peer: str) -> Phase2Up:
    keys = lambda spi, src, dst: EspKeys(spi, src, dst, "aes-cbc", b"k" * 16,  # noqa: E731
                                         "hmac-sha1", b"a" * 20)
    return Phase2Up((peer, 500), ("198.18.0.1", 500), keys(spi_in, peer, "198.18.0.1"),
                    keys(spi_out, "198.18.0.1", peer), "transport", "none", None, 3600, None,
                    ("198.18.0.1/32", 47, 0), (f"{peer}/32", 47, 0), None, True)


class Engine:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.config = EngineConfig(("198.18.0.1",), (), (), {})
        self.p1 = [{"dst": "198.18.0.2", "state": "established"},
                   {"dst": "198.18.0.3", "state": "I_MM3"}]

    def phase1_sas(self):
        return [dict(r, src="198.18.0.1", src_port=500, dst_port=500) for r in self.p1]

    def delete_phase1(self, peer, now, *, ipsec=True):
        self.calls.append(("delete_phase1", peer) if ipsec else ("delete_isakmp_only", peer))

    def delete_phase2(self, spi_in, now):
        self.calls.append(("delete_phase2", spi_in))

    def reconfigure(self, config, now):
        self.config = config

    def initiate_phase1(self, peer, now):
        self.calls.append(("initiate_phase1", peer))

    def schedule(self):
        return [{"timer": "phase1-lifetime", "peer": "198.18.0.2", "created": 10.0, "due": 20.0}]


class Forwarding:
    """The forwarding process's side of `setkey-run`: it removed a negotiated pair and a
    manual SA."""

    pid = 4242

    def __init__(self) -> None:
        self.asked: list[tuple] = []

    async def ask(self, verb, *args):
        self.asked.append((verb, *args))
        return {"removed": [(0x100, "198.18.0.2", "198.18.0.1", "in"),
                            (0x200, "198.18.0.1", "198.18.0.2", "out"),
                            (0x7777, "198.18.0.1", "198.18.0.5", "out")], "added": [],
                "policies": []}


class Daemon:
    """The parts pyike.ops.Operations is made of: the real SA pair table, stand-ins for the
    engine, the forwarding process and the acquires."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.feed = feed.EventFeed()
        self.live = Live(SimpleNamespace(remote_names={"office": "198.18.0.2"}), "racoon.conf",
                         [])
        self.config = self.live.config
        self.events = EventHandler(self.live, self.feed, lambda *msg: None, None,
                                   lambda peer: None)
        self.events.pairs = {0x100: _pair(0x100, 0x200, "198.18.0.2"),
                             0x101: _pair(0x101, 0x201, "198.18.0.3")}
        self.events.out_to_in = {0x200: 0x100, 0x201: 0x101}
        self.forwarding = Forwarding()
        self.asked = self.forwarding.asked
        self.acquires = SimpleNamespace(
            have_local_address=lambda now: True,
            acquire_now=lambda local, remote: self.engine.calls.append(
                ("acquire", local, remote)) or True)
        self.ops = Operations(self)

    def service(self) -> None:
        pass


def verb(d, *words):
    return asyncio.run(control.dispatch(d.ops, words[0], list(words[1:]), False))


def test_flush_sa_isakmp_deletes_the_isakmp_sas_only():
    d = Daemon()
    assert verb(d, "fs", "isakmp")["ok"]
    assert d.engine.calls == [("delete_isakmp_only", "198.18.0.2"),
                              ("delete_isakmp_only", "198.18.0.3")]
    assert d.asked == []  # the SAD is left alone


def test_flush_sa_ipsec_flushes_the_sad_and_the_negotiated_pairs():
    d = Daemon()
    reply = verb(d, "flush-sa", "esp")
    assert reply["ok"] and d.asked[0][0] == "setkey-run"
    assert [type(c).__name__ for c in d.asked[0][1].commands] == ["Flush"]
    # the removed pair's inbound SPI, once per direction: the engine tells the peer
    assert d.engine.calls == [("delete_phase2", 0x100), ("delete_phase2", 0x100)]


def test_flush_sa_needs_a_known_protocol():
    d = Daemon()
    assert "insufficient" in verb(d, "flush-sa")["error"]
    assert "unknown protocol" in verb(d, "flush-sa", "gre")["error"]
    assert not verb(d, "flush-sa", "internal")["ok"]
    assert d.engine.calls == []


def test_delete_sa_isakmp_purges_the_peer_as_racoon():
    d = Daemon()
    assert verb(d, "ds", "isakmp", "inet", "198.18.0.1", "198.18.0.2")["ok"]
    assert d.engine.calls == [("delete_phase2", 0x100), ("delete_phase1", "198.18.0.2")]


def test_delete_sa_esp_deletes_the_pairs_between_the_addresses():
    d = Daemon()
    reply = verb(d, "ds", "esp", "inet", "198.18.0.1/32[any]", "198.18.0.3", "gre")
    assert reply["data"] == {"deleted": [0x101]}
    assert d.engine.calls == [("delete_phase2", 0x101)]


def test_delete_all_sa_without_any_sa_is_refused():
    d = Daemon()
    reply = verb(d, "da", "198.18.0.77")
    assert (reply["ok"], reply["errno"]) == (False, "ENOENT")
    assert verb(d, "da", "isakmp", "inet", "0.0.0.0", "198.18.0.3")["ok"]
    assert ("delete_phase1", "198.18.0.3") in d.engine.calls


def test_establish_sa_up_already_is_eexist_else_negotiates():
    d = Daemon()
    assert verb(d, "es", "isakmp", "inet", "198.18.0.1", "198.18.0.2")["errno"] == "EEXIST"
    assert verb(d, "es", "esp", "inet", "198.18.0.1", "198.18.0.2", "gre")["errno"] == "EEXIST"
    assert verb(d, "es", "isakmp", "198.18.0.4")["ok"]
    assert verb(d, "es", "esp", "198.18.0.1", "198.18.0.4")["ok"]
    assert d.engine.calls == [("initiate_phase1", "198.18.0.4"),
                              ("acquire", "198.18.0.1", "198.18.0.4")]


def test_establish_sa_by_remote_name_and_without_xauth():
    d = Daemon()
    assert "no remote named 'home'" in verb(d, "es", "-n", "home", "isakmp", "198.18.0.4")[
        "error"]
    assert "is for 198.18.0.2" in verb(d, "es", "-n", "office", "isakmp", "198.18.0.4")["error"]
    assert "XAuth" in verb(d, "es", "-u", "alice", "isakmp", "198.18.0.4")["error"]
    assert d.engine.calls == []
    d.engine.p1 = []
    assert verb(d, "es", "-n", "office", "isakmp", "198.18.0.2")["ok"]


def test_establish_w_streams_the_peers_events_up_to_the_one_waited_for():
    async def scenario():
        d = Daemon()
        d.engine.p1 = []
        reply = await control.dispatch(d.ops, "es", ["-w", "isakmp", "198.18.0.2"], False)
        stream = reply["stream"]
        up = Phase1Up(("198.18.0.1", 500), ("198.18.0.2", 500), b"i" * 8, b"r" * 8, True,
                      "main", "aes-128", "sha1", 14, 28800, "198.18.0.2")
        for record in feed.engine_event(up, lambda peer: None):
            d.feed.publish(record)
        d.feed.publish(feed.event(feed.EVT_PHASE1_UP, None, ("198.18.0.9", 500)))  # not ours
        got = [r["type"] async for r in stream]
        return got, len(d.feed)

    got, listeners = asyncio.run(scenario())
    assert got == [feed.EVT_PHASE1_UP, feed.EVT_PHASE1_MODE_CFG]
    assert listeners == 0


def test_a_failure_ends_the_wait():
    async def scenario():
        d = Daemon()
        reply = await control.dispatch(d.ops, "es", ["-w", "esp", "198.18.0.1", "198.18.0.4"],
                                       False)
        d.feed.publish(feed.event(feed.EVT_PHASE1_NO_PROPOSAL, None, ("198.18.0.4", 500)))
        d.feed.publish(feed.event(feed.EVT_PHASE2_UP, None, ("198.18.0.4", 500)))
        return [r["type"] async for r in reply["stream"]]

    assert asyncio.run(scenario()) == [feed.EVT_PHASE1_NO_PROPOSAL]


def test_show_schedule_and_show_event():
    d = Daemon()
    reply = verb(d, "sc")
    assert reply["text"].splitlines()[0] == "index    tick     xtime    created"
    assert reply["data"][0]["timer"] == "phase1-lifetime"

    async def events():
        reply = await control.dispatch(d.ops, "se", [], False)
        d.feed.publish(feed.sa_change("add", 1, "198.18.0.1", "198.18.0.2", "out"))  # not shown
        d.feed.publish(feed.event(feed.EVT_PHASE2_UP, None, ("198.18.0.2", 500)))
        d.feed.close()
        return [r["type"] async for r in reply["stream"]]

    assert asyncio.run(events()) == [feed.EVT_PHASE2_UP, feed.EVT_RACOON_QUIT]


@pytest.mark.parametrize("kind", ["ah"])
def test_show_sa_ah_is_empty(kind):
    assert verb(Daemon(), "ss", kind)["text"] == "No SAD entries.\n"
