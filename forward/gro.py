"""Receive offload for the TUN devices: consecutive TCP segments of one flow, opened from ESP
one after another, go into the device as one large packet that the kernel splits again or
delivers whole (GSO through the virtio-net header of a TUN device opened with IFF_VNET_HDR, as
wireguard-go does). One write and one pass through the kernel's forwarding and TCP receive
paths then carry many segments, and the receiver acknowledges the large packet once.

Sans-I/O: `coalesce()` takes what the forwarding core queued for the devices, in order, and
returns what to write, each packet with its virtio-net header. Only segments that Linux's own
GRO would merge are merged (tcp_gro_receive(): same addresses, ports, ACK number, window,
options and IP fields; contiguous sequence numbers; only ACK, with PSH ending a run; equal
sizes but for a shorter last one; each segment's checksum verified first, since the kernel
trusts the merged packet's); everything else goes as it came, in the same order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

# include/uapi/linux/virtio_net.h: struct virtio_net_hdr, in the host's byte order (a TUN
# device's default, TUNSETVNETLE/BE unset)
VNET_HEADER = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, offset
VNET_HEADER_LEN = VNET_HEADER.size  # 10
NO_OFFLOAD = bytes(VNET_HEADER_LEN)  # a whole packet, its checksums complete
TUN_READ_SIZE = VNET_HEADER_LEN + 65535  # one read of such a device: header, then packet
_NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM: the kernel completes the L4 checksum
_GSO_TCPV4, _GSO_TCPV6 = 1, 4  # VIRTIO_NET_HDR_GSO_TCPV4 / _TCPV6
_TCP_CHECKSUM_AT = 16  # RFC 9293 §3.1: the checksum's offset in the TCP header
_ACK, _PSH = 0x10, 0x08  # RFC 9293 §3.1 control bits
_MAX_IP_PACKET = 65535  # an IPv4 total length; an IPv6 payload length likewise


def coalesce(queued: Iterable[tuple[T, bytes]]) -> list[tuple[T, bytes, bytes]]:
    """(destination, virtio-net header, packet) for each write, from (destination, IP packet)
    in the order queued. A run of mergeable TCP segments to one destination becomes one GSO
    packet; a run of one goes unchanged with NO_OFFLOAD."""
    writes: list[tuple[T, bytes, bytes]] = []
    run: _Run | None = None
    for dest, pkt in queued:
        seg = _segment(pkt)
        if run is not None:
            if seg is not None and run.dest is dest and run.takes(seg):
                run.add(seg)
                continue
            writes.append(run.write())
            run = None
        if seg is None:
            writes.append((dest, NO_OFFLOAD, pkt))
        else:
            run = _Run(dest, seg)
    if run is not None:
        writes.append(run.write())
    return writes


class _Segment:
    """A TCP segment that may be merged: where its parts are, and what must match."""

    __slots__ = ("pkt", "v6", "l4", "hlen", "seq", "size", "psh", "key")

    def __init__(self, pkt: bytes, v6: bool, l4: int, hlen: int, seq: int, size: int,
                 psh: bool, key: bytes) -> None:
        self.pkt, self.v6, self.l4, self.hlen = pkt, v6, l4, hlen
        self.seq, self.size, self.psh, self.key = seq, size, psh, key


def _segment(pkt: bytes) -> _Segment | None:
    """The packet as a mergeable TCP segment, or None (not TCP, options in the IP header, a
    fragment, a control bit other than ACK and PSH, no payload, lengths that do not add up)."""
    n = len(pkt)
    if n < 40:
        return None
    first = pkt[0]
    if first == 0x45:  # IPv4 without options (RFC 791 §3.1)
        # protocol TCP; neither MF nor a fragment offset; the total length is the packet's
        if pkt[9] != 6 or pkt[6] & 0x3F or pkt[7] or int.from_bytes(pkt[2:4], "big") != n:
            return None
        l4, v6 = 20, False
        ip_key = pkt[1:2] + pkt[6:7] + pkt[8:9] + pkt[12:20]  # TOS, DF, TTL, addresses
    elif first >> 4 == 6:  # IPv6 with TCP next (RFC 8200 §3), no extension header
        if n < 60 or pkt[6] != 6 or int.from_bytes(pkt[4:6], "big") != n - 40:
            return None
        l4, v6 = 40, True
        ip_key = pkt[0:4] + pkt[7:8] + pkt[8:40]  # class, flow label, hop limit, addresses
    else:
        return None
    flags = pkt[l4 + 13]
    thl = (pkt[l4 + 12] >> 4) * 4
    hlen = l4 + thl
    size = n - hlen
    if flags & ~(_ACK | _PSH) or not flags & _ACK or thl < 20 or size <= 0:
        return None
    # ports, ACK number, data offset, window, urgent pointer and options must match
    key = (ip_key + pkt[l4:l4 + 4] + pkt[l4 + 8:l4 + 13] + pkt[l4 + 14:l4 + 16]
           + pkt[l4 + 18:hlen])
    return _Segment(pkt, v6, l4, hlen, int.from_bytes(pkt[l4 + 4:l4 + 8], "big"), size,
                    bool(flags & _PSH), key)


class _Run:
    """Segments merged so far for one destination."""

    __slots__ = ("dest", "first", "segments", "next_seq", "total", "closed")

    def __init__(self, dest, seg: _Segment) -> None:
        self.dest = dest
        self.first = seg
        self.segments = [seg]
        self.next_seq = (seg.seq + seg.size) & 0xFFFFFFFF
        self.total = len(seg.pkt)
        self.closed = seg.psh  # a PSH ends a run (tcp_gro_receive flushes after it)

    def takes(self, seg: _Segment) -> bool:
        first = self.first
        if (self.closed or seg.key != first.key or seg.seq != self.next_seq
                or seg.size > first.size or self.total + seg.size > _MAX_IP_PACKET):
            return False
        # The kernel completes the merged packet's checksum and trusts it, so each segment's
        # own checksum is verified first, as Linux's GRO does: one that fails goes alone, for
        # the receiver to drop. The first one is checked only once a second one joins it.
        if len(self.segments) == 1 and not _checksum_ok(first):
            self.closed = True
            return False
        return _checksum_ok(seg)

    def add(self, seg: _Segment) -> None:
        self.segments.append(seg)
        self.next_seq = (seg.seq + seg.size) & 0xFFFFFFFF
        self.total += seg.size
        # a PSH, or a segment shorter than the first, is the run's last
        self.closed = seg.psh or seg.size < self.first.size

    def write(self) -> tuple[object, bytes, bytes]:
        first = self.first
        if len(self.segments) == 1:
            return self.dest, NO_OFFLOAD, first.pkt
        pkt, l4, hlen = first.pkt, first.l4, first.hlen
        header = bytearray(pkt[:hlen])
        total = self.total
        if self.segments[-1].psh:
            header[l4 + 13] |= _PSH
        if first.v6:
            header[4:6] = (total - 40).to_bytes(2, "big")
            pseudo = _sum16(header[8:40]) + 6 + total - 40  # RFC 8200 §8.1
            gso = _GSO_TCPV6
        else:
            header[2:4] = total.to_bytes(2, "big")
            header[10:12] = b"\0\0"  # RFC 791 §3.1: the header checksum, over the header
            header[10:12] = (~_fold(_sum16(header[:20])) & 0xFFFF).to_bytes(2, "big")
            pseudo = _sum16(header[12:20]) + 6 + total - 20  # RFC 9293 §3.1
            gso = _GSO_TCPV4
        # NEEDS_CSUM: the TCP checksum holds the pseudo-header's sum, not complemented; the
        # kernel adds the rest (as for any CHECKSUM_PARTIAL packet)
        at = l4 + _TCP_CHECKSUM_AT
        header[at:at + 2] = _fold(pseudo).to_bytes(2, "big")
        vnet = VNET_HEADER.pack(_NEEDS_CSUM, gso, hlen, first.size, l4, _TCP_CHECKSUM_AT)
        body = [bytes(header)]
        body.extend(s.pkt[s.hlen:] for s in self.segments)
        return self.dest, vnet, b"".join(body)


def _checksum_ok(seg: _Segment) -> bool:
    """Whether the TCP checksum verifies (RFC 9293 §3.1, the pseudo-header of RFC 791 or RFC
    8200 §8.1). 2^16 is 1 modulo 0xFFFF, so a number's remainder modulo 0xFFFF is that of the
    sum of its 16-bit words: the one's complement sum, in one C call over the segment. The sum
    with the checksum in it is all ones, 0 modulo 0xFFFF."""
    pkt, l4 = seg.pkt, seg.l4
    length = len(pkt) - l4
    words = int.from_bytes(memoryview(pkt)[l4:], "big")
    if length & 1:  # RFC 9293 §3.1: an odd last byte is padded with a zero on the right
        words <<= 8
    addresses = pkt[8:40] if seg.v6 else pkt[12:20]
    return (words + int.from_bytes(addresses, "big") + 6 + length) % 0xFFFF == 0


def _sum16(data: bytes | bytearray) -> int:
    """The sum of the 16-bit big-endian words of `data` (even length), unfolded."""
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total
