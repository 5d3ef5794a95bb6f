"""Phase-1 ciphers and racoon's ISAKMP padding."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikev1 import crypto

h = bytes.fromhex


def test_aes_cbc_nist_vector() -> None:
    # NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, first two blocks.
    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    iv = h("000102030405060708090a0b0c0d0e0f")
    pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
    assert crypto.encrypt("aes", key, iv, pt) == ct
    assert crypto.decrypt("aes", key, iv, ct) == pt
    # CBC chaining across messages: the last ciphertext block is the next IV (RFC 2409 App. B).
    assert crypto.encrypt("aes", key, ct[:16], pt[16:]) == ct[16:]


def test_3des_cbc_vector() -> None:
    # NIST SP 800-67 / SP 800-20 style check: with K1 = K2 = K3, 3DES-EDE equals single DES.
    # FIPS 81 Appendix B (DES CBC): key 0123456789abcdef, IV 1234567890abcdef.
    key = h("0123456789abcdef") * 3
    iv = h("1234567890abcdef")
    pt = b"Now is the time for all "
    ct = h("e5c7cdde872bf27c43e934008c389c0f683788499a7c05f6")
    assert crypto.encrypt("3des", key, iv, pt) == ct
    assert crypto.decrypt("3des", key, iv, ct) == pt


@pytest.mark.parametrize(
    "alg,bits,key_len,block", [("aes", None, 16, 16), ("aes", 192, 24, 16), ("aes", 256, 32, 16),
                               ("3des", None, 24, 8)]
)
def test_sizes_and_round_trip(alg: str, bits: int | None, key_len: int, block: int) -> None:
    assert crypto.key_length(alg, bits) == key_len
    assert crypto.block_size(alg) == block
    key, iv = os.urandom(key_len), os.urandom(block)
    data = crypto.pad(b"payload bytes", block)
    assert crypto.decrypt(alg, key, iv, crypto.encrypt(alg, key, iv, data)) == data


@pytest.mark.parametrize(
    "call",
    [
        lambda: crypto.key_length("aes", 100),
        lambda: crypto.key_length("blowfish"),
        lambda: crypto.encrypt("aes", b"k" * 15, b"i" * 16, b"x" * 16),
        lambda: crypto.encrypt("aes", b"k" * 16, b"i" * 8, b"x" * 16),
        lambda: crypto.decrypt("aes", b"k" * 16, b"i" * 16, b"x" * 17),
        lambda: crypto.decrypt("3des", b"k" * 16, b"i" * 8, b"x" * 8),
    ],
)
def test_bad_parameters_raise_cipher_error(call) -> None:
    with pytest.raises(crypto.CipherError):
        call()


@pytest.mark.parametrize("length", range(0, 34))
@pytest.mark.parametrize("block", [8, 16])
def test_pad_like_racoon(length: int, block: int) -> None:
    data = bytes(range(length))
    padded = crypto.pad(data, block)
    padlen = block - length % block  # 1..block: a whole block when already aligned
    assert len(padded) == length + padlen and len(padded) % block == 0
    assert padded[:length] == data
    assert padded[-1] == padlen - 1  # exclusive_tail, racoon's default: the byte not counted
    assert padded[length:-1] == bytes(padlen - 1)  # zeros unless randomized
    assert crypto.unpad(padded, strict=True) == data
    assert crypto.unpad(padded) == padded  # racoon without strict_check leaves it in place
    inclusive = crypto.pad(data, block, exclusive_tail=False)
    assert inclusive[-1] == padlen and inclusive[:-1] == padded[:-1]
    assert crypto.unpad(inclusive, strict=True, exclusive_tail=False) == data


def test_pad_random_and_extra_blocks() -> None:
    padded = crypto.pad(b"abc", 16, rng=lambda n: b"\xee" * n, extra_blocks=2)
    assert len(padded) == 48
    assert padded[3:-1] == b"\xee" * 44 and padded[-1] == 44
    assert crypto.unpad(padded, strict=True) == b"abc"


def test_unpad_strict_rejects_impossible_length() -> None:
    with pytest.raises(crypto.CipherError):
        crypto.unpad(b"\x00" * 15 + b"\x10", strict=True)  # 17 bytes of padding in 16
    with pytest.raises(crypto.CipherError):
        crypto.unpad(b"", strict=True)


@given(data=st.binary(max_size=300), alg=st.sampled_from(["aes", "3des"]),
       extra=st.integers(0, 3), seed=st.binary(min_size=40, max_size=40))
@settings(max_examples=150, deadline=None)
def test_pad_encrypt_decrypt_unpad_round_trip(data: bytes, alg: str, extra: int,
                                              seed: bytes) -> None:
    block = crypto.block_size(alg)
    key, iv = seed[: crypto.key_length(alg)], seed[-block:]
    padded = crypto.pad(data, block, extra_blocks=extra)
    ct = crypto.encrypt(alg, key, iv, padded)
    assert len(ct) == len(padded) and ct != padded
    assert crypto.unpad(crypto.decrypt(alg, key, iv, ct), strict=True) == data
