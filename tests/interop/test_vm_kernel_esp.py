"""The harness and the wire format, proved with no pyike code: the guest kernel is given the seed
article's GRE-in-ESP-transport set-up with manual SAs, and scapy (an independent ESP
implementation) plays the other end from the host namespace."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import GRE

from tests.interop import initramfs
from tests.interop.peers import INNER_PEER as INNER_GUEST
from tests.interop.peers import INNER_PYIKE as INNER_HOST
from tests.interop.peers import configure_gre
from tests.interop.vm import PeerVm, boot_vm

IPPROTO_ESP = 50
SPI_TO_GUEST = 0x0A0B0C01
SPI_FROM_GUEST = 0x0A0B0C02
KEYS = {  # four independent random keys per run: AES-128 and HMAC-SHA1 (RFC 3602, RFC 2404)
    SPI_TO_GUEST: (os.urandom(16), os.urandom(20)),
    SPI_FROM_GUEST: (os.urandom(16), os.urandom(20)),
}


@pytest.fixture(scope="module")
def vm() -> Iterator[PeerVm]:
    with boot_vm(initramfs.build(initramfs.KERNEL_ONLY), "kesp") as peer:
        yield peer


def _scapy_sa(spi: int, enc: bytes | None = None, auth: bytes | None = None) -> SecurityAssociation:
    enc_key, auth_key = KEYS[spi]
    return SecurityAssociation(
        ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=enc or enc_key,
        auth_algo="HMAC-SHA1-96", auth_key=auth or auth_key,
    )


def _configure_guest(vm: PeerVm) -> None:
    a, b = vm.host_addr, vm.guest_addr
    configure_gre(vm)
    lines = []
    for spi, (src, dst) in ((SPI_TO_GUEST, (a, b)), (SPI_FROM_GUEST, (b, a))):
        enc_key, auth_key = KEYS[spi]
        lines.append(
            f"ip xfrm state add src {src} dst {dst} proto esp spi {spi:#x} mode transport "
            f"enc 'cbc(aes)' 0x{enc_key.hex()} auth-trunc 'hmac(sha1)' 0x{auth_key.hex()} 96"
        )
    for direction, src, dst in (("out", b, a), ("in", a, b)):
        lines.append(
            f"ip xfrm policy add src {src}/32 dst {dst}/32 proto gre dir {direction} "
            f"tmpl src {src} dst {dst} proto esp mode transport"
        )
    vm.check(" && ".join(lines))


def _echo_request(vm: PeerVm, ident: int, seq: int) -> IP:
    return (
        IP(src=str(vm.host_addr), dst=str(vm.guest_addr), proto=47)
        / GRE(proto=0x0800)
        / IP(src=INNER_HOST, dst=INNER_GUEST)
        / ICMP(type=8, id=ident, seq=seq)
        / (b"pyike-interop-" + bytes(range(32)))
    )


def _send_esp(sock: socket.socket, vm: PeerVm, sealed: IP) -> None:
    sock.sendto(bytes(sealed[ESP]), (str(vm.guest_addr), 0))


def _receive_esp(sock: socket.socket, timeout: float) -> list[IP]:
    """The first ESP packet to arrive within `timeout` seconds, as a one-item list, or []."""
    ready, _, _ = select.select([sock], [], [], timeout)
    return [IP(sock.recv(65535))] if ready else []


def _integrity_failures(vm: PeerVm) -> int:
    out = vm.check("ip -s xfrm state")
    # `ip -s xfrm state` prints "stats:" then "replay-window N replay N failed N".
    return sum(
        int(line.split("failed")[1].split()[0]) for line in out.splitlines() if "failed" in line
    )


def test_guest_kernel_speaks_gre_in_esp_transport(vm: PeerVm) -> None:
    _configure_guest(vm)
    out = vm.check("ip xfrm state")
    assert f"spi {SPI_TO_GUEST:#010x}" in out and "mode transport" in out

    sock = vm.ns.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    try:
        to_guest, from_guest = _scapy_sa(SPI_TO_GUEST), _scapy_sa(SPI_FROM_GUEST)
        for seq in (1, 2, 3):
            _send_esp(sock, vm, to_guest.encrypt(_echo_request(vm, 0x77, seq)))
            replies = _receive_esp(sock, timeout=5.0)
            assert replies, f"no ESP reply to echo {seq}"
            reply = replies[0]
            assert reply[IP].src == str(vm.guest_addr) and reply[IP].proto == IPPROTO_ESP
            assert reply[ESP].spi == SPI_FROM_GUEST and reply[ESP].seq == seq
            opened = from_guest.decrypt(reply)
            assert opened.haslayer(GRE) and opened[GRE].proto == 0x0800
            inner = opened[GRE].payload
            assert (inner.src, inner.dst) == (INNER_GUEST, INNER_HOST)
            assert inner[ICMP].type == 0 and inner[ICMP].id == 0x77 and inner[ICMP].seq == seq
            assert bytes(inner[ICMP].payload).startswith(b"pyike-interop-")

        # A packet sealed with the wrong integrity key must be dropped by the guest and counted.
        before = _integrity_failures(vm)
        forged = _scapy_sa(SPI_TO_GUEST, auth=os.urandom(20))
        forged.seq_num = 10
        _send_esp(sock, vm, forged.encrypt(_echo_request(vm, 0x78, 10)))
        assert _receive_esp(sock, timeout=2.0) == []
        assert _integrity_failures(vm) == before + 1
    finally:
        sock.close()


def test_guest_kernel_sends_esp_for_its_own_gre(vm: PeerVm) -> None:
    """A ping from the guest's GRE inner address leaves the guest as ESP that scapy opens."""
    if not vm.check("ip xfrm state"):
        _configure_guest(vm)
    sock = vm.ns.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    try:
        vm.run(f"ping -c 1 -W 1 {INNER_HOST}", timeout=5)
        replies = _receive_esp(sock, timeout=5.0)
        assert replies, "the guest's ping did not leave as ESP"
        opened = _scapy_sa(SPI_FROM_GUEST).decrypt(replies[0])
        inner = opened[GRE].payload
        assert inner[ICMP].type == 8 and (inner.src, inner.dst) == (INNER_GUEST, INNER_HOST)
    finally:
        sock.close()
