"""The IKEv1 key schedule: SKEYID and its children, App. B key expansion, IVs, HASH_I/HASH_R,
quick-mode and informational hashes, and KEYMAT (RFC 2409 §5, §5.5, §5.7, App. B).

All inputs are bytes as they appear on the wire: nonce and SA "_b" values are payload bodies
without the generic payload header, cookies are 8 bytes, message IDs 4 bytes (ints accepted).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import cipher
from .prf import digest, prf


@dataclass(frozen=True, repr=False)
class Phase1Keys:
    """The phase-1 keying material; repr hides it so it never reaches a log."""

    skeyid: bytes
    skeyid_d: bytes
    skeyid_a: bytes
    skeyid_e: bytes
    enc_key: bytes

    def __repr__(self) -> str:
        return f"Phase1Keys(<{len(self.skeyid)}-byte skeyid>, enc_key=<{len(self.enc_key)} bytes>)"


def _u32(value: int | bytes) -> bytes:
    if isinstance(value, int):
        return value.to_bytes(4, "big")
    if len(value) != 4:
        raise ValueError(f"expected 4 bytes, got {len(value)}")
    return bytes(value)


def skeyid_psk(hash_name: str, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b)  (RFC 2409 §5, pre-shared keys)."""
    return prf(hash_name, psk, ni_b + nr_b)


def skeyid_children(
    hash_name: str, skeyid: bytes, gxy: bytes, cky_i: bytes, cky_r: bytes
) -> tuple[bytes, bytes, bytes]:
    """(SKEYID_d, SKEYID_a, SKEYID_e), each chained on the previous one (RFC 2409 §5)."""
    tail = gxy + cky_i + cky_r
    skeyid_d = prf(hash_name, skeyid, tail + b"\x00")
    skeyid_a = prf(hash_name, skeyid, skeyid_d + tail + b"\x01")
    skeyid_e = prf(hash_name, skeyid, skeyid_a + tail + b"\x02")
    return skeyid_d, skeyid_a, skeyid_e


def expand_key(hash_name: str, skeyid_e: bytes, length: int) -> bytes:
    """The phase-1 encryption key from SKEYID_e (RFC 2409 App. B).

    When SKEYID_e is long enough its leading bytes are the key; otherwise
    Ka = K1 | K2 | ... with K1 = prf(SKEYID_e, 0) (one zero octet) and Kn = prf(SKEYID_e, Kn-1).
    """
    if len(skeyid_e) >= length:
        return skeyid_e[:length]
    out = b""
    block = prf(hash_name, skeyid_e, b"\x00")
    while True:
        out += block
        if len(out) >= length:
            return out[:length]
        block = prf(hash_name, skeyid_e, block)


def phase1_keys_psk(
    hash_name: str,
    psk: bytes,
    ni_b: bytes,
    nr_b: bytes,
    gxy: bytes,
    cky_i: bytes,
    cky_r: bytes,
    enc_alg: str,
    key_bits: int | None = None,
) -> Phase1Keys:
    """Every phase-1 key of a pre-shared-key exchange, for the negotiated cipher."""
    skeyid = skeyid_psk(hash_name, psk, ni_b, nr_b)
    d, a, e = skeyid_children(hash_name, skeyid, gxy, cky_i, cky_r)
    enc_key = expand_key(hash_name, e, cipher.key_length(enc_alg, key_bits))
    return Phase1Keys(skeyid, d, a, e, enc_key)


def phase1_iv(hash_name: str, gxi: bytes, gxr: bytes, block: int) -> bytes:
    """First phase-1 IV = hash(g^xi | g^xr) cut to the block size (RFC 2409 App. B)."""
    return digest(hash_name, gxi + gxr)[:block]


def phase2_iv(hash_name: str, last_block: bytes, message_id: int | bytes, block: int) -> bytes:
    """IV of a quick mode or informational exchange: hash(last phase-1 CBC block | M-ID)
    cut to the block size (RFC 2409 §5.5 and App. B)."""
    return digest(hash_name, last_block + _u32(message_id))[:block]


def hash_i(
    hash_name: str,
    skeyid: bytes,
    gxi: bytes,
    gxr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)  (RFC 2409 §5)."""
    return prf(hash_name, skeyid, gxi + gxr + cky_i + cky_r + sai_b + idii_b)


def hash_r(hash_name: str, skeyid: bytes, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes,
           sai_b: bytes, idir_b: bytes) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)  (RFC 2409 §5).

    Arguments are in initiator/responder order, like hash_i; HASH_R is HASH_I's formula with the
    two sides swapped, so the swap happens here.
    """
    return hash_i(hash_name, skeyid, gxr, gxi, cky_r, cky_i, sai_b, idir_b)


