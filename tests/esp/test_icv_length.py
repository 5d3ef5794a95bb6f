"""A negotiated HMAC-SHA-256 with either ICV length on the wire: 128 bits (RFC 4868, strongSwan,
libreswan) or 96 bits (a Linux racoon's PF_KEY SAs). scapy, with each length, is the peer."""

from __future__ import annotations

import os

import pytest
from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP
from scapy.packet import Raw

from esp.sa import EspDrop, EspSA
from tests.esp.helpers import DST, SRC, forge_esp
from tests.esp.test_scapy_oracle import SCAPY_AUTH, gre_payload, scapy_sa

PEER_ALG = {128: "hmac-sha256", 96: "hmac-sha256-96"}  # what the scapy peer's SAs use


def _pair(enc_key: bytes, auth_key: bytes, *, spi_out: int = 0x1001, spi_in: int = 0x2002
          ) -> tuple[EspSA, EspSA]:
    """Our negotiated pair: outbound SRC->DST, inbound DST->SRC, paired as the SAD pairs them."""
    out = EspSA(spi_out, SRC, DST, "aes-cbc", enc_key, "hmac-sha256", auth_key, direction="out")
    inbound = EspSA(spi_in, DST, SRC, "aes-cbc", enc_key, "hmac-sha256", auth_key,
                    direction="in")
    inbound.pair_with(out)
    return out, inbound


class _Peer:
    """The peer's side of the pair in scapy, with a fixed ICV length."""

    def __init__(self, out: EspSA, inbound: EspSA, bits: int) -> None:
        alg = PEER_ALG[bits]
        self.receives = scapy_sa(_Named(out, alg))
        self.sends = scapy_sa(_Named(inbound, alg))

    def open(self, packet: bytes) -> bytes:
        wire = IP(bytes(IP(src=SRC, dst=DST, proto=50) / Raw(packet)))
        return bytes(self.receives.decrypt(wire).payload)  # raises on an ICV mismatch

    def seal(self, payload: bytes) -> bytes:
        return bytes(self.sends.encrypt(IP(src=DST, dst=SRC, proto=47) / Raw(payload))[ESP])


class _Named:
    """An SA's keys under another algorithm name, for scapy_sa()."""

    def __init__(self, sa: EspSA, auth_alg: str) -> None:
        self.spi, self.enc_alg, self.enc_key = sa.spi, sa.enc_alg, sa.enc_key
        self.auth_alg, self.auth_key = auth_alg, sa.auth_key
        assert auth_alg in SCAPY_AUTH


@pytest.mark.parametrize("bits", [128, 96])
def test_until_the_peer_speaks_both_lengths_go_out_then_only_the_peers(bits):
    out, inbound = _pair(os.urandom(16), os.urandom(32))
    peer = _Peer(out, inbound, bits)
    payload = gre_payload(100)

    first = out.seal(payload, 47, 0.0)
    assert not out.icv_settled and out.alternate is not None
    assert len(first) - len(out.alternate) == 4  # 128 first (RFC 4868), 96 beside it
    theirs = first if bits == 128 else out.alternate
    wrong = out.alternate if bits == 128 else first
    assert peer.open(theirs) == payload
    with pytest.raises(Exception):  # noqa: B017 - scapy raises a bare error on a bad ICV
        peer.open(wrong)

    reply = gre_payload(60)
    assert inbound.open(peer.seal(reply), 0.0) == (47, reply)
    assert out.icv_settled
    second = out.seal(payload, 47, 0.0)
    assert out.alternate is None
    assert peer.open(second) == payload  # now at the peer's length only
    for _ in range(3):
        assert inbound.open(peer.seal(reply), 0.0) == (47, reply)


