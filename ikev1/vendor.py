"""Vendor ID payloads pyike sends and recognises (for logs and feature detection).

Most IKEv1 vendor IDs are the MD5 of a published string (RFC 3947 §3.1 does this for
"RFC 3947"); some are fixed values or carry version/flag bytes after a known prefix.
"""

from __future__ import annotations

import hashlib


def _md5(text: bytes) -> bytes:
    return hashlib.md5(text).digest()


DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")  # RFC 3706 §5.1 (major 1, minor 0)
NATT_RFC3947 = _md5(b"RFC 3947")  # RFC 3947 §3.1
NATT_DRAFTS = {
    "draft-ietf-ipsec-nat-t-ike-00": _md5(b"draft-ietf-ipsec-nat-t-ike-00"),
    "draft-ietf-ipsec-nat-t-ike-01": _md5(b"draft-ietf-ipsec-nat-t-ike-01"),
    "draft-ietf-ipsec-nat-t-ike-02": _md5(b"draft-ietf-ipsec-nat-t-ike-02"),
    "draft-ietf-ipsec-nat-t-ike-02\\n": _md5(b"draft-ietf-ipsec-nat-t-ike-02\n"),
    "draft-ietf-ipsec-nat-t-ike-03": _md5(b"draft-ietf-ipsec-nat-t-ike-03"),
}
FRAGMENTATION = _md5(b"FRAGMENTATION")  # ipsec-tools/Cisco IKE fragmentation (prefix)
XAUTH = _md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt")[:8]
CISCO_UNITY = _md5(b"CISCO-UNITY")[:14] + b"\x01\x00"  # version 1.0 in the last two bytes
KAME_RACOON = _md5(b"KAME/racoon")
STRONGSWAN_PREFIX = bytes.fromhex("882fe56d6fd20dbc2251613b2ebe5beb")
LIBRESWAN_PREFIX = b"OE"  # Openswan/Libreswan IDs are "OE" and an encoded version string

# name -> (value, compare only the value's length as a prefix)
KNOWN: dict[str, tuple[bytes, bool]] = {
    "DPD": (DPD, False),
    "RFC 3947": (NATT_RFC3947, False),
    **{name: (vid, False) for name, vid in NATT_DRAFTS.items()},
    "IKE FRAGMENTATION": (FRAGMENTATION, True),
    "XAUTH": (XAUTH, False),
    "Cisco Unity": (CISCO_UNITY[:14], True),
    "KAME/racoon": (KAME_RACOON, False),
    "strongSwan": (STRONGSWAN_PREFIX, True),
    "Openswan/Libreswan": (LIBRESWAN_PREFIX, True),
}


def vendor_name(data: bytes) -> str | None:
    """The name of a recognised vendor ID, or None."""
    for name, (value, prefix) in KNOWN.items():
        if data == value or (prefix and data.startswith(value)):
            return name
    return None


def is_natt(data: bytes) -> str | None:
    """'rfc' for the RFC 3947 vendor ID, 'draft' for a draft one, else None."""
    if data == NATT_RFC3947:
        return "rfc"
    if data in NATT_DRAFTS.values():
        return "draft"
    return None
