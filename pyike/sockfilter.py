"""Kernel socket filters (classic BPF, SO_ATTACH_FILTER) that split the NAT-T port's traffic
between the two processes before either wakes up.

ESP in UDP and IKE share the NAT-T port (RFC 3948 §2.2). Without filters every ESP-in-UDP
datagram reaches both processes: the IKE process's UDP socket and the forwarding process's raw
UDP socket each get a copy, and each would throw its half away in Python. With them:
- the IKE process's NAT-T socket keeps only what is not ESP (the non-ESP marker, or shorter
  than an ESP header: the NAT keepalive of §2.3), so a tunnel's traffic never wakes it;
- the forwarding process's raw UDP socket keeps only ESP to the NAT-T port, so IKE on port 500
  and any other UDP the host receives never reach it.
Both decisions are the ones esp.udp.is_esp makes, which the processes still make after the
filter: the filter only saves the wake-ups, it is not what keeps anything out.

A filter runs on the packet as the socket type sees it: a UDP socket's from the UDP header
on, a raw IPv4 socket's from the IP header on.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

from esp.algorithms import ESP_HEADER
from esp.udp import UDP_HEADER

log = logging.getLogger("pyike")

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux asm-generic/socket.h

# Classic BPF opcodes (linux/filter.h, bpf_common.h): class | size | mode, or class | op | src.
_LD_W_ABS = 0x20  # A = 32-bit word at offset k
_LD_H_IND = 0x48  # A = 16-bit half-word at offset X + k
_LD_W_IND = 0x40  # A = 32-bit word at offset X + k
_LD_W_LEN = 0x80  # A = packet length
_LDX_B_MSH = 0xB1  # X = 4 * (byte at k & 0xf): the IPv4 header length
_SUB_X = 0x1C  # A -= X
_JEQ_K = 0x15  # A == k ? jt : jf
_JGE_K = 0x35  # A >= k ? jt : jf
_RET_K = 0x06  # accept k bytes; 0 drops
_WHOLE = 0xFFFFFFFF  # return value: keep the whole packet
_ESP_IN_UDP = UDP_HEADER + ESP_HEADER  # the shortest UDP datagram is_esp calls ESP


def _insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)  # struct sock_filter


def ike_program() -> list[bytes]:
    """For the IKE process's NAT-T socket (UDP header at 0): keep what is not ESP."""
    return [
        _insn(_LD_W_LEN),
        _insn(_JGE_K, _ESP_IN_UDP, 0, 2),  # shorter than an ESP header: keep (keepalive)
        _insn(_LD_W_ABS, UDP_HEADER),  # the first four payload bytes
        _insn(_JEQ_K, 0, 0, 1),  # the non-ESP marker: IKE, keep
        _insn(_RET_K, _WHOLE),
        _insn(_RET_K, 0),
    ]


def esp_in_udp_program(natt_port: int) -> list[bytes]:
    """For the forwarding process's raw IPv4 UDP socket (IP header at 0): keep ESP to the
    NAT-T port only."""
    return [
        _insn(_LDX_B_MSH, 0),  # X = IPv4 header length
        _insn(_LD_H_IND, 2),  # the UDP destination port
        _insn(_JEQ_K, natt_port, 0, 6),
        _insn(_LD_W_LEN),
        _insn(_SUB_X),  # the UDP datagram's length
        _insn(_JGE_K, _ESP_IN_UDP, 0, 3),
        _insn(_LD_W_IND, UDP_HEADER),  # the first four payload bytes
        _insn(_JEQ_K, 0, 1, 0),  # the non-ESP marker: IKE, not ours
        _insn(_RET_K, _WHOLE),
        _insn(_RET_K, 0),
    ]


def attach(sock: socket.socket, program: list[bytes], what: str) -> bool:
    """Attach `program` to `sock`; False (logged once: everything still works, each datagram
    just wakes both processes) where the kernel refuses it."""
    code = ctypes.create_string_buffer(b"".join(program))
    fprog = struct.pack("HP", len(program), ctypes.addressof(code))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("no socket filter on the %s (%s): every ESP-in-UDP datagram wakes both "
                    "processes", what, exc.strerror or exc)
        return False
    return True