def test_both_lengths_open_and_a_later_change_of_length_still_opens():
    """Inbound opens either length at any time (another pyike, settled on the other length
    after a reordering, may send it); the length of the packet says which ICV to check."""
    enc, auth = os.urandom(16), os.urandom(32)
    _out, inbound = _pair(enc, auth)
    long_sa = EspSA(0x2002, DST, SRC, "aes-cbc", enc, "hmac-sha256", auth, direction="in")
    short_sa = EspSA(0x2002, DST, SRC, "aes-cbc", enc, "hmac-sha256-96", auth, direction="in")
    for seq, sa in enumerate((short_sa, long_sa, short_sa, long_sa), start=1):
        body = bytes(30) + bytes((0, 47))  # 32 bytes: two blocks, no padding
        packet = forge_esp(sa, seq, body)
        assert inbound.open(packet, 0.0) == (47, bytes(30)), seq
    assert inbound.counters.packets == 4 and inbound.icv_failures == 0


def test_a_forged_packet_of_the_other_length_settles_nothing():
    enc, auth = os.urandom(16), os.urandom(32)
    out, inbound = _pair(enc, auth)
    wrong_key = EspSA(0x2002, DST, SRC, "aes-cbc", enc, "hmac-sha256-96", os.urandom(32),
                      direction="in")
    forged = forge_esp(wrong_key, 1, bytes(30) + bytes((0, 47)))
    assert inbound.open(forged, 0.0) is EspDrop.ICV_FAILURE
    assert not out.icv_settled
    out.seal(b"x" * 40, 47, 0.0)
    assert out.alternate is not None  # still both lengths


def test_two_pyike_ends_settle_on_different_lengths_and_still_carry_traffic():
    """A reordered copy makes one end settle on 96 and the other on 128: each end's inbound SA
    opens both, so traffic flows both ways; the second copy of a packet is a replay."""
    enc_ab, auth_ab, enc_ba, auth_ba = (os.urandom(n) for n in (16, 32, 16, 32))
    a_out = EspSA(0x1001, SRC, DST, "aes-cbc", enc_ab, "hmac-sha256", auth_ab, direction="out")
    b_in = EspSA(0x1001, SRC, DST, "aes-cbc", enc_ab, "hmac-sha256", auth_ab, direction="in")
    b_out = EspSA(0x2002, DST, SRC, "aes-cbc", enc_ba, "hmac-sha256", auth_ba, direction="out")
    a_in = EspSA(0x2002, DST, SRC, "aes-cbc", enc_ba, "hmac-sha256", auth_ba, direction="in")
    a_in.pair_with(a_out)
    b_in.pair_with(b_out)
    payload = gre_payload(80)

    long_ab = a_out.seal(payload, 47, 0.0)
    short_ab = a_out.alternate
    long_ba = b_out.seal(payload, 47, 0.0)
    short_ba = b_out.alternate
    assert b_in.open(long_ab, 0.0) == (47, payload)  # B hears 128 first
    assert b_in.open(short_ab, 0.0) is EspDrop.REPLAYED  # its copy is no second delivery
    assert a_in.open(short_ba, 0.0) == (47, payload)  # A hears the 96 copy first (reordered)
    assert a_in.open(long_ba, 0.0) is EspDrop.REPLAYED
    assert a_out.icv_settled and b_out.icv_settled
    for _ in range(3):
        assert b_in.open(a_out.seal(payload, 47, 0.0), 0.0) == (47, payload)
        assert a_in.open(b_out.seal(payload, 47, 0.0), 0.0) == (47, payload)
    assert len(a_out.seal(payload, 47, 0.0)) == len(long_ab) - 4  # A sends 96 now
    assert len(b_out.seal(payload, 47, 0.0)) == len(long_ba)  # and B 128


def test_one_length_algorithms_send_one_packet():
    for alg, key in (("hmac-sha1", 20), ("hmac-sha256-96", 32), ("hmac-md5", 16)):
        out = EspSA(0x1001, SRC, DST, "aes-cbc", os.urandom(16), alg, os.urandom(key),
                    direction="out")
        out.seal(b"x" * 40, 47, 0.0)
        assert out.alternate is None and out.icv_settled, alg
