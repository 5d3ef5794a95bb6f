"""The TUN devices' receive offload (forward.gro) in memory, with scapy as the oracle: what it
merges is what the segments carried, its headers are what the kernel needs to finish and split
the packet, and everything Linux's GRO would not merge goes as it came, in order."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from forward.gro import NO_OFFLOAD, VNET_HEADER, VNET_HEADER_LEN, coalesce

MSS = 1000
TUN, OTHER = object(), object()


def segments(count: int, *, v6: bool = False, size: int = MSS, seq: int = 7000, flags: str = "A",
             sport: int = 40000, last: int | None = None, options=None) -> list[bytes]:
    """`count` contiguous segments of one flow, each with its own data, checksums by scapy."""
    out = []
    for i in range(count):
        n = last if last is not None and i == count - 1 else size
        ip = (IPv6(src="fd00:1::5", dst="fd00:2::7", hlim=63) if v6
              else IP(src="10.0.1.5", dst="10.0.2.7", flags="DF", ttl=63, id=100 + i))
        tcp = TCP(sport=sport, dport=5201, seq=(seq + i * size) & 0xFFFFFFFF, ack=99,
                  flags=flags, window=500, options=options or [])
        out.append(bytes(ip / tcp / Raw(bytes([i % 251]) * n)))
    return out


def queued(packets: list[bytes], dest=TUN) -> list[tuple[object, bytes]]:
    return [(dest, p) for p in packets]


def finished(header: bytes, pkt: bytes) -> bytes:
    """What the kernel makes of a NEEDS_CSUM packet: the one's complement of the sum from
    csum_start on, with the pseudo-header sum that is in the field, stored at csum_offset."""
    flags, _gso, _hlen, _size, start, offset = VNET_HEADER.unpack(header)
    assert flags == 1
    data = pkt[start:] + b"\0" * (len(pkt[start:]) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    at = start + offset
    return pkt[:at] + (~total & 0xFFFF).to_bytes(2, "big") + pkt[at + 2:]


@pytest.mark.parametrize("v6", [False, True])
def test_a_run_of_segments_becomes_one_packet_the_kernel_can_finish_and_split(v6):
    segs = segments(5, v6=v6, last=321)
    writes = coalesce(queued(segs))
    assert len(writes) == 1
    dest, header, pkt = writes[0]
    assert dest is TUN and len(header) == VNET_HEADER_LEN
    flags, gso, hlen, size, start, offset = VNET_HEADER.unpack(header)
    ip_len = 40 if v6 else 20
    assert (gso, hlen, size, start, offset) == (4 if v6 else 1, ip_len + 20, MSS, ip_len, 16)
    whole = finished(header, pkt)
    layer = IPv6 if v6 else IP
    parsed = layer(whole)
    # the payloads in order, nothing lost or doubled
    assert bytes(parsed[TCP].payload) == b"".join(bytes(layer(s)[TCP].payload) for s in segs)
    assert parsed[TCP].seq == 7000 and parsed[TCP].ack == 99 and parsed[TCP].flags == "A"
    # scapy recomputes every length and checksum: the same bytes means ours were right
    rebuilt = layer(whole)
    if v6:
        del rebuilt.plen, rebuilt[TCP].chksum
    else:
        del rebuilt.len, rebuilt.chksum, rebuilt[TCP].chksum
    assert bytes(rebuilt) == whole


def test_psh_ends_a_run_and_is_kept():
    segs = segments(3, flags="PA") + segments(2, seq=7000 + 3 * MSS)
    writes = coalesce(queued(segs))
    # each PSH segment closes the run it ends: three alone, then the last two together
    assert [w[2] for w in writes[:3]] == segs[:3]
    assert [w[1] == NO_OFFLOAD for w in writes] == [True, True, True, False]


def test_psh_on_the_last_of_a_run_is_carried_into_the_merged_header():
    segs = segments(3)
    segs[-1] = segments(1, seq=7000 + 2 * MSS, flags="PA")[0]
    (_, header, pkt), = coalesce(queued(segs))
    assert IP(finished(header, pkt))[TCP].flags == "PA"


def test_what_linux_gro_would_not_merge_goes_as_it_came_in_order():
    flow = segments(2)
    other_flow = segments(2, sport=40001, seq=7000 + 2 * MSS)
    gap = segments(1, seq=7000 + 5 * MSS)  # not contiguous with flow
    fin = segments(2, seq=9000, flags="FA")
    syn = segments(1, flags="S")
    empty_ack = [bytes(IP(src="10.0.1.5", dst="10.0.2.7") / TCP(flags="A", seq=1, ack=2))]
    udp = [bytes(IP(src="10.0.1.5", dst="10.0.2.7") / UDP() / Raw(b"u" * MSS))]
    icmp = [bytes(IP(src="10.0.1.5", dst="10.0.2.7") / ICMP())]
    fragment = [bytes(IP(src="10.0.1.5", dst="10.0.2.7", flags="MF", proto=6) / Raw(b"f" * 40))]
    with_ip_options = [bytes(IP(src="10.0.1.5", dst="10.0.2.7", options=[b"\x01" * 4])
                             / TCP(flags="A") / Raw(b"o" * 10))] * 2
    alone = [*fin, *syn, *empty_ack, *udp, *icmp, *fragment, *with_ip_options]
    order = [flow[0], other_flow[0], flow[1], other_flow[1], *gap, *alone]
    writes = coalesce(queued(order))
    assert [pkt for _, _, pkt in writes] == order
    assert all(header == NO_OFFLOAD for _, header, _ in writes)


def test_a_segment_with_a_bad_checksum_is_never_merged():
    segs = [bytearray(s) for s in segments(4)]
    segs[2][-1] ^= 0xFF  # the receiver is to drop this one, as it would without the offload
    writes = coalesce(queued([bytes(s) for s in segs]))
    assert [h != NO_OFFLOAD for _, h, _ in writes] == [True, False, False]
    assert IP(finished(*writes[0][1:]))[TCP].payload.load == bytes(
        IP(segs[0])[TCP].payload) + bytes(IP(segs[1])[TCP].payload)
    assert writes[1][2] == bytes(segs[2]) and writes[2][2] == bytes(segs[3])


def test_a_bad_first_segment_stays_alone():
    segs = [bytearray(s) for s in segments(3)]
    segs[0][-1] ^= 0xFF
    writes = coalesce(queued([bytes(s) for s in segs]))
    assert writes[0] == (TUN, NO_OFFLOAD, bytes(segs[0]))
    assert len(writes) == 2 and writes[1][1] != NO_OFFLOAD


def _follower(seq: int, *, ttl: int = 63, ack: int = 99, window: int = 500) -> bytes:
    return bytes(IP(src="10.0.1.5", dst="10.0.2.7", flags="DF", ttl=ttl)
                 / TCP(sport=40000, dport=5201, seq=seq, ack=ack, flags="A", window=window)
                 / Raw(b"f" * MSS))


@pytest.mark.parametrize("field", [{"ttl": 9}, {"ack": 100}, {"window": 501}])
def test_fields_that_must_match_split_runs(field):
    base = segments(2)
    follower = _follower(7000 + 2 * MSS, **field)
    writes = coalesce(queued([*base, follower]))
    assert len(writes) == 2 and writes[0][1] != NO_OFFLOAD
    assert writes[1] == (TUN, NO_OFFLOAD, follower)
    assert len(coalesce(queued([*base, _follower(7000 + 2 * MSS)]))) == 1  # the control


def test_different_destinations_and_options_split_runs():
    a = segments(2)
    stamp = segments(2, seq=7000 + 2 * MSS, options=[("Timestamp", (5, 6))])
    writes = coalesce([(TUN, a[0]), (OTHER, a[1]), (TUN, stamp[0]), (TUN, stamp[1])])
    assert [w[0] for w in writes] == [TUN, OTHER, TUN]
    assert writes[2][1] != NO_OFFLOAD  # the two stamped ones merge, with their options


def test_a_shorter_segment_is_a_runs_last_and_runs_stay_within_an_ip_packet():
    short_then_more = segments(2, last=10) + segments(1, seq=7000 + MSS + 10)
    writes = coalesce(queued(short_then_more))
    assert len(writes) == 2 and writes[1][1] == NO_OFFLOAD
    many = segments(80)
    writes = coalesce(queued(many))
    assert all(len(pkt) <= 65535 for _, _, pkt in writes)
    assert sum(len(pkt) - 40 for _, _, pkt in writes) == 80 * MSS
    assert len(writes) == 2


def test_sequence_numbers_wrap():
    segs = segments(3, seq=0xFFFFFFFF - MSS + 1)
    (_, header, pkt), = coalesce(queued(segs))
    assert len(IP(finished(header, pkt))[TCP].payload) == 3 * MSS
