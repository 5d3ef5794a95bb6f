"""Phase-1 encryption of ISAKMP payloads: AES-CBC and 3DES-CBC, and racoon's padding.

RFC 2409 App. B: the payloads after the ISAKMP header are CBC-encrypted with the App. B key;
the IV chains from message to message (the engine keeps it, see keys.phase1_iv/phase2_iv).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import CipherError

try:  # cryptography >= 43 keeps 3DES in the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    TripleDES = algorithms.TripleDES  # type: ignore[assignment,misc]

# name -> (block size, allowed key lengths in bits, default key length in bits)
_CIPHERS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "aes": (16, (128, 192, 256), 128),  # RFC 3602 §5; racoon's default key length is 128
    "3des": (8, (192,), 192),  # RFC 2451 §2.2: three 64-bit keys, parity bits included
}

CIPHER_NAMES: tuple[str, ...] = tuple(_CIPHERS)


def _spec(alg: str) -> tuple[int, tuple[int, ...], int]:
    try:
        return _CIPHERS[alg]
    except KeyError:
        raise CipherError(f"unsupported phase-1 cipher {alg!r}") from None


def block_size(alg: str) -> int:
    """CBC block length in bytes: also the IV length (RFC 2409 App. B)."""
    return _spec(alg)[0]


def key_length(alg: str, key_bits: int | None = None) -> int:
    """Key length in bytes for `alg` with the negotiated Key Length attribute (None: default)."""
    _, allowed, default = _spec(alg)
    bits = default if key_bits is None else key_bits
    if bits not in allowed:
        raise CipherError(f"{alg}: key length {bits} bits not supported")
    return bits // 8


def _cipher(alg: str, key: bytes, iv: bytes) -> Cipher:
    size, allowed, _ = _spec(alg)
    if len(key) * 8 not in allowed:
        raise CipherError(f"{alg}: key of {len(key)} bytes")
    if len(iv) != size:
        raise CipherError(f"{alg}: IV of {len(iv)} bytes, expected {size}")
    algorithm = algorithms.AES(key) if alg == "aes" else TripleDES(key)
    return Cipher(algorithm, modes.CBC(iv))


def _check_blocks(alg: str, data: bytes) -> None:
    if len(data) % block_size(alg):
        raise CipherError(f"{alg}: {len(data)} bytes is not a whole number of blocks")


def encrypt(alg: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC-encrypt already padded `data`; the last block is the next IV (RFC 2409 App. B)."""
    _check_blocks(alg, data)
    enc = _cipher(alg, key, iv).encryptor()
    return enc.update(data) + enc.finalize()


def decrypt(alg: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC-decrypt `data` (padding left in place; see unpad)."""
    _check_blocks(alg, data)
    dec = _cipher(alg, key, iv).decryptor()
    return dec.update(data) + dec.finalize()


def pad(
    data: bytes,
    block: int,
    rng: Callable[[int], bytes] | None = None,
    extra_blocks: int = 0,
    exclusive_tail: bool = True,
) -> bytes:
    """Pad `data` to a whole number of blocks as racoon does.

    RFC 2408 §3.5 leaves the pad contents open; racoon always adds 1..block bytes (a whole block
    when already aligned), zeros unless `pad_randomize` (rng given), plus `extra_blocks` whole
    blocks for `pad_randomizelen`, and writes the pad length into the last byte: not counting
    that byte under `exclusive_tail` (racoon's default, ipsec-tools oakley.c), else counting it.
    """
    padlen = block - len(data) % block + extra_blocks * block
    filler = rng(padlen - 1) if rng is not None else bytes(padlen - 1)
    return data + filler + bytes(((padlen - exclusive_tail) & 0xFF,))


def unpad(data: bytes, strict: bool = False, exclusive_tail: bool = True) -> bytes:
    """Strip racoon-style padding when `strict` (racoon's `strict_check on`).

    Without strict checking racoon leaves the padding in place: payload lengths delimit the
    message and trailing bytes are ignored. With it, a pad length larger than the data is an error.
    """
    if not strict:
        return data
    if not data:
        raise CipherError("empty decrypted message")
    padlen = data[-1] + exclusive_tail
    if padlen > len(data):
        raise CipherError(f"pad length {padlen} exceeds message length {len(data)}")
    return data[: len(data) - padlen]
