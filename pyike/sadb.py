"""The forwarding process's databases: the SPD (spd/), the SAD (esp/), and the GRE codec (gre/),
behind the few calls the packet loop makes.

Negotiated SAs survive a setkey reload; manual SAs (`add` lines) are replaced by the new file's.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import gre
from esp import dump as esp_dump
from esp.sa import EspSA, Lifetime
from esp.sad import SAD
from spd import dump as spd_dump
from spd.db import SPD

if TYPE_CHECKING:
    from pyike.dataplane import SaSpec

SOFT_FRACTION = 0.8  # racoon/the kernel: the soft lifetime is 80% of the hard one


def _lifetime(seconds: int, nbytes: int) -> Lifetime | None:
    if not seconds and not nbytes:
        return None
    return Lifetime(int(seconds * SOFT_FRACTION) if seconds else 0, seconds or 0,
                    int(nbytes * SOFT_FRACTION) if nbytes else 0, nbytes or 0)


def manual_sas_of(setkey_files: list, local_addresses: set[str], now: float) -> list[EspSA]:
    """EspSAs for the hand-keyed ESP SAs the setkey files leave behind (`add` lines minus
    `delete`/`flush`). An SA whose source is one of our addresses is outbound, others inbound.
    """
    sas = []
    for sk in setkey_files:
        for m in sk.manual_sas():
            if m.protocol != "esp":
                continue
            src = str(m.src)
            sas.append(EspSA(
                m.spi, src, str(m.dst), m.enc_alg, m.enc_key, m.auth_alg, m.auth_key,
                direction="out" if src in local_addresses else "in",
                lifetime=Lifetime(m.soft_s, m.hard_s, m.soft_bytes, m.hard_bytes), now=now))
    return sas


class SadState:
    """SPD + SAD + the GRE codec, and a generation number that changes with the SAD."""

    def __init__(self) -> None:
        self.spd = SPD()
        self.sad = SAD()
        self.manual: list[EspSA] = []
        self.udp_ports: dict[int, bytes] = {}  # id(outbound SA) -> UDP source+destination port
        self.generation = 0
        self.gre_encap = gre.encap
        self.gre_decap = gre.decap
        self.gre_packet_type = gre.GrePacket

    def load_setkey(self, setkey_files: list, now: float) -> None:
        """All or nothing: a file the SPD refuses leaves the old SPD and SAs in place."""
        spd = SPD()
        for sk in setkey_files:
            spd.apply(sk)
        self.spd = spd
        for sa in self.manual:
            self.sad.remove(sa)
        self.manual.clear()
        self.generation += 1

    def add(self, sa: EspSA, *, manual: bool = True) -> None:
        self.sad.add(sa)
        if manual:
            self.manual.append(sa)
        self.generation += 1

    def install(self, spec: SaSpec, now: float) -> None:
        k = spec.keys
        sa = EspSA(k.spi, k.src, k.dst, k.enc_alg, k.enc_key, k.auth_alg, k.auth_key,
                   direction=spec.direction,
                   lifetime=_lifetime(spec.lifetime_s, spec.lifetime_bytes), now=now)
        if spec.encap is not None and spec.direction == "out":
            self.udp_ports[id(sa)] = struct.pack("!HH", *spec.encap)
        self.add(sa, manual=False)

    def udp_ports_of(self, sa: EspSA | None) -> bytes | None:
        """The UDP ports of a UDP-encapsulated outbound SA (RFC 3948), None for plain ESP."""
        return None if sa is None else self.udp_ports.get(id(sa))

    def remove(self, spi: int, direction: str | None = None) -> None:
        for sa in self.sad.remove(spi, direction):
            self.udp_ports.pop(id(sa), None)
            if sa in self.manual:
                self.manual.remove(sa)
        self.generation += 1

    def flush(self) -> None:
        self.sad.flush()
        self.udp_ports.clear()
        self.manual.clear()
        self.generation += 1

    def lookup_policy(self, direction: str, src: str, dst: str, proto: int, key: int | None):
        return self.spd.lookup(direction, src, dst, proto, 0, 0, key)

    def outbound(self, src: str, dst: str) -> EspSA | None:
        return self.sad.outbound(src, dst)

    def inbound(self, spi: int) -> EspSA | None:
        return self.sad.inbound(spi)

    def expire(self, now: float) -> list[tuple[int, str, str]]:
        """(spi, direction, "soft"|"hard") for SAs past a lifetime; hard ones are removed."""
        out = []
        for sa, kind in self.sad.expire(now):
            out.append((sa.spi, sa.direction, kind))
            if kind == "hard":
                self.sad.remove(sa)
                self.udp_ports.pop(id(sa), None)
                self.generation += 1
        return out

    def dump(self, what: str, wall: float, mono: float):
        if what == "sad":
            return esp_dump.format_sad(self.sad, wall, now=mono)
        if what == "sad_json":
            return esp_dump.sad_json(self.sad, wall, now=mono)
        if what == "spd":
            return spd_dump.format_spd(self.spd, wall)
        if what == "spd_json":
            return spd_dump.spd_json(self.spd)
        raise ValueError(f"unknown query {what!r}")
