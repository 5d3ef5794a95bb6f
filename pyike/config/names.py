"""racoon.conf keyword tables: racoon's names for units, algorithms and DH groups, and which of
them pyike can do.

racoon's names, and the algorithm class each belongs to, follow ipsec-tools' cftoken.l and
algorithm.c. What pyike can do is not written here: it is read from the IKE engine
(ikev1.proposals, ikev1.crypto) and the ESP code (esp.algorithms), so that an algorithm added
there is usable in racoon.conf at once and one the config accepts is one the engine can run.
A name racoon knows but pyike cannot do is dropped from the proposals with a warning; a name
racoon does not know in that place is an error, as in racoon.
"""

from __future__ import annotations

from dataclasses import dataclass

from esp import algorithms as esp_algorithms
from ikev1 import crypto as ike_crypto
from ikev1 import proposals as engine

# Time units (racoon.conf(5): sec, min, hour and their plurals).
TIME_UNITS = {
    **dict.fromkeys(("sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("hour", "hours"), 3600),
}

# Byte units. racoon's "TB" is 1024**3, a historical slip kept for compatibility.
BYTE_UNITS = {"B": 1, "byte": 1, "bytes": 1, "KB": 1024, "MB": 1024**2, "TB": 1024**3}


@dataclass(frozen=True)
class AlgorithmClass:
    """One of racoon's algorithm classes (algorithm.c): the names racoon accepts in it, each
    mapped to pyike's canonical name, and the canonical names pyike can do."""

    what: str  # "encryption algorithm", for messages
    racoon: dict[str, str]
    supported: frozenset[str]
    # canonical name -> key lengths in bits allowed after it, for the supported variable-length
    # ciphers (RFC 2409 App. A: only those carry a Key Length attribute)
    key_bits: dict[str, tuple[int, ...]]

    @property
    def usable(self) -> str:
        """The names pyike can do, for messages."""
        return ", ".join(sorted(n for n, c in self.racoon.items() if c in self.supported))


def _variable_key_bits(sizes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {name: bits for name, bits in sizes.items() if len(bits) > 1}


def _p1_cipher_bits(name: str) -> tuple[int, ...]:
    bits = []
    for size in (64, 128, 192, 256):
        try:
            ike_crypto.key_length(name, size)
        except ike_crypto.CipherError:
            continue
        bits.append(size)
    return tuple(bits)


_P1_CIPHERS_DONE = frozenset(engine.P1_ENC) & frozenset(ike_crypto.CIPHER_NAMES)
_ESP_CIPHERS_DONE = {
    name: esp_algorithms.CIPHERS[engine.ESP_ENC_NAME[name]]
    for name in engine.ESP_ENC
    if engine.ESP_ENC_NAME.get(name) in esp_algorithms.CIPHERS
}

P1_CIPHERS = AlgorithmClass(
    "encryption algorithm",
    {
        **{n: n for n in ("des", "idea", "blowfish", "rc5", "3des", "cast128", "aes")},
        "rijndael": "aes",
        "camellia": "camellia",
    },
    _P1_CIPHERS_DONE,
    _variable_key_bits({n: _p1_cipher_bits(n) for n in _P1_CIPHERS_DONE}),
)
P1_HASHES = AlgorithmClass(
    "hash algorithm",
    {
        "md5": "md5",
        "sha1": "sha1",
        **{f"sha{b}": f"sha{b}" for b in (256, 384, 512)},
        **{f"sha2_{b}": f"sha{b}" for b in (256, 384, 512)},
    },
    frozenset(engine.P1_HASH) & frozenset(ike_crypto.HASH_NAMES),
    {},
)
ESP_CIPHERS = AlgorithmClass(
    "encryption algorithm",
    {
        **{n: n for n in ("des_iv64", "des", "3des", "rc5", "cast128", "blowfish", "des_iv32",
                          "null_enc", "aes", "twofish", "3idea", "idea", "rc4", "camellia")},
        "null": "null_enc",
        "rijndael": "aes",
    },
    frozenset(_ESP_CIPHERS_DONE),
    _variable_key_bits({n: tuple(8 * k for k in s.key_sizes)
                        for n, s in _ESP_CIPHERS_DONE.items()}),
)
ESP_AUTHS = AlgorithmClass(
    "authentication algorithm",
    {
        "hmac_md5": "hmac_md5",
        "hmac_sha1": "hmac_sha1",
        **{f"hmac_sha{b}": f"hmac_sha{b}" for b in (256, 384, 512)},
        **{f"hmac_sha2_{b}": f"hmac_sha{b}" for b in (256, 384, 512)},
        "non_auth": "non_auth",
        "kpdk": "kpdk",
    },
    frozenset(n for n, (_, alg) in engine.ESP_AUTH.items() if alg in esp_algorithms.AUTHS),
    {},
)
# IPComp (RFC 3173): racoon proposes it only where a policy asks for ipcomp, which pyike's
# SPD refuses, so the names are accepted and never proposed (as racoon with such an SPD).
COMPRESSION = AlgorithmClass(
    "compression algorithm",
    {"oui": "oui", "deflate": "deflate", "lzs": "lzs"},
    frozenset({"oui", "deflate", "lzs"}),
    {},
)

# Oakley groups by racoon's names (algorithm.c: MODP only) and numbers (cfparse.y num2dhgroup:
# also the EC2N groups 3 and 4 of RFC 2409 §6.3-6.4): MODP of RFC 2409 §6.1-6.2 (1, 2) and
# RFC 3526 (5, 14-18).
DH_GROUP_NAMES = {
    "modp768": 1,
    "modp1024": 2,
    "modp1536": 5,
    "modp2048": 14,
    "modp3072": 15,
    "modp4096": 16,
    "modp6144": 17,
    "modp8192": 18,
}
DH_GROUPS_RACOON = frozenset({*DH_GROUP_NAMES.values(), 3, 4})
# What the engine computes; ECP 19-21 (RFC 5903) are beyond racoon and taken by number.
DH_GROUPS_SUPPORTED = frozenset(ike_crypto.SUPPORTED_GROUPS)

AUTH_METHODS = frozenset({"pre_shared_key"})
AUTH_METHODS_UNSUPPORTED = frozenset(
    {
        "rsasig",
        "dsssig",
        "rsaenc",
        "rsarev",
        "gssapi_krb",
        "hybrid_rsa_server",
        "hybrid_dss_server",
        "hybrid_rsa_client",
        "hybrid_dss_client",
        "xauth_psk_server",
        "xauth_psk_client",
        "xauth_rsa_server",
        "xauth_rsa_client",
    }
)

# Upper-layer protocols accepted in sainfo IDs (IANA protocol numbers).
UL_PROTOCOLS = {
    "any": 0,
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmp6": 58,
    "ipcomp": 108,
}

LOG_LEVELS = ("error", "warning", "notify", "info", "debug", "debug2")

# Identifier types of my_identifier / peers_identifier that pyike can send and check.
IDENTIFIER_TYPES = frozenset({"address", "fqdn", "user_fqdn", "keyid"})
IDENTIFIER_TYPES_UNSUPPORTED = frozenset({"asn1dn", "subnet"})
