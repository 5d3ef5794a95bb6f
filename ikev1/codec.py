"""ISAKMP message codec (RFC 2408 §3): header, payload chain and the payloads IKEv1 uses.

Decoding is strict: every length is checked against its container and a malformed input raises
`CodecError` (the engine turns it into a counter). Encoding takes the same dataclasses back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from .constants import GENERIC_HEADER_LEN, HEADER_LEN, ISAKMP_VERSION, Payload

AttrValue = int | bytes
Attributes = tuple[tuple[int, AttrValue], ...]

_HEADER = struct.Struct("!8s8sBBBBII")  # RFC 2408 §3.1
_GENERIC = struct.Struct("!BBH")  # RFC 2408 §3.2
_AF_BIT = 0x8000  # RFC 2408 §3.3: attribute format TV when set
_CRITICAL = 0x80  # RFC 4306 §3.2 critical bit, honoured for unknown payload types
MAX_ATTRIBUTE_INT_BYTES = 8


class CodecError(ValueError):
    """A datagram that does not parse; `reason` names the first violation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise CodecError(reason)


# --- header -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    icookie: bytes
    rcookie: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int = 0
    version: int = ISAKMP_VERSION

    def encode(self, body_len: int) -> bytes:
        return _HEADER.pack(self.icookie, self.rcookie, self.next_payload, self.version,
                            self.exchange, self.flags, self.message_id, HEADER_LEN + body_len)


def decode_header(data: bytes) -> Header:
    _need(len(data) >= HEADER_LEN, "short header")
    ic, rc, nxt, ver, exch, flags, mid, length = _HEADER.unpack_from(data)
    _need(ver >> 4 == 1, "major version")  # RFC 2408 §5.2: reject other majors
    _need(HEADER_LEN <= length <= len(data), "header length")
    _need(ic != bytes(8), "zero initiator cookie")
    return Header(ic, rc, nxt, exch, flags, mid, length, ver)


# --- attributes (RFC 2408 §3.3) -----------------------------------------------------------


def decode_attributes(data: bytes) -> Attributes:
    attrs: list[tuple[int, AttrValue]] = []
    pos = 0
    while pos < len(data):
        _need(pos + 4 <= len(data), "attribute header")
        kind, val = struct.unpack_from("!HH", data, pos)
        pos += 4
        if kind & _AF_BIT:
            attrs.append((kind & ~_AF_BIT, val))
        else:
            _need(pos + val <= len(data), "attribute length")
            attrs.append((kind, bytes(data[pos:pos + val])))
            pos += val
    return tuple(attrs)


def encode_attributes(attrs: Attributes) -> bytes:
    out = bytearray()
    for kind, value in attrs:
        if isinstance(value, int) and value < 0x10000:
            out += struct.pack("!HH", kind | _AF_BIT, value)
        else:
            raw = value if isinstance(value, bytes) else value.to_bytes(4, "big")
            out += struct.pack("!HH", kind, len(raw)) + raw
    return bytes(out)


def attribute_int(value: AttrValue) -> int:
    """A basic or variable attribute as a number (life durations arrive as 2, 4 or more bytes)."""
    if isinstance(value, int):
        return value
    _need(0 < len(value) <= MAX_ATTRIBUTE_INT_BYTES, "attribute integer size")
    return int.from_bytes(value, "big")


# --- payloads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    number: int
    transform_id: int
    attributes: Attributes = ()

    def attrs(self) -> dict[int, AttrValue]:
        return dict(self.attributes)


@dataclass(frozen=True)
class Proposal:
    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True)
