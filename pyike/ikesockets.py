"""The IKE sockets (UDP 500 and 4500) and the ingress queue in front of the engine.

Each socket is read to the READ_LIMIT at the rate a flood arrives, into the IngressQueue, which
hands the engine the most urgent datagrams first, TURN at a time; ESP in UDP on the NAT-T port
(no non-ESP marker, RFC 3948 §2.2) is left to the forwarding process, which has its copy: a
socket filter (pyike.sockfilter) keeps it from waking this process at all.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

from esp.udp import is_esp as esp_in_udp
from ikev1.ingress import READ_LIMIT, TURN, IngressQueue
from pyike import sockfilter
from pyike.live import Live

log = logging.getLogger("pyike")

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def listen_addresses(config) -> list[tuple[str, int]]:
    """(address, port) pairs to bind for IKE. Without `isakmp` lines racoon listens on every
    address, on the NAT-T port too when a remote may use NAT traversal."""
    # one socket per address and port: racoon's `isakmp_natt ADDR;` is ADDR[500] again
    out = list(dict.fromkeys(
        (str(a), int(p)) for a, p in tuple(config.listen_isakmp) + tuple(config.listen_natt)))
    if not out:
        engine = config.engine
        out = [("0.0.0.0", engine.isakmp_port)]
        if any(r.nat_traversal != "off" for r in engine.remotes):
            out.append(("0.0.0.0", engine.natt_port))
    return out


class IkeSockets:
    """`service` is called after each turn of the engine; `engine_failed(exc, where)` when the
    engine raised on a datagram."""

    def __init__(self, live: Live, engine, service: Callable[[], None],
                 engine_failed: Callable[[Exception, str], None]) -> None:
        self.live = live
        self.engine = engine
        self.service = service
        self.engine_failed = engine_failed
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.ingress = IngressQueue(engine.ingress_priority)
        self.resume_due = False  # a turn of the engine is scheduled

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        for addr, port in listen_addresses(self.live.config):
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                sock.bind((addr, port))
                sock.setblocking(False)
                if port == self.live.config.engine.natt_port:
                    sockfilter.attach(sock, sockfilter.ike_program(), "IKE NAT-T socket")
            except OSError:
                sock.close()
                raise
            self.socks[(addr, port)] = sock
            loop.add_reader(sock.fileno(), self.readable, sock, port)
            log.info("listening on %s[%d]", addr, port)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for sock in self.socks.values():
            loop.remove_reader(sock.fileno())
            sock.close()
        self.socks.clear()

    def readable(self, sock: socket.socket, port: int) -> None:
        self._read(sock, port)
        self._work()

    def _read(self, sock: socket.socket, port: int) -> None:
        """What the socket holds, up to READ_LIMIT datagrams, into the ingress queue: read at
        the rate a flood arrives, so a real peer's message never waits behind it in the kernel."""
        counters = self.live.counters
        for _ in range(READ_LIMIT):
            try:
                data, anc, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("IKE socket error: %s", exc)
                break
            local = (sock.getsockname()[0], port)
            for level, kind, cdata in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(cdata) >= 12:
                    local = (socket.inet_ntoa(cdata[8:12]), port)  # ipi_addr: the destination
            if port == self.live.config.engine.natt_port and esp_in_udp(data):
                counters["esp_in_udp_woken"] += 1
                continue  # the forwarding process has its copy
            counters["ike_in"] += 1
            if log.isEnabledFor(logging.DEBUG):  # racoon's debug log shows each datagram
                log.debug("%d bytes message received from %s[%d] to %s[%d]", len(data), peer[0],
                          peer[1], local[0], local[1])
            self.ingress.push(data, local, (peer[0], peer[1]))

    def _work(self) -> None:
        """The engine's turn: up to TURN datagrams, most urgent first; then the sockets again."""
        for _ in range(TURN):
            item = self.ingress.pop()
            if item is None:
                break
            data, local, peer = item
            try:
                self.engine.receive_datagram(data, local, peer, time.monotonic())
            except Exception as exc:  # the engine should never raise; one bad datagram must not
                # stop us, nor a stream of them flood the log
                self.engine_failed(exc, f"on a datagram from {peer[0]}[{peer[1]}]")
        self.service()
        if self.ingress and not self.resume_due:
            self.resume_due = True
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self.resume_due = False
        for (_addr, port), sock in list(self.socks.items()):
            self._read(sock, port)
        self._work()

    def shed(self) -> dict[str, int]:
        """The ingress queue's shed counters, as the drop log names them."""
        return {f"shed_{name}": n for name, n in self.ingress.shed.items()}

    def send(self, data: bytes, local: tuple[str, int], peer: tuple[str, int]) -> None:
        counters = self.live.counters
        sock = self.socks.get((local[0], local[1]))
        try:
            if sock is not None:
                sock.sendto(data, (peer[0], peer[1]))
            else:  # a wildcard socket: choose the source address with IP_PKTINFO
                sock = next((s for (a, p), s in self.socks.items() if p == local[1]), None) \
                    or next(iter(self.socks.values()))
                info = struct.pack("=I4s4s", 0, socket.inet_aton(local[0]),
                                   socket.inet_aton("0.0.0.0"))
                sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)],
                              0, (peer[0], peer[1]))
            counters["ike_out"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%d bytes from %s[%d] to %s[%d]", len(data), local[0], local[1],
                          peer[0], peer[1])
        except OSError as exc:
            counters["ike_send_errors"] += 1
            log.debug("sending to %s[%d] failed: %s", peer[0], peer[1], exc)