def qm_hash1(hash_name: str, skeyid_a: bytes, message_id: int | bytes, payloads: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | everything after the HASH payload)  (RFC 2409 §5.5).

    The same formula authenticates informational exchanges (§5.7)."""
    return prf(hash_name, skeyid_a, _u32(message_id) + payloads)


def qm_hash2(
    hash_name: str, skeyid_a: bytes, message_id: int | bytes, ni_b: bytes, payloads: bytes
) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | everything after the HASH payload)  (§5.5)."""
    return prf(hash_name, skeyid_a, _u32(message_id) + ni_b + payloads)


def qm_hash3(
    hash_name: str, skeyid_a: bytes, message_id: int | bytes, ni_b: bytes, nr_b: bytes
) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)  (RFC 2409 §5.5)."""
    return prf(hash_name, skeyid_a, b"\x00" + _u32(message_id) + ni_b + nr_b)


info_hash = qm_hash1  # RFC 2409 §5.7: HASH(1) = prf(SKEYID_a, M-ID | N/D)


def keymat(
    hash_name: str,
    skeyid_d: bytes,
    protocol: int,
    spi: int | bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    gqm_xy: bytes | None = None,
) -> bytes:
    """KEYMAT for one SA, `length` bytes (RFC 2409 §5.5).

    K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b), Kn = prf(SKEYID_d, Kn-1 | same);
    the SPI is the one the SA's receiver chose; g(qm)^xy only with PFS.
    """
    seed = (gqm_xy or b"") + bytes((protocol,)) + _u32(spi) + ni_b + nr_b
    return keymat_expand(hash_name, skeyid_d, seed, length)


def keymat_expand(hash_name: str, key: bytes, seed: bytes, length: int) -> bytes:
    """K1 | K2 | ... cut to `length`: K1 = prf(key, seed), Kn = prf(key, Kn-1 | seed)
    (RFC 2409 §5.5). Unlike App. B, K1 is computed even when one block is enough."""
    out = b""
    block = b""
    while len(out) < length:
        block = prf(hash_name, key, block + seed)
        out += block
    return out[:length]


# ESP algorithm key lengths in bytes, by the names the data plane uses (events.EspKeys).
ESP_ENC_KEY_LENGTHS: dict[str, tuple[int, ...]] = {
    "aes-cbc": (16, 24, 32),  # RFC 3602 §2.4
    "3des-cbc": (24,),  # RFC 2451
}
ESP_AUTH_KEY_LENGTHS: dict[str, int] = {
    "hmac-md5": 16,  # RFC 2403
    "hmac-sha1": 20,  # RFC 2404
    "hmac-sha256": 32,  # RFC 4868 §2.1.1
    "hmac-sha256-96": 32,
    "hmac-sha384": 48,
    "hmac-sha512": 64,
}

PROTO_IPSEC_ESP = 3  # RFC 2407 §4.4.1


def esp_key_lengths(enc_alg: str, enc_key_bytes: int | None, auth_alg: str) -> tuple[int, int]:
    """(encryption, authentication) key lengths in bytes for an ESP transform."""
    try:
        allowed = ESP_ENC_KEY_LENGTHS[enc_alg]
        auth_len = ESP_AUTH_KEY_LENGTHS[auth_alg]
    except KeyError as exc:
        raise ValueError(f"unsupported ESP algorithm {exc.args[0]!r}") from None
    enc_len = allowed[0] if enc_key_bytes is None else enc_key_bytes
    if enc_len not in allowed:
        raise ValueError(f"{enc_alg}: key of {enc_len} bytes not supported")
    return enc_len, auth_len


def esp_keys(
    hash_name: str,
    skeyid_d: bytes,
    spi: int | bytes,
    ni_b: bytes,
    nr_b: bytes,
    enc_alg: str,
    enc_key_bytes: int | None,
    auth_alg: str,
    gqm_xy: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(encryption key, authentication key) of one ESP SA (RFC 2409 §5.5).

    KEYMAT is cut encryption key first, then authentication key: the order racoon, strongSwan
    and libreswan use. `spi` is the SPI chosen by the receiver of this SA."""
    enc_len, auth_len = esp_key_lengths(enc_alg, enc_key_bytes, auth_alg)
    material = keymat(
        hash_name, skeyid_d, PROTO_IPSEC_ESP, spi, ni_b, nr_b, enc_len + auth_len, gqm_xy
    )
    return material[:enc_len], material[enc_len:]