class SaPayload:
    ptype: ClassVar[int] = Payload.SA
    proposals: tuple[Proposal, ...]
    doi: int = 1
    situation: int = 1
    raw: bytes = field(default=b"", compare=False, repr=False)  # body as received (for HASH)

    def body(self) -> bytes:
        """The payload body as hashed by RFC 2409 §5 (SAi_b): the received bytes if any."""
        return self.raw or self.encode_body()

    def encode_body(self) -> bytes:
        out = bytearray(struct.pack("!II", self.doi, self.situation))
        for i, prop in enumerate(self.proposals):
            tbytes = bytearray()
            for j, tr in enumerate(prop.transforms):
                body = struct.pack("!BBH", tr.number, tr.transform_id, 0)
                body += encode_attributes(tr.attributes)
                nxt = Payload.TRANSFORM if j + 1 < len(prop.transforms) else 0
                tbytes += _GENERIC.pack(nxt, 0, GENERIC_HEADER_LEN + len(body)) + body
            body = struct.pack("!BBBB", prop.number, prop.protocol, len(prop.spi),
                               len(prop.transforms)) + prop.spi + tbytes
            nxt = Payload.PROPOSAL if i + 1 < len(self.proposals) else 0
            out += _GENERIC.pack(nxt, 0, GENERIC_HEADER_LEN + len(body)) + body
        return bytes(out)

    @classmethod
    def decode_body(cls, data: bytes) -> SaPayload:
        _need(len(data) >= 8, "SA payload size")
        doi, situation = struct.unpack_from("!II", data)
        proposals = []
        nxt, pos = Payload.PROPOSAL, 8
        _need(len(data) > 8, "SA without proposal")
        while nxt != 0:
            _need(nxt == Payload.PROPOSAL, "proposal chain")
            nxt, body, pos = _generic(data, pos)
            proposals.append(_decode_proposal(body))
        _need(pos == len(data), "SA trailing bytes")
        return cls(tuple(proposals), doi, situation, bytes(data))


def _decode_proposal(data: bytes) -> Proposal:
    _need(len(data) >= 4, "proposal size")
    number, protocol, spi_size, count = struct.unpack_from("!BBBB", data)
    _need(4 + spi_size <= len(data), "proposal SPI size")
    spi = bytes(data[4:4 + spi_size])
    transforms = []
    nxt, pos = (Payload.TRANSFORM if count else 0), 4 + spi_size
    while nxt != 0:
        _need(nxt == Payload.TRANSFORM, "transform chain")
        nxt, body, pos = _generic(data, pos)
        _need(len(body) >= 4, "transform size")
        attrs = decode_attributes(body[4:])
        transforms.append(Transform(body[0], body[1], attrs))
    _need(pos == len(data), "proposal trailing bytes")
    _need(len(transforms) == count and count > 0, "transform count")
    return Proposal(number, protocol, spi, tuple(transforms))


@dataclass(frozen=True)
class _Opaque:
    """A payload whose body is one opaque field."""

    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, data: bytes):
        return cls(bytes(data))


@dataclass(frozen=True)
class KePayload(_Opaque):
    ptype: ClassVar[int] = Payload.KE


@dataclass(frozen=True)
class HashPayload(_Opaque):
    ptype: ClassVar[int] = Payload.HASH


@dataclass(frozen=True)
class NoncePayload(_Opaque):
    ptype: ClassVar[int] = Payload.NONCE

    @classmethod
    def decode_body(cls, data: bytes) -> NoncePayload:
        _need(8 <= len(data) <= 256, "nonce size")  # RFC 2409 §5: 8..256 bytes
        return cls(bytes(data))


@dataclass(frozen=True)
class VendorIdPayload(_Opaque):
    ptype: ClassVar[int] = Payload.VENDOR_ID


@dataclass(frozen=True)
class NatDPayload:
    """RFC 3947 §3.2; `ptype` 20, or 130 for the drafts."""

    data: bytes
    ptype: int = Payload.NAT_D

    def encode_body(self) -> bytes:
        return self.data


@dataclass(frozen=True)
class IdPayload:
    """RFC 2407 §4.6.2: phase-1 identity or quick-mode client ID."""

    ptype: ClassVar[int] = Payload.ID
    id_type: int
    protocol: int
    port: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("!BBH", self.id_type, self.protocol, self.port) + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> IdPayload:
        _need(len(data) >= 4, "ID size")
        id_type, protocol, port = struct.unpack_from("!BBH", data)
        return cls(id_type, protocol, port, bytes(data[4:]))


