"""racoon.conf keyword tables: units, algorithms and DH groups, with what pyike supports.

Names and aliases follow ipsec-tools' cftoken.l; numbers are the IKE/IPsec DOI values.
"""

from __future__ import annotations

# Time units (racoon.conf(5): sec, min, hour and their plurals).
TIME_UNITS = {
    **dict.fromkeys(("sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("hour", "hours"), 3600),
}

# Byte units. racoon's "TB" is 1024**3, a historical slip kept for compatibility.
BYTE_UNITS = {"B": 1, "byte": 1, "bytes": 1, "KB": 1024, "MB": 1024**2, "TB": 1024**3}

# Oakley groups: RFC 2409 §6.1-6.2 (1, 2), RFC 3526 (5, 14-18). racoon accepts the numbers
# 1-5 and 14-18; 3 and 4 are the EC2N groups of RFC 2409 §6.3-6.4.
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
DH_GROUPS_SUPPORTED = frozenset(DH_GROUP_NAMES.values())
DH_GROUPS_UNSUPPORTED = {3: "ec2n155", 4: "ec2n185", "ec2n155": 3, "ec2n185": 4}

# Phase 1 hash (RFC 2409 App. A; SHA-2 from RFC 4868 §3.1 as racoon spells them).
HASHES = {
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha2_256": "sha256",
    "sha384": "sha384",
    "sha2_384": "sha384",
    "sha512": "sha512",
    "sha2_512": "sha512",
}
HASHES_UNSUPPORTED = frozenset({"tiger"})

# Ciphers for phase 1 and ESP: name -> allowed key lengths (None: no key length allowed).
CIPHERS: dict[str, tuple[int, ...] | None] = {
    "aes": (128, 192, 256),  # RFC 3602 §2.1 / RFC 2409 App. A with Key Length attribute
    "rijndael": (128, 192, 256),
    "3des": None,
}
CIPHER_CANONICAL = {"rijndael": "aes"}
CIPHERS_UNSUPPORTED = frozenset(
    {
        "des",
        "des_iv64",
        "des_iv32",
        "rc5",
        "idea",
        "3idea",
        "cast128",
        "blowfish",
        "twofish",
        "camellia",
        "rc4",
        "null_enc",
        "null",
    }
)

# ESP authentication (RFC 2404 sha1-96, RFC 2403 md5-96, RFC 4868 sha256-128).
ESP_AUTH = {
    "hmac_sha1": "hmac_sha1",
    "hmac_md5": "hmac_md5",
    "hmac_sha256": "hmac_sha256",
    "hmac_sha2_256": "hmac_sha256",
}
ESP_AUTH_UNSUPPORTED = frozenset(
    {"hmac_sha384", "hmac_sha2_384", "hmac_sha512", "hmac_sha2_512", "non_auth", "des_mac", "kpdk"}
)

COMPRESSION = frozenset({"deflate"})
COMPRESSION_UNSUPPORTED = frozenset({"lzs", "oui"})

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
