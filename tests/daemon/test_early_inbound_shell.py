"""The shell's part in a responder's early inbound SA: the engine's InboundReady becomes an
`install-inbound` for the forwarding process, the Phase2Up after it names the same inbound SA
(so the forwarding core keeps it), InboundWithdrawn a `withdraw`."""

from __future__ import annotations

from types import SimpleNamespace

from forward.core import ForwardingCore
from pyike.events import EventHandler
from pyike.feed import EventFeed
from pyike.live import Live
from tests.forward.helpers import core_for
from tests.ikev1.harness import A, B, advance, events, gre_selector, pair, pump
from tests.ikev1.test_engine_early_inbound import HoldQm3, _phase1_up


def _shell(core: ForwardingCore) -> tuple[EventHandler, list[tuple]]:
    """An EventHandler whose pipe ends in `core`, with each message's verb as the forwarding
    process reads it (pyike.dataplane)."""
    sent: list[tuple] = []
    verbs = {"install": core.install, "install-inbound": core.install_inbound,
             "withdraw": lambda spi, _now: core.withdraw_inbound(spi),
             "remove": lambda spi, direction, _now: core.remove(spi, direction)}

    def send(verb, *args):
        sent.append((verb, *args))
        verbs[verb](*args, 0.0)

    live = Live(SimpleNamespace(scripts={}), "racoon.conf", [])
    return EventHandler(live, EventFeed(), send, None, lambda peer: None), sent


def _quick_mode_held():
    """Phase 1 up, a's quick mode with message 3 held; b's shell feeds a forwarding core."""
    a, b = pair()
    _phase1_up(a, b)
    core = core_for(B, A)
    shell, sent = _shell(core)
    hold = HoldQm3()
    a.initiate(B, 1.0, gre_selector(A), gre_selector(B))
    pump(a, b, 1.0, deliver=hold)
    return a, b, core, shell, sent, hold


def test_the_pair_keeps_the_inbound_sa_the_shell_installed_at_message_2():
    a, b, core, shell, sent, hold = _quick_mode_held()
    for e in events(b):
        shell.handle(e)
    assert [m[0] for m in sent] == ["install-inbound"]
    early = core.state.inbound(sent[0][1].keys.spi)
    assert early is not None and core.state.sad.outbound(B, A) is None
    b.receive_datagram(hold.sent[1], (B, 500), (A, 500), 1.0)
    for e in events(b):
        shell.handle(e)
    assert [m[0] for m in sent] == ["install-inbound", "install"]
    assert sent[1][1][0] == sent[0][1]  # the same spec: the core keeps its SA
    assert core.state.inbound(early.spi) is early and core.state.sad.outbound(B, A)
    assert early.spi in shell.pairs


def test_an_unanswered_message_2_is_withdrawn_from_the_forwarding_core():
    a, b, core, shell, sent, hold = _quick_mode_held()
    advance(a, b, 1.0, 31.0, deliver=hold)
    for e in events(b):
        shell.handle(e)
    spi = sent[0][1].keys.spi
    assert [m[0] for m in sent] == ["install-inbound", "withdraw"] and sent[1][1] == spi
    assert core.state.inbound(spi) is None and not shell.pairs
