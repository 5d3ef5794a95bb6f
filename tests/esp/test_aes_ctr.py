"""AES-CTR for ESP (RFC 3686): the counter block against the RFC's test vectors, the ESP framing
against scapy's ESP, and the IV never repeated."""

from __future__ import annotations

import os
import warnings

import pytest
from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.packet import Raw

from esp.algorithms import CIPHERS
from esp.sa import EspDrop, EspSA, _ctr_functions
from tests.esp.helpers import DST, SPI, SRC

EXPERIMENTAL = 253  # RFC 3692: a next header scapy does not try to dissect

# RFC 3686 §6: (key, nonce, IV, plaintext, ciphertext); test vectors #1, #2, #4 and #7
VECTORS = [
    ("ae6852f8121067cc4bf7a5765577f39e", "00000030", "0000000000000000",
     b"Single block msg".hex(), "e4095d4fb7a7b3792d6175a3261311b8"),
    ("7e24067817fae0d743d6ce1f32539163", "006cb6db", "c0543b59da48d90b",
     bytes(range(32)).hex(),
     "5104a106168a72d9790d41ee8edad388eb2e1efc46da57c8fce630df9141be28"),
    ("16af5b145fc9f579c175f93e3bfb0eed863d06ccfdb78515", "00000048", "36733c147d6d93cb",
     b"Single block msg".hex(), "4b55384fe259c9c84e7935a003cbe928"),
    ("776beff2851db06f4c8a0542c8696f6c6a81af1eec96b4d37fc1d689e6c1c104", "00000060",
     "db5672c97aa8f0b2", b"Single block msg".hex(), "145ad01dbf824ec7560863dc71e3e0c0"),
]


@pytest.mark.parametrize(("key", "nonce", "iv", "plain", "cipher"), VECTORS)
def test_counter_block_is_rfc_3686s(key, nonce, iv, plain, cipher):
    _, decrypt = _ctr_functions(CIPHERS["aes-ctr"], bytes.fromhex(key + nonce))
    iv_b = bytes.fromhex(iv)
    assert decrypt(iv_b + bytes.fromhex(cipher)) == iv_b + bytes.fromhex(plain)


def _pair(key_bytes: int) -> tuple[EspSA, EspSA]:
    keys = (os.urandom(key_bytes), os.urandom(20))
    args = (SPI, SRC, DST, "aes-ctr", keys[0], "hmac-sha1", keys[1])
    return EspSA(*args, direction="out"), EspSA(*args, direction="in")


def _scapy(sa: EspSA, seq_num: int = 1) -> SecurityAssociation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # scapy's AES-CTR takes the RFC 3686 key material: the key, then the 4-byte nonce
        return SecurityAssociation(ESP, spi=sa.spi, seq_num=seq_num, crypt_algo="AES-CTR",
                                   crypt_key=sa.enc_key, auth_algo="HMAC-SHA1-96",
                                   auth_key=sa.auth_key)


@pytest.mark.parametrize("key_bytes", [20, 28, 36])
@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 15, 16, 17, 1400])
def test_scapy_opens_what_we_seal_and_back(key_bytes, size):
    out, inbound = _pair(key_bytes)
    payload = os.urandom(size)
    for _ in range(3):
        sealed = out.seal(payload, EXPERIMENTAL, 0.0)
        assert isinstance(sealed, bytes) and (len(sealed) - 8 - 8 - 12) % 4 == 0
        opened = _scapy(out).decrypt(IP(bytes(IP(src=SRC, dst=DST, proto=50) / Raw(sealed))))
        assert opened.proto == EXPERIMENTAL and bytes(opened.payload) == payload
    theirs = _scapy(out, seq_num=5).encrypt(
        IP(src=SRC, dst=DST, proto=EXPERIMENTAL) / Raw(payload))
    assert inbound.open(bytes(theirs[ESP]), 0.0) == (EXPERIMENTAL, payload)


def test_iv_never_repeats_and_tampering_is_caught():
    out, inbound = _pair(20)
    packets = [out.seal(b"same payload", 4, 0.0) for _ in range(50)]
    assert len({p[8:16] for p in packets}) == 50  # RFC 3686 §2.1: a fresh IV per packet
    bad = bytearray(packets[0])
    bad[20] ^= 1
    assert inbound.open(bytes(bad), 0.0) is EspDrop.ICV_FAILURE
    assert inbound.open(packets[1], 0.0) == (4, b"same payload")


def test_key_material_without_the_nonce_is_refused():
    with pytest.raises(ValueError):
        EspSA(SPI, SRC, DST, "aes-ctr", os.urandom(16), "hmac-sha1", os.urandom(20),
              direction="out")
