"""Exceptions raised by ikev1.crypto; the engine turns them into a failed negotiation."""

from __future__ import annotations


class CryptoError(ValueError):
    """A value from the wire or a negotiated parameter that the crypto layer refuses."""


class DHError(CryptoError):
    """Unknown group, or a peer's public value of the wrong length or outside the group."""


class CipherError(CryptoError):
    """Unknown cipher, bad key length, IV or ciphertext not a whole number of blocks."""
