"""Shared fixtures for the ESP tests, including an independent ESP packet builder.

`forge_esp` writes ESP packets straight from RFC 4303 with `cryptography`, so the tests can
put any trailer (bad padding, dummy next header) behind a valid ICV.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from esp.sa import EspSA

SRC = "198.18.0.1"
DST = "198.18.0.2"
SPI = 0x0A0B0C0D

_HASHES = {
    "hmac-sha1": (hashlib.sha1, 12),
    "hmac-sha256": (hashlib.sha256, 16),
    "hmac-sha256-96": (hashlib.sha256, 12),
    "hmac-md5": (hashlib.md5, 12),
    "hmac-sha384": (hashlib.sha384, 24),
    "hmac-sha512": (hashlib.sha512, 32),
}
AUTH_KEY_SIZES = {"hmac-sha1": 20, "hmac-sha256": 32, "hmac-sha256-96": 32, "hmac-md5": 16,
                  "hmac-sha384": 48, "hmac-sha512": 64}


def sa_pair(
    enc_key_size: int = 16,
    auth_alg: str = "hmac-sha1",
    *,
    enc_alg: str = "aes-cbc",
    spi: int = SPI,
    replay_window: int = 1024,
    **kwargs,
) -> tuple[EspSA, EspSA]:
    """An outbound SA and the inbound SA with the same keys, as the two peers hold them."""
    enc_key = os.urandom(enc_key_size)
    auth_key = os.urandom(AUTH_KEY_SIZES[auth_alg])
    out = EspSA(spi, SRC, DST, enc_alg, enc_key, auth_alg, auth_key, direction="out", **kwargs)
    inbound = EspSA(
        spi, SRC, DST, enc_alg, enc_key, auth_alg, auth_key,
        direction="in", replay_window=replay_window, **kwargs,
    )
    return out, inbound


def forge_esp(sa: EspSA, seq: int, plaintext: bytes, iv: bytes | None = None) -> bytes:
    """An ESP packet for `sa` whose encrypted part is exactly `plaintext` (already padded)."""
    assert sa.enc_alg == "aes-cbc"
    iv = iv if iv is not None else os.urandom(16)
    enc = Cipher(algorithms.AES(sa.enc_key), modes.CBC(iv)).encryptor()
    head = sa.spi.to_bytes(4, "big") + seq.to_bytes(4, "big") + iv
    body = enc.update(plaintext) + enc.finalize()
    digest, icv_len = _HASHES[sa.auth_alg]
    icv = hmac.new(sa.auth_key, head + body, digest).digest()[:icv_len]
    return head + body + icv
