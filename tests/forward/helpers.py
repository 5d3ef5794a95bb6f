"""Two forwarding cores back to back, and the kernel's part between them done by hand: the IPv4
header a raw socket adds on sending and hands over on receipt."""

from __future__ import annotations

import os
import socket
import struct

from forward.core import IPPROTO_ESP, IPPROTO_UDP, ForwardingCore
from forward.specs import SaSpec, TunnelSpec
from gre import IPPROTO_GRE
from ikev1.events import EspKeys
from pyike.sadb import setkey_state
from spd.parse import parse_setkey

A, B = "198.18.0.1", "198.18.0.2"
KEY_SIZES = {"aes-cbc": 16, "3des-cbc": 24, "hmac-sha1": 20, "hmac-sha256": 32,
             "hmac-sha256-96": 32, "hmac-md5": 16}
REQUIRE = "ipsec esp/transport//require"


def ip4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """An IPv4 header (RFC 791, no options) in front of `payload`, as a raw socket reads it."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header + payload


def core_for(me: str, peer: str, action: str = REQUIRE, in_action: str | None = None,
             *, key: int | None = None, natt_port: int = 4500) -> ForwardingCore:
    """A core with one tunnel me -> peer and the seed's GRE policy pair."""
    core = ForwardingCore([TunnelSpec("tun0", me, peer, "10.1.1.1", "10.1.1.2", 1400, key)],
                          natt_port=natt_port)
    text = (f"spdadd {me}/32[0] {peer}/32[0] gre -P out {action};\n"
            f"spdadd {peer}/32[0] {me}/32[0] gre -P in {in_action or action};\n")
    core.apply_setkey(*setkey_state([parse_setkey(text, "test.conf")], [me], 0.0))
    return core


def sa_pair(enc: str = "aes-cbc", auth: str = "hmac-sha1", *, spi: int = 0x1000,
            src: str = A, dst: str = B) -> tuple[EspKeys, EspKeys]:
    """The keys of src -> dst and dst -> src (SPIs spi and spi + 1)."""
    def keys(spi: int, s: str, d: str) -> EspKeys:
        return EspKeys(spi, s, d, enc, os.urandom(KEY_SIZES[enc]), auth,
                       os.urandom(KEY_SIZES[auth]))
    return keys(spi, src, dst), keys(spi + 1, dst, src)


def install_pair(a: ForwardingCore, b: ForwardingCore, ab: EspKeys, ba: EspKeys, now: float,
                 *, a_selectors: tuple = (), b_selectors: tuple = (),
                 encap: tuple[int, int] | None = None, lifetime_s: int = 0) -> None:
    """What the IKE processes install on each side after one quick mode, inbound first."""
    back = encap[::-1] if encap else None
    a.install((SaSpec(ba, "in", lifetime_s, 0, None, a_selectors, encap),
               SaSpec(ab, "out", lifetime_s, 0, None, a_selectors, encap)), now)
    b.install((SaSpec(ab, "in", lifetime_s, 0, None, b_selectors, back),
               SaSpec(ba, "out", lifetime_s, 0, None, b_selectors, back)), now)


def carry(src_core: ForwardingCore, src: str, dst_core: ForwardingCore, now: float) -> int:
    """Everything `src_core` queued for the wire, into `dst_core` as the kernel delivers it;
    the number of packets carried."""
    n = 0
    for queue, proto in ((src_core.esp_out, IPPROTO_ESP), (src_core.udp_out, IPPROTO_UDP),
                         (src_core.gre_out, IPPROTO_GRE)):
        for data, (dst, port) in queue:
            assert port == 0  # raw sockets: no port
            dst_core.from_wire(ip4(src, dst, proto, data), now)
            n += 1
        queue.clear()
    return n


def delivered(core: ForwardingCore) -> list[bytes]:
    """What the core queued for its TUN devices, emptied."""
    out = [bytes(packet) for _t, packet in core.tun_out]
    core.tun_out.clear()
    return out


def events(core: ForwardingCore) -> list:
    out = []
    while (e := core.next_event()) is not None:
        out.append(e)
    return out