@dataclass(frozen=True)
class NatOaPayload:
    """RFC 3947 §5.2 original address; `ptype` 21, or 131 for the drafts."""

    id_type: int
    data: bytes
    ptype: int = Payload.NAT_OA

    def encode_body(self) -> bytes:
        return struct.pack("!B3x", self.id_type) + self.data


@dataclass(frozen=True)
class NotifyPayload:
    """RFC 2408 §3.14."""

    ptype: ClassVar[int] = Payload.NOTIFY
    msg_type: int
    protocol: int = 1
    spi: bytes = b""
    data: bytes = b""
    doi: int = 1

    def encode_body(self) -> bytes:
        return struct.pack("!IBBH", self.doi, self.protocol, len(self.spi),
                           self.msg_type) + self.spi + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> NotifyPayload:
        _need(len(data) >= 8, "notify size")
        doi, protocol, spi_size, msg_type = struct.unpack_from("!IBBH", data)
        _need(8 + spi_size <= len(data), "notify SPI size")
        return cls(msg_type, protocol, bytes(data[8:8 + spi_size]), bytes(data[8 + spi_size:]),
                   doi)


@dataclass(frozen=True)
class DeletePayload:
    """RFC 2408 §3.15."""

    ptype: ClassVar[int] = Payload.DELETE
    protocol: int
    spis: tuple[bytes, ...]
    doi: int = 1

    def encode_body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return struct.pack("!IBBH", self.doi, self.protocol, size, len(self.spis)) + b"".join(
            self.spis)

    @classmethod
    def decode_body(cls, data: bytes) -> DeletePayload:
        _need(len(data) >= 8, "delete size")
        doi, protocol, size, count = struct.unpack_from("!IBBH", data)
        _need(size > 0 and count > 0 and len(data) == 8 + size * count, "delete SPI list")
        spis = tuple(bytes(data[8 + i * size:8 + (i + 1) * size]) for i in range(count))
        return cls(protocol, spis, doi)


@dataclass(frozen=True)
class RawPayload:
    """A payload pyike carries but does not interpret (CERT, CR, SIG, SAK, unknown)."""

    ptype: int
    data: bytes = field(default=b"")

    def encode_body(self) -> bytes:
        return self.data


FRAGMENT_LAST = 0x01  # racoon's ISAKMP_FRAG_LAST: the fragment that ends the message
_FRAGMENT = struct.Struct("!HBB")  # fragment ID, fragment number, flags


@dataclass(frozen=True)
class FragmentPayload:
    """One piece of a message sent in fragments (payload 132, ipsec-tools' and Cisco's IKEv1
    fragmentation): after the generic header, a 16-bit fragment ID naming the message, the
    fragment's number counted from 1, a flags byte whose LAST bit ends the message, then the
    piece of the message itself, which is never empty."""

    ptype: ClassVar[int] = Payload.FRAGMENT
    frag_id: int
    number: int
    last: bool
    data: bytes

    def encode_body(self) -> bytes:
        flags = FRAGMENT_LAST if self.last else 0
        return _FRAGMENT.pack(self.frag_id, self.number, flags) + self.data

    @classmethod
    def decode_body(cls, data: bytes) -> FragmentPayload:
        _need(len(data) > _FRAGMENT.size, "fragment size")  # racoon: at least one byte of data
        frag_id, number, flags = _FRAGMENT.unpack_from(data)
        _need(number >= 1, "fragment number")
        return cls(frag_id, number, bool(flags & FRAGMENT_LAST), bytes(data[_FRAGMENT.size:]))


AnyPayload = (SaPayload | KePayload | IdPayload | HashPayload | NoncePayload | NotifyPayload
              | DeletePayload | VendorIdPayload | NatDPayload | NatOaPayload | FragmentPayload
              | RawPayload)


