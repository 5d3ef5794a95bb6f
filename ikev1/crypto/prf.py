"""Hashes and the HMAC prf of IKEv1, by racoon's algorithm names.

RFC 2409 §4: with no negotiated prf, phase 1 uses the HMAC of the negotiated hash as its prf.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, hmac

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

HASH_NAMES: tuple[str, ...] = tuple(_HASHES)


def _algorithm(name: str) -> hashes.HashAlgorithm:
    try:
        return _HASHES[name]()
    except KeyError:
        raise ValueError(f"unsupported hash {name!r}") from None


def hash_size(name: str) -> int:
    """Digest length in bytes (also the prf output length)."""
    return _algorithm(name).digest_size


def digest(name: str, data: bytes) -> bytes:
    """The plain hash of `data` (phase-1 and phase-2 IVs use it, RFC 2409 App. B)."""
    h = hashes.Hash(_algorithm(name))
    h.update(data)
    return h.finalize()


def prf(name: str, key: bytes, data: bytes) -> bytes:
    """HMAC-`name`(key, data): the negotiated-hash prf of RFC 2409 §4."""
    mac = hmac.HMAC(key, _algorithm(name))
    mac.update(data)
    return mac.finalize()
