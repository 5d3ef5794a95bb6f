"""The anti-replay window against a reference model: a set of seen numbers and the window rule."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from esp.replay import OK, REPLAYED, TOO_OLD, ReplayWindow
from esp.sa import EspDrop
from tests.esp.helpers import forge_esp, sa_pair


class ReferenceWindow:
    """RFC 4303 §3.4.3 stated plainly: accept a number never seen whose distance below the
    highest accepted number is smaller than the window."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen: set[int] = set()

    def verdict(self, seq: int) -> int:
        top = max(self.seen, default=0)
        if seq == 0 or (seq <= top and top - seq >= self.size):
            return TOO_OLD
        return REPLAYED if seq in self.seen else OK

    def accept(self, seq: int) -> None:
        self.seen.add(seq)


sequences = st.lists(
    st.one_of(st.integers(1, 80), st.integers(1, 3000), st.integers(0, 2**32 - 1)),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(size=st.sampled_from([1, 2, 4, 31, 32, 64, 1024]), seqs=sequences)
def test_window_matches_reference(size, seqs):
    window, model = ReplayWindow(size), ReferenceWindow(size)
    for seq in seqs:
        expected = model.verdict(seq)
        assert window.check(seq) == expected, (seq, sorted(model.seen)[-5:])
        if expected == OK:
            window.accept(seq)
            model.accept(seq)
    assert window.top == max(model.seen, default=0)


@settings(max_examples=100, deadline=None)
@given(
    seqs=st.lists(st.integers(1, 60), max_size=60),
    forged=st.lists(st.integers(1, 2**32 - 1), max_size=10),
)
def test_sa_window_moves_only_after_icv(seqs, forged):
    """Through a real SA: forged packets (any sequence number, bad ICV) never move the window."""
    out, inbound = sa_pair(replay_window=16)
    model = ReferenceWindow(16)
    for seq in forged:
        packet = bytearray(forge_esp(inbound, seq, b"x" + bytes((1, 1, 1, 47)) + b"\0" * 11))
        packet[-1] ^= 0xFF
        assert inbound.open(bytes(packet), 0.0) in (EspDrop.ICV_FAILURE,)
    for seq in seqs:
        plaintext = b"payload" + bytes(range(1, 8)) + bytes((7, 47))
        result = inbound.open(forge_esp(inbound, seq, plaintext), 0.0)
        expected = model.verdict(seq)
        if expected == OK:
            model.accept(seq)
            assert result == (47, b"payload")
        else:
            assert result is (EspDrop.REPLAYED if expected == REPLAYED else EspDrop.TOO_OLD)
    assert inbound.counters.replay_drops == len(seqs) - len(model.seen)


def test_window_zero_disables_the_check():
    window = ReplayWindow(0)
    for _ in range(3):
        assert window.check(5) == OK
        window.accept(5)


def test_large_jump_clears_the_window():
    window = ReplayWindow(64)
    for seq in (1, 2, 3):
        window.accept(seq)
    window.accept(10_000)
    assert window.check(3) == TOO_OLD
    assert window.check(9_937) == OK
    assert window.check(9_936) == TOO_OLD
    assert window.bitmap() == 1
    window.accept(2**32 - 1)  # the largest jump there is: cheap, and the window is just {top}
    assert window.bitmap() == 1
    assert window.check(2**32 - 2) == OK