def _decode_one(ptype: int, body: bytes) -> AnyPayload:
    simple = {Payload.SA: SaPayload, Payload.KE: KePayload, Payload.ID: IdPayload,
              Payload.HASH: HashPayload, Payload.NONCE: NoncePayload,
              Payload.NOTIFY: NotifyPayload, Payload.DELETE: DeletePayload,
              Payload.VENDOR_ID: VendorIdPayload, Payload.FRAGMENT: FragmentPayload}
    if ptype in simple:
        return simple[ptype].decode_body(body)
    if ptype in (Payload.NAT_D, Payload.NAT_D_DRAFT):
        return NatDPayload(bytes(body), ptype)
    if ptype in (Payload.NAT_OA, Payload.NAT_OA_DRAFT):
        _need(len(body) >= 4, "NAT-OA size")
        return NatOaPayload(body[0], bytes(body[4:]), ptype)
    return RawPayload(ptype, bytes(body))


def _generic(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One generic payload header at pos: (next type, body, position after)."""
    _need(pos + GENERIC_HEADER_LEN <= len(data), "payload header")
    nxt, _reserved, length = _GENERIC.unpack_from(data, pos)
    _need(length >= GENERIC_HEADER_LEN and pos + length <= len(data), "payload length")
    return nxt, data[pos + GENERIC_HEADER_LEN:pos + length], pos + length


def decode_payloads(first: int, data: bytes, *, padded: bool = False) -> list[AnyPayload]:
    """The payload chain starting with type `first`; `padded` allows trailing cipher padding."""
    payloads: list[AnyPayload] = []
    nxt, pos = first, 0
    while nxt != Payload.NONE:
        _need(nxt not in (Payload.PROPOSAL, Payload.TRANSFORM), "bare proposal/transform")
        this = nxt
        _need(pos + GENERIC_HEADER_LEN <= len(data), "payload header")
        critical = data[pos + 1] & _CRITICAL
        nxt, body, pos = _generic(data, pos)
        known = this in Payload._value2member_map_
        _need(known or not critical, "unknown critical payload")
        payloads.append(_decode_one(this, body))
        _need(len(payloads) <= 64, "too many payloads")
    _need(padded or pos == len(data), "trailing bytes after payloads")
    return payloads


def encode_payloads(payloads: list[AnyPayload]) -> tuple[int, bytes]:
    """(type of the first payload, chained payload bytes)."""
    out = bytearray()
    for i, pl in enumerate(payloads):
        body = pl.encode_body()
        nxt = payloads[i + 1].ptype if i + 1 < len(payloads) else 0
        out += _GENERIC.pack(nxt, 0, GENERIC_HEADER_LEN + len(body)) + body
    return (payloads[0].ptype if payloads else 0), bytes(out)


def chain_after_first(data: bytes, count: int) -> bytes:
    """The bytes of payloads 2..count of a decoded chain: what HASH(1)/(2) cover (RFC 2409 §5.5)."""
    pos = 0
    for _ in range(count):
        pos += int.from_bytes(data[pos + 2:pos + 4], "big")
    return data[int.from_bytes(data[2:4], "big"):pos]


@dataclass(frozen=True)
class Message:
    header: Header
    payloads: tuple[AnyPayload, ...]

    def first(self, cls: type, ptype: int | None = None):
        for pl in self.payloads:
            if isinstance(pl, cls) and (ptype is None or pl.ptype == ptype):
                return pl
        return None

    def all(self, cls: type) -> list:
        return [pl for pl in self.payloads if isinstance(pl, cls)]


def decode_message(data: bytes) -> Message:
    """A cleartext message (RFC 2408 §3); encrypted bodies go through decode_payloads."""
    hdr = decode_header(data)
    return Message(hdr, tuple(decode_payloads(hdr.next_payload, data[HEADER_LEN:hdr.length])))


def encode_message(header: Header, payloads: list[AnyPayload]) -> bytes:
    first, body = encode_payloads(payloads)
    hdr = Header(header.icookie, header.rcookie, first, header.exchange, header.flags,
                 header.message_id, 0, header.version)
    return hdr.encode(len(body)) + body
