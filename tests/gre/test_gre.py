"""GRE encap/decap: every flag combination against scapy's GRE, and malformed headers."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE
from scapy.packet import Raw

import gre
from gre import ETH_P_IP, ETH_P_IPV6, GreError, GrePacket, decap, encap, internet_checksum

INNER4 = bytes(IP(src="10.1.1.1", dst="10.1.1.2") / ICMP() / Raw(b"ping" * 10))
INNER6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / Raw(b"six"))
ODD = bytes(IP(src="10.1.1.1", dst="10.1.1.2") / Raw(b"odd"))  # odd total length


@pytest.mark.parametrize("inner", [INNER4, INNER6, ODD])
@pytest.mark.parametrize(
    ("key", "seq", "checksum"),
    list(itertools.product([None, 0, 1234, 0xFFFFFFFF], [None, 0, 7, 0xFFFFFFFF], [False, True])),
)
def test_round_trip_every_flag_combination(inner, key, seq, checksum):
    packet = encap(inner, key=key, seq=seq, checksum=checksum)
    assert isinstance(packet, bytes)
    protocol = ETH_P_IPV6 if inner is INNER6 else ETH_P_IP
    assert decap(packet) == GrePacket(protocol, inner, key, seq)
    # scapy reads the same header, checksum included.
    parsed = GRE(packet)
    assert parsed.proto == protocol
    assert parsed.key_present == (key is not None) and parsed.seqnum_present == (seq is not None)
    assert parsed.chksum_present == checksum
    if key is not None:
        assert parsed.key == key
    if seq is not None:
        assert parsed.sequence_number == seq
    if checksum:
        rebuilt = GRE(
            chksum_present=1, key_present=key is not None, seqnum_present=seq is not None,
            proto=protocol, key=key, sequence_number=seq,
        ) / Raw(inner)
        assert bytes(rebuilt) == packet


def test_scapy_built_packets_decap():
    for layer in (GRE(), GRE(key_present=1, key=99), GRE(chksum_present=1, seqnum_present=1,
                                                           sequence_number=5)):
        result = decap(bytes(layer / IP(INNER4)))
        assert isinstance(result, GrePacket)
        assert result.protocol == ETH_P_IP and result.payload == INNER4


def test_plain_header_is_what_a_linux_gre_tunnel_sends():
    assert encap(INNER4) == b"\x00\x00\x08\x00" + INNER4
    assert encap(INNER6) == b"\x00\x00\x86\xdd" + INNER6
    assert encap(b"\x45rest", protocol=0x6558) == b"\x00\x00\x65\x58\x45rest"


def test_non_ip_inner_needs_an_explicit_protocol():
    assert encap(b"") is GreError.UNKNOWN_PROTOCOL
    assert encap(b"\x10abc") is GreError.UNKNOWN_PROTOCOL


@pytest.mark.parametrize(
    ("packet", "error"),
    [
        (b"", GreError.TRUNCATED),
        (b"\x00\x00\x08", GreError.TRUNCATED),
        (b"\x20\x00\x08\x00\x00\x00", GreError.TRUNCATED),  # K set, key cut short
        (b"\xb0\x00\x08\x00" + b"\x00" * 11, GreError.TRUNCATED),  # C, K, S: needs 16 bytes
        (b"\x00\x01\x08\x00" + INNER4, GreError.BAD_VERSION),
        (b"\x00\x07\x08\x00" + INNER4, GreError.BAD_VERSION),
        (b"\x40\x00\x08\x00" + INNER4, GreError.UNSUPPORTED_FLAGS),  # routing present
        (b"\x08\x00\x08\x00" + INNER4, GreError.UNSUPPORTED_FLAGS),  # strict source route
        (b"\x04\x00\x08\x00" + INNER4, GreError.UNSUPPORTED_FLAGS),  # recursion control
    ],
)
def test_malformed_headers(packet, error):
    assert decap(packet) is error


def test_reserved_bits_6_to_12_are_ignored():
    assert decap(b"\x03\xf8\x08\x00" + INNER4) == GrePacket(ETH_P_IP, INNER4, None, None)


def test_bad_checksum_is_detected_anywhere():
    packet = encap(INNER4, key=5, checksum=True)
    for i in range(len(packet)):
        if i in (0, 1):
            continue  # flags: other errors or another layout
        bad = bytearray(packet)
        bad[i] ^= 0x10
        assert decap(bytes(bad)) is GreError.BAD_CHECKSUM, i


def test_random_headers_never_raise():
    rng = random.Random(11)
    for _ in range(5000):
        result = decap(rng.randbytes(rng.randrange(0, 24)))
        assert isinstance(result, GrePacket | GreError)


def test_internet_checksum_known_answers():
    # RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    header = bytes(IP(src="198.18.0.1", dst="198.18.0.2"))
    assert internet_checksum(header[:10] + b"\x00\x00" + header[12:]) == int.from_bytes(
        header[10:12], "big"
    )


def test_decap_accepts_memoryview():
    packet = encap(INNER4, key=1, checksum=True)
    assert bytes(decap(memoryview(packet)).payload) == INNER4
    assert gre.decap(memoryview(packet)).key == 1


@settings(max_examples=300, deadline=None)
@given(
    inner=st.binary(max_size=64),
    protocol=st.integers(0, 0xFFFF),
    key=st.none() | st.integers(0, 2**32 - 1),
    seq=st.none() | st.integers(0, 2**32 - 1),
    checksum=st.booleans(),
)
def test_round_trip_property(inner, protocol, key, seq, checksum):
    packet = encap(inner, protocol=protocol, key=key, seq=seq, checksum=checksum)
    assert decap(packet) == GrePacket(protocol, inner, key, seq)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_decap_never_raises(blob):
    result = decap(blob)
    if isinstance(result, GrePacket):
        assert len(result.payload) <= len(blob) - 4
    else:
        assert isinstance(result, GreError)


@pytest.mark.parametrize("key", [None, 7])
def test_headers_by_version_are_what_encap_puts_in_front(key):
    heads = gre.headers_by_version(key)
    for inner in (b"\x45" + bytes(19), b"\x60" + bytes(39)):
        assert heads[inner[0] >> 4] + inner == gre.encap(inner, None, key)
    assert [v for v, head in enumerate(heads) if head is not None] == [4, 6]
