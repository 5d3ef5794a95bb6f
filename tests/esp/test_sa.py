"""EspSA: integrity, malformed input, padding rules, IVs, lifetimes and sequence numbers."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esp.sa import SEQ_MAX, SEQ_SOFT_MARGIN, EspDrop, EspSA, Lifetime
from tests.esp.helpers import DST, SPI, SRC, forge_esp, sa_pair


def _pad(n: int) -> bytes:
    return bytes(range(1, n + 1))


@pytest.mark.parametrize("auth_alg", ["hmac-sha1", "hmac-sha256"])
def test_every_flipped_bit_is_rejected(auth_alg):
    out, inbound = sa_pair(16, auth_alg)
    packet = out.seal(b"GRE payload " * 5, 47, 0.0)
    failures = 0
    for i in range(len(packet)):
        for bit in range(8):
            bad = bytearray(packet)
            bad[i] ^= 1 << bit
            result = inbound.open(bytes(bad), 0.0)
            if i < 4:  # SPI: not this SA's packet at all
                assert result is EspDrop.MALFORMED
            elif i < 8 and result is EspDrop.TOO_OLD:  # sequence number turned into 0
                assert int.from_bytes(bad[4:8], "big") == 0
            else:
                assert result is EspDrop.ICV_FAILURE, (i, bit)
                failures += 1
    assert inbound.counters.icv_failures == failures
    assert inbound.counters.packets == 0
    # None of that moved the window or upset the persistent decryption context.
    assert inbound.open(packet, 0.0) == (47, b"GRE payload " * 5)


def test_truncated_extended_and_misaligned_input_is_dropped_cleanly():
    out, inbound = sa_pair()
    packet = out.seal(os.urandom(100), 47, 0.0)
    for n in range(len(packet)):
        assert inbound.open(packet[:n], 0.0) in (EspDrop.MALFORMED, EspDrop.ICV_FAILURE)
    for extra in range(1, 20):
        result = inbound.open(packet + b"\x00" * extra, 0.0)
        assert result in (EspDrop.MALFORMED, EspDrop.ICV_FAILURE)
    # Aligned but cut by one block: reaches the ICV check and fails there.
    assert inbound.open(packet[:-28] + packet[-12:], 0.0) is EspDrop.ICV_FAILURE
    assert inbound.open(b"", 0.0) is EspDrop.MALFORMED
    assert inbound.open(memoryview(packet), 0.0)[0] == 47
    assert inbound.counters.packets == 1


def test_random_garbage_never_raises():
    _, inbound = sa_pair()
    rng = random.Random(7)
    spi = SPI.to_bytes(4, "big")
    for _ in range(2000):
        blob = spi + rng.randbytes(rng.randrange(0, 120))
        assert isinstance(inbound.open(blob, 0.0), EspDrop)
    assert inbound.counters.packets == 0


def test_packets_open_in_any_order():
    out, inbound = sa_pair(32, "hmac-sha256")
    payloads = [os.urandom(random.randrange(1, 1500)) for _ in range(40)]
    packets = [out.seal(p, 47, 0.0) for p in payloads]
    order = list(range(40))
    random.Random(3).shuffle(order)
    for i in order:
        assert inbound.open(packets[i], 0.0) == (47, payloads[i])


def test_ivs_are_fresh_and_not_chained():
    out, _ = sa_pair()
    packets = [out.seal(b"same payload", 47, 0.0) for _ in range(200)]
    ivs = [p[8:24] for p in packets]
    assert len(set(ivs)) == len(ivs)
    assert len({p[24:-12] for p in packets}) == len(packets)
    for prev, cur in zip(packets, packets[1:], strict=False):
        assert cur[8:24] != prev[-28:-12]  # not the previous packet's last ciphertext block


@pytest.mark.parametrize("size", range(0, 40))
def test_padding_aligns_to_block_and_follows_rfc(size):
    out, inbound = sa_pair()
    packet = out.seal(b"\xaa" * size, 47, 0.0)
    assert (len(packet) - 8 - 12) % 16 == 0
    assert len(packet) - 8 - 12 - 16 == ((size + 2 + 15) // 16) * 16  # minimal padding
    assert inbound.open(packet, 0.0) == (47, b"\xaa" * size)


def test_receiver_checks_padding_bytes_pad_length_and_next_header():
    _, inbound = sa_pair()
    good = b"payload" + _pad(7) + bytes((7, 47))
    assert inbound.open(forge_esp(inbound, 1, good), 0.0) == (47, b"payload")
    # Extra padding beyond the minimum is legal (RFC 4303 §2.4), up to 255 bytes.
    longer = b"payload" + _pad(23) + bytes((23, 47))
    assert inbound.open(forge_esp(inbound, 2, longer), 0.0) == (47, b"payload")
    bad_bytes = b"payload" + b"\x00" * 7 + bytes((7, 47))
    assert inbound.open(forge_esp(inbound, 3, bad_bytes), 0.0) is EspDrop.MALFORMED
    too_long = b"payload" + _pad(7) + bytes((200, 47))
    assert inbound.open(forge_esp(inbound, 4, too_long), 0.0) is EspDrop.MALFORMED
    dummy = b"payload" + _pad(7) + bytes((7, 59))
    assert inbound.open(forge_esp(inbound, 5, dummy), 0.0) is EspDrop.DUMMY
    assert inbound.counters.malformed == 2
    assert inbound.counters.dummies == 1
    assert inbound.counters.packets == 2


def test_time_lifetimes_soft_then_hard():
    lifetime = Lifetime(soft_s=10, hard_s=20)
    out, inbound = sa_pair(lifetime=lifetime, now=100.0)
    assert out.lifetime_state(109.9) == "mature"
    assert out.lifetime_state(110.0) == "dying"
    packet = out.seal(b"x", 47, 115.0)  # a dying SA still works
    assert inbound.open(packet, 115.0) == (47, b"x")
    assert out.lifetime_state(120.0) == "dead"
    assert out.seal(b"x", 47, 120.0) is EspDrop.EXPIRED
    assert inbound.open(out.seal(b"y", 47, 119.0), 120.0) is EspDrop.EXPIRED
    assert out.counters.expired_drops == 1
    assert inbound.counters.expired_drops == 1


def test_byte_lifetimes_soft_then_hard():
    out, inbound = sa_pair(lifetime=Lifetime(soft_bytes=1000, hard_bytes=2000))
    for _ in range(2):
        assert inbound.open(out.seal(b"b" * 500, 47, 0.0), 0.0) == (47, b"b" * 500)
    assert out.lifetime_state(0.0) == "dying"
    assert inbound.lifetime_state(0.0) == "dying"
    for _ in range(2):
        assert inbound.open(out.seal(b"b" * 500, 47, 0.0), 0.0) == (47, b"b" * 500)
    assert out.lifetime_state(0.0) == "dead"
    assert out.seal(b"b", 47, 0.0) is EspDrop.EXPIRED
    assert out.counters.bytes == 2000


def test_zero_lifetime_means_unlimited():
    out, _ = sa_pair(lifetime=Lifetime(0, 0, 0, 0))
    assert out.lifetime_state(1e12) == "mature"


def test_sequence_numbers_start_at_one_and_never_wrap():
    out, inbound = sa_pair()
    assert out.seal(b"a", 47, 0.0)[4:8] == b"\x00\x00\x00\x01"
    assert out.lifetime_state(0.0) == "mature"
    out.seq = SEQ_MAX - SEQ_SOFT_MARGIN
    assert out.lifetime_state(0.0) == "dying"
    out.seq = SEQ_MAX - 1
    last = out.seal(b"a", 47, 0.0)
    assert last[4:8] == b"\xff\xff\xff\xff"
    assert out.seal(b"a", 47, 0.0) is EspDrop.SEQ_EXHAUSTED
    assert out.seal(b"a", 47, 0.0) is EspDrop.SEQ_EXHAUSTED
    assert out.seq == SEQ_MAX
    assert out.lifetime_state(0.0) == "dead"
    assert inbound.open(last, 0.0) == (47, b"a")


def test_direction_is_enforced():
    out, inbound = sa_pair()
    assert inbound.seal(b"a", 47, 0.0) is EspDrop.WRONG_DIRECTION
    assert out.open(out.seal(b"a", 47, 0.0), 0.0) is EspDrop.WRONG_DIRECTION


def test_3des_round_trip():
    out, inbound = sa_pair(24, "hmac-md5", enc_alg="3des-cbc")
    for size in (0, 1, 7, 8, 100):
        packet = out.seal(b"d" * size, 4, 0.0)
        assert (len(packet) - 8 - 12) % 8 == 0
        assert inbound.open(packet, 0.0) == (4, b"d" * size)


@pytest.mark.parametrize(
    ("enc_alg", "enc_key", "auth_alg", "auth_key"),
    [
        ("aes-cbc", b"k" * 15, "hmac-sha1", b"a" * 20),
        ("aes-cbc", b"k" * 16, "hmac-sha1", b"a" * 16),
        ("blowfish", b"k" * 16, "hmac-sha1", b"a" * 20),
        ("aes-cbc", b"k" * 16, "hmac-sha512", b"a" * 48),  # RFC 4868 §2.1.1: 512-bit key
    ],
)
def test_bad_configuration_is_refused_at_install(enc_alg, enc_key, auth_alg, auth_key):
    with pytest.raises(ValueError):
        EspSA(SPI, SRC, DST, enc_alg, enc_key, auth_alg, auth_key, direction="out")


def test_reserved_spi_is_refused():
    with pytest.raises(ValueError):
        EspSA(255, SRC, DST, "aes-cbc", b"k" * 16, "hmac-sha1", b"a" * 20, direction="in")


@settings(max_examples=300, deadline=None)
@given(
    payload=st.binary(max_size=100),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 40),
)
def test_edited_packets_are_dropped_or_unchanged(payload, edits, cut):
    """Whatever is done to a sealed packet, open() either drops it or returns the original."""
    out, inbound = sa_pair()
    packet = bytearray(out.seal(payload, 47, 0.0))
    for index, value in edits:
        if index < len(packet):
            packet[index] = value
    if cut:
        del packet[-cut:]
    result = inbound.open(bytes(packet), 0.0)
    if isinstance(result, EspDrop):
        assert result in (EspDrop.MALFORMED, EspDrop.ICV_FAILURE, EspDrop.TOO_OLD)
    else:
        assert result == (47, payload)
