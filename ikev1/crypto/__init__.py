"""IKEv1 cryptography: hashes and prf, Diffie-Hellman groups, phase-1 ciphers and the key schedule.

Everything goes through `cryptography` (OpenSSL), except the modular exponentiations of MODP
groups 1 and 2, which OpenSSL would re-validate on every key: those use GMP's constant-time
mpz_powm_sec (gmpy2). Errors are CryptoError subclasses (ValueError),
which the engine catches and reports as a failed negotiation.

    from ikev1.crypto import prf, dh_group, phase1_keys_psk, encrypt, decrypt, pad, ...
"""

from .cipher import CIPHER_NAMES, block_size, decrypt, encrypt, key_length, pad, unpad
from .dh import SUPPORTED_GROUPS, DHGroup, DHPrivate, EcpGroup, ModpGroup, dh_group, modp_prime
from .errors import CipherError, CryptoError, DHError
from .keys import (
    ESP_AUTH_KEY_LENGTHS,
    ESP_ENC_KEY_LENGTHS,
    PROTO_IPSEC_ESP,
    Phase1Keys,
    esp_key_lengths,
    esp_keys,
    expand_key,
    hash_i,
    hash_r,
    info_hash,
    keymat,
    keymat_expand,
    phase1_iv,
    phase1_keys_psk,
    phase2_iv,
    qm_hash1,
    qm_hash2,
    qm_hash3,
    skeyid_children,
    skeyid_psk,
)
from .prf import HASH_NAMES, digest, hash_size, prf

__all__ = [
    "CIPHER_NAMES",
    "ESP_AUTH_KEY_LENGTHS",
    "ESP_ENC_KEY_LENGTHS",
    "HASH_NAMES",
    "PROTO_IPSEC_ESP",
    "SUPPORTED_GROUPS",
    "CipherError",
    "CryptoError",
    "DHError",
    "DHGroup",
    "DHPrivate",
    "EcpGroup",
    "ModpGroup",
    "Phase1Keys",
    "block_size",
    "decrypt",
    "dh_group",
    "digest",
    "encrypt",
    "esp_key_lengths",
    "esp_keys",
    "expand_key",
    "hash_i",
    "hash_r",
    "hash_size",
    "info_hash",
    "keymat",
    "keymat_expand",
    "key_length",
    "modp_prime",
    "pad",
    "phase1_iv",
    "phase1_keys_psk",
    "phase2_iv",
    "prf",
    "qm_hash1",
    "qm_hash2",
    "qm_hash3",
    "skeyid_children",
    "skeyid_psk",
    "unpad",
]
