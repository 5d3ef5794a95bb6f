"""ESP in UDP (RFC 3948): the UDP header in front of an ESP packet, and ESP told from IKE on
the port the two share.

Both run per packet on the NAT-T path; neither allocates more than the datagram itself.
"""

from __future__ import annotations

import struct

from esp.algorithms import ESP_HEADER

NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2: what starts IKE on the shared port
UDP_HEADER = 8  # RFC 768: ports, length, checksum


def ports(source: int, destination: int) -> bytes:
    """The first four bytes of the UDP header: built once per SA, at install."""
    return struct.pack("!HH", source, destination)


def encapsulate(ports: bytes, esp_packet: bytes) -> bytes:
    """The UDP datagram (header included) carrying `esp_packet`, `ports` from ports().

    RFC 3948 §2.1: the checksum is sent as zero over IPv4, and receivers ignore it.
    """
    return ports + (UDP_HEADER + len(esp_packet)).to_bytes(2, "big") + b"\x00\x00" + esp_packet


def is_esp(datagram: bytes | memoryview, at: int = 0) -> bool:
    """Whether the UDP payload starting at `at` of `datagram` is ESP (RFC 3948 §2.2): IKE
    starts with the non-ESP marker (a zero SPI), and what is shorter than an ESP header is
    not ESP either (the one-byte NAT keepalive of §2.3 among it)."""
    return len(datagram) - at >= ESP_HEADER and datagram[at:at + 4] != NON_ESP_MARKER
