"""GRE encapsulation (RFC 2784) with the key and sequence number extensions of RFC 2890.

Header: C|R|K|S|s|Recur(3)|Reserved0(5)|Ver(3) | Protocol Type(16), then, each only when its
bit is set and in this order: Checksum(16)+Reserved1(16), Key(32), Sequence Number(32).

decap() never raises on bad input: it returns a GreError the caller counts and drops.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

IPPROTO_GRE = 47  # IANA protocol number, RFC 2784 §2
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

_FLAG_C = 0x8000  # checksum present
_FLAG_K = 0x2000  # key present (RFC 2890 §2)
_FLAG_S = 0x1000  # sequence number present (RFC 2890 §2)
# RFC 2784 §2.3: bits 1-5 non-zero means RFC 1701 routing/recursion: discard. Bits 2 and 3 are
# K and S since RFC 2890, so what is left is R (bit 1), s (bit 4) and the top Recur bit (bit 5).
_FLAGS_FORBIDDEN = 0x4000 | 0x0800 | 0x0400
_VERSION_MASK = 0x0007  # RFC 2784 §2.3.1: must be 0

# The plain 4-byte header for the two protocols the data plane carries, built once.
_PLAIN = {ETH_P_IP: b"\x00\x00\x08\x00", ETH_P_IPV6: b"\x00\x00\x86\xdd"}


class GreError(enum.Enum):
    TRUNCATED = "truncated"
    BAD_VERSION = "bad-version"
    UNSUPPORTED_FLAGS = "unsupported-flags"  # routing / strict source route / recursion
    BAD_CHECKSUM = "bad-checksum"
    UNKNOWN_PROTOCOL = "unknown-protocol"  # encap: inner packet is neither IPv4 nor IPv6


class GrePacket(NamedTuple):
    protocol: int
    payload: bytes
    key: int | None = None
    seq: int | None = None


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum.

    Summing 16-bit words with end-around carry equals the whole buffer read as one big-endian
    integer taken modulo 0xFFFF (since 2^16 = 1 mod 0xFFFF): one C-level operation.
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and any(data):
        total = 0xFFFF  # a non-zero sum congruent to 0 is 0xFFFF in one's complement
    return ~total & 0xFFFF


def header_length(key: int | None = None, seq: int | None = None,
                  checksum: bool = False) -> int:
    """The bytes encap() puts in front of the inner packet with these options (RFC 2784 §2.1:
    4, plus 4 each for the checksum, RFC 2890's key and its sequence number)."""
    return 4 + 4 * ((key is not None) + (seq is not None) + bool(checksum))


def _protocol_of(inner: bytes) -> int | None:
    if not inner:
        return None
    version = inner[0] >> 4
    if version == 4:
        return ETH_P_IP
    if version == 6:
        return ETH_P_IPV6
    return None


def encap(
    inner: bytes,
    protocol: int | None = None,
    key: int | None = None,
    seq: int | None = None,
    checksum: bool = False,
) -> bytes | GreError:
    """GRE header + `inner`; the protocol type comes from the inner IP version when None."""
    if protocol is None:
        protocol = _protocol_of(inner)
        if protocol is None:
            return GreError.UNKNOWN_PROTOCOL
    if key is None and seq is None and not checksum:
        plain = _PLAIN.get(protocol)
        if plain is not None:
            return plain + inner
    flags = 0
    options = []
    if checksum:
        flags |= _FLAG_C
        options.append(b"\x00\x00\x00\x00")  # checksum and Reserved1, filled in below
    if key is not None:
        flags |= _FLAG_K
        options.append(key.to_bytes(4, "big"))
    if seq is not None:
        flags |= _FLAG_S
        options.append(seq.to_bytes(4, "big"))
    packet = b"".join((flags.to_bytes(2, "big"), protocol.to_bytes(2, "big"), *options, inner))
    if checksum:
        # RFC 2784 §2.5: over the GRE header and payload with the checksum field zero.
        packet = packet[:4] + internet_checksum(packet).to_bytes(2, "big") + packet[6:]
    return packet


def headers_by_version(key: int | None = None) -> tuple[bytes | None, ...]:
    """What encap() puts in front of an inner packet, indexed by the packet's IP version (its
    first byte >> 4); None where the version is neither 4 nor 6. For callers that encapsulate
    many packets with one key: `headers[packet[0] >> 4] + packet` is encap(packet, None, key)."""
    table: list[bytes | None] = [None] * 16
    for version, protocol in ((4, ETH_P_IP), (6, ETH_P_IPV6)):
        table[version] = encap(b"", protocol, key)
    return tuple(table)


def decap(packet: bytes) -> GrePacket | GreError:
    """The protocol type, payload, key and sequence number of a GRE packet, or a GreError."""
    if len(packet) < 4:
        return GreError.TRUNCATED
    flags = (packet[0] << 8) | packet[1]
    protocol = (packet[2] << 8) | packet[3]
    if flags == 0:
        return GrePacket(protocol, packet[4:])
    if flags & _VERSION_MASK:
        return GreError.BAD_VERSION
    if flags & _FLAGS_FORBIDDEN:
        return GreError.UNSUPPORTED_FLAGS
    # Reserved0 bits 6-12 are ignored on receipt (RFC 2784 §2.2).
    has_c, has_k, has_s = flags & _FLAG_C, flags & _FLAG_K, flags & _FLAG_S
    offset = 4 + 4 * (bool(has_c) + bool(has_k) + bool(has_s))
    if len(packet) < offset:
        return GreError.TRUNCATED
    at = 4
    if has_c:
        zeroed = b"".join((packet[:4], b"\x00\x00", packet[6:]))
        if internet_checksum(zeroed) != int.from_bytes(packet[4:6], "big"):
            return GreError.BAD_CHECKSUM
        at += 4
    key = seq = None
    if has_k:
        key = int.from_bytes(packet[at:at + 4], "big")
        at += 4
    if has_s:
        seq = int.from_bytes(packet[at:at + 4], "big")
    return GrePacket(protocol, packet[offset:], key, seq)


__all__ = ["ETH_P_IP", "ETH_P_IPV6", "IPPROTO_GRE", "GreError", "GrePacket", "decap", "encap",
           "header_length", "headers_by_version", "internet_checksum"]
