"""ISAKMP codec: round trips, scapy as an independent encoder/decoder, strict bounds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.isakmp import (
    ISAKMP,
    ISAKMP_payload_Nonce,
    ISAKMP_payload_Proposal,
    ISAKMP_payload_SA,
    ISAKMP_payload_Transform,
    ISAKMP_payload_VendorID,
)

from ikev1 import vendor
from ikev1.codec import (
    CodecError,
    DeletePayload,
    Header,
    IdPayload,
    KePayload,
    NatDPayload,
    NotifyPayload,
    Proposal,
    RawPayload,
    SaPayload,
    Transform,
    VendorIdPayload,
    attribute_int,
    decode_message,
    decode_payloads,
    encode_message,
)
from ikev1.constants import Payload

IC = bytes.fromhex("0102030405060708")


def _scapy_main_mode_1() -> bytes:
    transforms = [("Encryption", "AES-CBC"), ("Hash", "SHA"), ("Authentication", "PSK"),
                  ("GroupDesc", "1024MODPgr"), ("LifeType", "Seconds"),
                  ("LifeDuration", 86400), ("KeyLength", 128)]
    pkt = (ISAKMP(init_cookie=IC, exch_type=2)
           / ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(
               trans_nb=1,
               trans=ISAKMP_payload_Transform(transform_count=1, transforms=transforms)))
           / ISAKMP_payload_VendorID(VendorID=vendor.DPD)
           / ISAKMP_payload_Nonce(nonce=b"n" * 16))
    return bytes(pkt)


def test_decodes_what_scapy_encodes():
    msg = decode_message(_scapy_main_mode_1())
    assert msg.header.icookie == IC and msg.header.exchange == 2
    sa, vid, nonce = msg.payloads
    tr = sa.proposals[0].transforms[0]
    attrs = tr.attrs()
    # RFC 2409 App. A: encryption 7 = AES, hash 2 = SHA, group 2, key length 128
    assert (attrs[1], attrs[2], attrs[3], attrs[4], attrs[14]) == (7, 2, 1, 2, 128)
    assert attribute_int(attrs[12]) == 86400  # 86400 does not fit 16 bits: a variable attribute
    assert vendor.vendor_name(vid.data) == "DPD"
    assert nonce.data == b"n" * 16


def test_scapy_decodes_what_we_encode():
    sa = SaPayload((Proposal(1, 1, b"", (Transform(1, 1, ((1, 5), (2, 1), (4, 14),
                                                              (12, 28800))),)),))
    data = encode_message(Header(IC, bytes(8), 0, 2, 0, 0),
                          [sa, VendorIdPayload(b"v" * 16), KePayload(b"k" * 128)])
    pkt = ISAKMP(data)
    assert pkt.init_cookie == IC and pkt.length == len(data)
    scapy_sa = pkt[ISAKMP_payload_SA]
    assert scapy_sa.prop.trans.transforms[0] == ("Encryption", "3DES-CBC")
    assert bytes(pkt[ISAKMP_payload_VendorID].VendorID) == b"v" * 16


@pytest.mark.parametrize("raw", [b"\x70\x80", b"\x00\x00\x70\x80", bytes(4) + b"\x00\x00\x70\x80"])
def test_life_duration_any_width(raw):
    attrs = struct.pack("!HH", 12, len(raw)) + raw
    tr = struct.pack("!BBH", 1, 1, 0) + attrs
    prop = struct.pack("!BBBB", 1, 1, 0, 1) + struct.pack("!BBH", 0, 0, 4 + len(tr)) + tr
    body = struct.pack("!II", 1, 1) + struct.pack("!BBH", 0, 0, 4 + len(prop)) + prop
    sa = SaPayload.decode_body(body)
    assert attribute_int(sa.proposals[0].transforms[0].attrs()[12]) == 28800
    assert sa.body() == body  # the received bytes are what HASH covers


def test_round_trip_every_payload():
    payloads = [
        IdPayload(1, 47, 0, bytes([198, 18, 0, 1])),
        NotifyPayload(24578, 1, IC + bytes(8)),
        DeletePayload(3, (b"\x00\x00\x10\x00", b"\x00\x00\x20\x00")),
        NatDPayload(b"d" * 20),
        NatDPayload(b"e" * 20, Payload.NAT_D_DRAFT),
        RawPayload(Payload.CERT, b"cert"),
    ]
    data = encode_message(Header(IC, IC, 0, 5, 0, 7), payloads)
    assert list(decode_message(data).payloads) == payloads


def test_padding_after_chain_only_when_allowed():
    chain = encode_message(Header(IC, IC, 0, 5, 0, 7), [KePayload(b"x")])[28:]
    assert decode_payloads(Payload.KE, chain + bytes(3), padded=True) == [KePayload(b"x")]
    with pytest.raises(CodecError):
        decode_payloads(Payload.KE, chain + bytes(3))


def _mm1() -> bytearray:
    return bytearray(_scapy_main_mode_1())


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d[:20], "short header"),
    (lambda d: d[:28] + d[28:40], "header length"),
    (lambda d: d.__setitem__(17, 0x20) or d, "major version"),
    (lambda d: d.__setitem__(slice(0, 8), bytes(8)) or d, "zero initiator cookie"),
    (lambda d: d.__setitem__(slice(30, 32), b"\xff\xff") or d, "payload length"),
    (lambda d: d.__setitem__(slice(30, 32), b"\x00\x02") or d, "payload length"),
    (lambda d: d.__setitem__(16, 99) or d, "unknown"),
])
def test_malformed_rejected(mutate, reason):
    data = bytes(mutate(_mm1()))
    if reason == "unknown":
        # unknown non-critical payload type: kept raw; with the critical bit: rejected
        msg = decode_message(data)
        assert isinstance(msg.payloads[0], RawPayload)
        data = bytearray(data)
        data[29] = 0x80
        reason = "unknown critical payload"
        data = bytes(data)
    with pytest.raises(CodecError) as err:
        decode_message(data)
    assert err.value.reason == reason


def test_transform_count_mismatch_rejected():
    data = _mm1()
    # proposal header starts after header(28) + SA generic(4) + doi/situation(8); count at +7
    data[28 + 4 + 8 + 7] = 2
    with pytest.raises(CodecError):
        decode_message(bytes(data))


def test_delete_spi_list_must_fill_payload():
    body = struct.pack("!IBBH", 1, 3, 4, 2) + b"\x00" * 4
    with pytest.raises(CodecError):
        DeletePayload.decode_body(body)


def test_known_vendor_ids():
    # RFC 3947 §3.1 and RFC 3706 §... publish these exact values
    assert vendor.NATT_RFC3947.hex() == "4a131c81070358455c5728f20e95452f"
    assert vendor.vendor_name(bytes.fromhex("90cb80913ebb696e086381b5ec427b1f")) \
        == "draft-ietf-ipsec-nat-t-ike-02\\n"
    assert vendor.vendor_name(bytes.fromhex("12f5f28c457168a9702d9fe274cc0100")) == "Cisco Unity"
    assert vendor.vendor_name(bytes.fromhex("09002689dfd6b712")) == "XAUTH"
    assert vendor.vendor_name(vendor.FRAGMENTATION + b"\x80\x00\x00\x00") == "IKE FRAGMENTATION"
    assert vendor.vendor_name(b"OEN" + bytes(9)) == "Openswan/Libreswan"
    assert vendor.vendor_name(b"\x00" * 16) is None


@pytest.mark.fuzz
@settings(max_examples=300, deadline=1000)
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda cut, flip: _flip(_scapy_main_mode_1()[:cut], flip),
                                st.integers(0, 120), st.integers(0, 8 * 120))))
def test_decoder_only_ever_raises_codec_error(data):
    try:
        msg = decode_message(data)
    except CodecError:
        return
    # whatever decodes re-encodes to a message that decodes to the same payloads
    again = decode_message(encode_message(msg.header, list(msg.payloads)))
    assert [type(p) for p in again.payloads] == [type(p) for p in msg.payloads]


def _flip(data: bytes, bit: int) -> bytes:
    buf = bytearray(data)
    if buf:
        buf[(bit // 8) % len(buf)] ^= 1 << (bit % 8)
    return bytes(buf)
