"""ESP cipher and integrity algorithms by the names setkey(8) and the IKE engine use, and the
room their headers, padding and ICVs take (max_payload).

Each entry holds what an SA needs at install time; nothing here runs per packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import CipherAlgorithm, algorithms

try:  # cryptography >= 43 keeps 3DES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES


ESP_HEADER = 8  # RFC 4303 §2: SPI and sequence number
ESP_TRAILER = 2  # RFC 4303 §2.4-2.6: pad length and next header, after the padding


@dataclass(frozen=True)
class CipherSpec:
    name: str
    # bytes the payload and trailer are aligned to; also the IV length for CBC (RFC 3602 §3,
    # RFC 2451 §3)
    block_size: int
    key_sizes: tuple[int, ...]  # bytes (for CTR: the key and the 4-byte nonce after it)
    factory: type[CipherAlgorithm]
    iv_size: int = 0  # bytes of IV on the wire; 0: block_size
    mode: str = "cbc"  # "cbc" | "ctr"


@dataclass(frozen=True)
class AuthSpec:
    name: str
    hash: type[hashes.HashAlgorithm]
    key_size: int  # bytes
    icv_size: int  # bytes carried on the wire (truncated HMAC output)
    # Another length a peer may use for the same negotiated algorithm: an SA accepts both and
    # sends both until the peer's first verified packet shows which one it uses (esp.sa).
    other_icv_size: int = 0


CIPHERS: dict[str, CipherSpec] = {
    # RFC 3602: AES-CBC with 128/192/256-bit keys, 16-byte explicit IV.
    "aes-cbc": CipherSpec("aes-cbc", 16, (16, 24, 32), algorithms.AES),
    # RFC 2451: 3DES-CBC, 192-bit key, 8-byte explicit IV.
    "3des-cbc": CipherSpec("3des-cbc", 8, (24,), TripleDES),
    # RFC 3686: AES-CTR, 8-byte IV, a 4-byte nonce at the end of the key material (§5.1),
    # padding to 4 bytes (§3.2, RFC 4303 §2.4).
    "aes-ctr": CipherSpec("aes-ctr", 4, (20, 28, 36), algorithms.AES, iv_size=8, mode="ctr"),
}

AUTHS: dict[str, AuthSpec] = {
    # RFC 2404: HMAC-SHA1-96.
    "hmac-sha1": AuthSpec("hmac-sha1", hashes.SHA1, 20, 12),
    # RFC 4868 §2.3: HMAC-SHA-256-128, what strongSwan and libreswan use. A Linux racoon's
    # kernel SAs truncate the same negotiated algorithm to 96 bits (PF_KEY predates RFC 4868).
    "hmac-sha256": AuthSpec("hmac-sha256", hashes.SHA256, 32, 16, other_icv_size=12),
    # RFC 4868 §2.3: HMAC-SHA-384-192 and HMAC-SHA-512-256, keys as long as the digest.
    "hmac-sha384": AuthSpec("hmac-sha384", hashes.SHA384, 48, 24),
    "hmac-sha512": AuthSpec("hmac-sha512", hashes.SHA512, 64, 32),
    # The pre-RFC 4868 96-bit truncation older Linux kernels put on the wire for racoon peers.
    "hmac-sha256-96": AuthSpec("hmac-sha256-96", hashes.SHA256, 32, 12),
    # RFC 2403: HMAC-MD5-96.
    "hmac-md5": AuthSpec("hmac-md5", hashes.MD5, 16, 12),
}


def cipher_spec(name: str, key: bytes) -> CipherSpec:
    """The cipher for `name`, after checking the key length; ValueError otherwise."""
    spec = CIPHERS.get(name)
    if spec is None:
        raise ValueError(f"unsupported ESP cipher {name!r} (known: {', '.join(CIPHERS)})")
    if len(key) not in spec.key_sizes:
        sizes = "/".join(str(8 * k) for k in spec.key_sizes)
        raise ValueError(f"{name} needs a {sizes}-bit key, got {8 * len(key)} bits")
    return spec


def auth_spec(name: str, key: bytes) -> AuthSpec:
    """The integrity algorithm for `name`, after checking the key length; ValueError otherwise."""
    spec = AUTHS.get(name)
    if spec is None:
        known = ", ".join(AUTHS)
        raise ValueError(f"unsupported ESP integrity algorithm {name!r} (known: {known})")
    if len(key) != spec.key_size:
        raise ValueError(f"{name} needs a {8 * spec.key_size}-bit key, got {8 * len(key)} bits")
    return spec


def max_payload(room: int, enc_alg: str | None = None, auth_alg: str | None = None) -> int:
    """The largest payload one ESP packet (SPI .. ICV, transport mode) of at most `room` bytes
    carries: for the algorithm pair given, or, for each left None, the worst of the table's.

    The payload and trailer are padded to the cipher's block (RFC 4303 §2.4), behind its IV:
    one block for CBC (RFC 3602 §3, RFC 2451 §3), 8 bytes for CTR (RFC 3686 §3). An algorithm
    with two ICV lengths counts the longer: an SA sends both until the peer's first packet
    settles it (esp.sa).
    """
    ciphers = (CIPHERS[enc_alg],) if enc_alg is not None else tuple(CIPHERS.values())
    auths = (AUTHS[auth_alg],) if auth_alg is not None else tuple(AUTHS.values())

    def fits(c: CipherSpec, a: AuthSpec) -> int:
        left = room - ESP_HEADER - (c.iv_size or c.block_size) - max(a.icv_size, a.other_icv_size)
        return left - left % c.block_size - ESP_TRAILER

    return min(fits(c, a) for c in ciphers for a in auths)
