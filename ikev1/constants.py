"""ISAKMP / IKEv1 / IPsec DOI numbers, each group with the RFC section that assigns it."""

from __future__ import annotations

from enum import IntEnum

# RFC 3948 §2.2: IKE on port 4500 starts with it. Defined with the rest of ESP-in-UDP framing.
from esp.udp import NON_ESP_MARKER  # noqa: F401 - the engine's name for it

ISAKMP_VERSION = 0x10  # major 1, minor 0 (RFC 2408 §3.1)
HEADER_LEN = 28  # RFC 2408 §3.1
GENERIC_HEADER_LEN = 4  # RFC 2408 §3.2
DOI_IPSEC = 1  # RFC 2407 §4.2
SIT_IDENTITY_ONLY = 1  # RFC 2407 §4.2.1


class Exchange(IntEnum):
    """RFC 2408 §3.1 exchange types, RFC 2409 §5.5 quick mode."""

    BASE = 1
    MAIN = 2  # identity protection
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    QUICK = 32


class Flag:
    """RFC 2408 §3.1 header flags."""

    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTH_ONLY = 0x04


class Payload(IntEnum):
    """RFC 2408 §3.1 next-payload types; RFC 3947 §3 (20/21); NAT-T drafts (130/131)."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    SAK = 15  # RFC 3547 §5.3 (SA KEK)
    NAT_D = 20
    NAT_OA = 21
    NAT_D_DRAFT = 130
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # ipsec-tools IKE fragmentation


class Proto(IntEnum):
    """RFC 2407 §4.4.1 protocol identifiers."""

    ISAKMP = 1
    AH = 2
    ESP = 3
    IPCOMP = 4


KEY_IKE = 1  # RFC 2407 §4.4.2: the only ISAKMP transform ID


class EspTransform(IntEnum):
    """RFC 2407 §4.4.4, RFC 3602 (AES-CBC = 12)."""

    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES = 12


class P1Attr(IntEnum):
    """RFC 2409 Appendix A phase-1 attribute classes."""

    ENCRYPTION = 1
    HASH = 2
    AUTH_METHOD = 3
    GROUP_DESC = 4
    GROUP_TYPE = 5
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14


class P1Enc(IntEnum):
    """RFC 2409 Appendix A encryption algorithms; AES = 7 (RFC 3602 §5.1)."""

    DES = 1
    TRIPLE_DES = 5
    AES = 7


class P1Hash(IntEnum):
    """RFC 2409 Appendix A hash algorithms; SHA2 from RFC 4868 §... IANA (4/5/6)."""

    MD5 = 1
    SHA1 = 2
    SHA256 = 4
    SHA384 = 5
    SHA512 = 6


AUTH_PSK = 1  # RFC 2409 Appendix A
LIFE_SECONDS = 1  # RFC 2409 Appendix A / RFC 2407 §4.5
LIFE_KILOBYTES = 2


class P2Attr(IntEnum):
    """RFC 2407 §4.5 IPsec SA attributes."""

    LIFE_TYPE = 1
    LIFE_DURATION = 2
    GROUP_DESC = 3
    ENCAPSULATION = 4
    AUTH_ALG = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMP_DICT_SIZE = 8
    COMP_PRIV_ALG = 9


class Encap(IntEnum):
    """RFC 2407 §4.5 encapsulation modes; RFC 3947 §5 (3/4) and draft values."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443
    UDP_TRANSPORT_DRAFT = 61444


class P2Auth(IntEnum):
    """RFC 2407 §4.5 authentication algorithms; RFC 4868 §2.4 for SHA2."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_SHA256 = 5
    HMAC_SHA384 = 6
    HMAC_SHA512 = 7


class IdType(IntEnum):
    """RFC 2407 §4.6.2.1."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class Notify(IntEnum):
    """RFC 2408 §3.14.1 error and status types; RFC 2407 §4.6.3; RFC 3706 §5 (DPD)."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


def notify_name(code: int) -> str:
    """The RFC spelling of a notify type, e.g. NO-PROPOSAL-CHOSEN."""
    try:
        return Notify(code).name.replace("_", "-")
    except ValueError:
        return f"NOTIFY-{code}"
