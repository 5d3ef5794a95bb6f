"""The forwarding core's databases: the SPD (spd/), the SAD (esp/), and per SA what the SAD
does not hold: the UDP ports of ESP in UDP.

Negotiated SAs survive a setkey reload; manual SAs (`add` lines) are replaced by the new file's.
"""

from __future__ import annotations

from collections.abc import Iterable

from esp import dump as esp_dump
from esp import udp
from esp.sa import EspSA, Lifetime
from esp.sad import SAD
from forward.specs import SaSpec
from spd import dump as spd_dump
from spd.db import SPD

SOFT_FRACTION = 0.8  # racoon/the kernel: the soft lifetime is 80% of the hard one


def _lifetime(seconds: int, nbytes: int) -> Lifetime | None:
    if not seconds and not nbytes:
        return None
    return Lifetime(int(seconds * SOFT_FRACTION) if seconds else 0, seconds or 0,
                    int(nbytes * SOFT_FRACTION) if nbytes else 0, nbytes or 0)


class SadState:
    """SPD + SAD, and a generation number that changes with the SAD."""

    def __init__(self) -> None:
        self.spd = SPD()
        self.sad = SAD()
        self.manual: list[EspSA] = []
        self.udp_ports: dict[EspSA, bytes] = {}  # outbound SA -> UDP source+destination port
        self.generation = 0

    def replace_setkey(self, spd: SPD, manual: list[EspSA]) -> None:
        """Install what `pyike.sadb.setkey_state()` made: its SPD, and its hand-keyed SAs in
        place of the old ones; negotiated SAs stay."""
        self.spd = spd
        for sa in self.manual:
            self.sad.remove(sa)
        self.manual.clear()
        self.generation += 1
        for sa in manual:
            self.add(sa)

    def add(self, sa: EspSA, *, manual: bool = True) -> None:
        self.sad.add(sa)
        if manual:
            self.manual.append(sa)
        self.generation += 1

    def install(self, specs: Iterable[SaSpec], now: float) -> list[EspSA]:
        """The SAs of one negotiation (an inbound and an outbound one), paired so that a
        two-length ICV (esp.sa) is settled by the peer's first packet."""
        sas = []
        for spec in specs:
            k = spec.keys
            sa = EspSA(k.spi, k.src, k.dst, k.enc_alg, k.enc_key, k.auth_alg, k.auth_key,
                       direction=spec.direction,
                       lifetime=_lifetime(spec.lifetime_s, spec.lifetime_bytes), now=now)
            if spec.encap is not None and spec.direction == "out":
                self.udp_ports[sa] = udp.ports(*spec.encap)
            self.add(sa, manual=False)
            sas.append(sa)
        inbound = [sa for sa in sas if sa.direction == "in"]
        outbound = [sa for sa in sas if sa.direction == "out"]
        if len(inbound) == 1 and len(outbound) == 1:
            inbound[0].pair_with(outbound[0])
        return sas

    def udp_ports_of(self, sa: EspSA | None) -> bytes | None:
        """The UDP ports of a UDP-encapsulated outbound SA (RFC 3948), None for plain ESP."""
        return None if sa is None else self.udp_ports.get(sa)

    def _forget(self, sa: EspSA) -> None:
        self.udp_ports.pop(sa, None)

    def remove(self, spi: int, direction: str | None = None) -> None:
        for sa in self.sad.remove(spi, direction):
            self._forget(sa)
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
                self._forget(sa)
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
