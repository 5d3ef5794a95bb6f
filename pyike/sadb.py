"""The forwarding process's databases: the SPD (spd/), the SAD (esp/), and the GRE codec (gre/),
behind the few calls the packet loop makes.

Negotiated SAs survive a setkey reload; manual SAs (`add` lines) are replaced by the new file's.
"""

from __future__ import annotations

import copy
import ipaddress
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

import gre
from esp import dump as esp_dump
from esp.sa import EspSA, Lifetime
from esp.sad import SAD
from spd import dump as spd_dump
from spd.commands import Flush, ManualSA, ManualSADelete, ManualSADeleteAll, SetkeyFile
from spd.db import SPD

if TYPE_CHECKING:
    from pyike.dataplane import SaSpec

SOFT_FRACTION = 0.8  # racoon/the kernel: the soft lifetime is 80% of the hard one


def _lifetime(seconds: int, nbytes: int) -> Lifetime | None:
    if not seconds and not nbytes:
        return None
    return Lifetime(int(seconds * SOFT_FRACTION) if seconds else 0, seconds or 0,
                    int(nbytes * SOFT_FRACTION) if nbytes else 0, nbytes or 0)


def setkey_state(setkey_files: list[SetkeyFile], local_addresses: Iterable[str], now: float
                 ) -> tuple[SPD, list[EspSA]]:
    """The SPD and the hand-keyed ESP SAs that `setkey_files` make, applied in order to an
    empty state. The forwarding process installs exactly this at start and at each reload, and
    `pyike -t` runs it too, so the two refuse the same files. Raises SetkeyError, naming
    FILE:LINE:COLUMN, at the first command refused."""
    return spd_of(setkey_files), manual_sas_of(setkey_files, local_addresses, now)


def spd_of(setkey_files: list[SetkeyFile]) -> SPD:
    """The SPD the files' policy commands make; raises SetkeyError at the first refused."""
    spd = SPD()
    for sk in setkey_files:
        spd.apply(sk)
    return spd


def manual_sas_of(setkey_files: list[SetkeyFile], local_addresses: Iterable[str], now: float
                  ) -> list[EspSA]:
    """EspSAs for the hand-keyed ESP SAs the setkey files leave behind (their `add` lines
    minus `delete`/`deleteall`/`flush`, file after file as setkey would run them). An SA whose
    source is one of our addresses is outbound, others inbound. Raises SetkeyError at the
    command that makes an SA the SAD refuses or cannot hold next to the others.
    """
    left: list[ManualSA] = []
    file_of: dict[int, SetkeyFile] = {}  # id(ManualSA) -> the file that added it
    for sk in setkey_files:
        left = sk.manual_sas(left)
        for m in left:
            file_of.setdefault(id(m), sk)
    local = {_canonical(a) for a in local_addresses}
    sas = []
    inbound: dict[int, str] = {}  # SPI -> where its inbound SA was added
    for m in left:
        if m.protocol != "esp":
            continue
        sk = file_of[id(m)]
        sa = _esp_sa(sk, m, local, now, inbound)
        if sa.direction == "in":
            inbound[sa.spi] = f"{sk.filename}:{m.line}"
        sas.append(sa)
    return sas


def _esp_sa(sk: SetkeyFile, m: ManualSA, local: set[str], now: float,
            inbound: dict[int, str]) -> EspSA:
    """The EspSA of an `add` line; `inbound` maps the inbound SPIs already taken to where."""
    spi = f"{m.spi:#x}"
    src = str(m.src)
    direction = "out" if src in local else "in"
    # inbound SAs are found by SPI alone (RFC 4301 §4.1 allows it; pyike's SAD does it), so two
    # inbound SAs with one SPI cannot both be kept
    if direction == "in" and m.spi in inbound:
        raise sk.error(m, spi, f"SPI {spi} is already used by the inbound SA added at "
                               f"{inbound[m.spi]} (an SA is outbound only when its source is a "
                               "gre block's local address)")
    try:
        return EspSA(m.spi, src, str(m.dst), m.enc_alg, m.enc_key, m.auth_alg, m.auth_key,
                     direction=direction,
                     lifetime=Lifetime(m.soft_s, m.hard_s, m.soft_bytes, m.hard_bytes), now=now)
    except ValueError as exc:  # what esp refuses; its messages never hold a key
        raise sk.error(m, spi, str(exc)) from None


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


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
        """The files' SPD alone, the hand-keyed SAs removed. All or nothing: a file the SPD
        refuses leaves the old SPD and SAs in place."""
        self.replace_setkey(spd_of(setkey_files), [])

    def replace_setkey(self, spd: SPD, manual: list[EspSA]) -> None:
        """Install what `setkey_state()` made: its SPD, and its hand-keyed SAs in place of the
        old ones; negotiated SAs stay."""
        self.spd = spd
        for sa in self.manual:
            self.sad.remove(sa)
        self.manual.clear()
        self.generation += 1
        for sa in manual:
            self.add(sa)

    def run_setkey(self, sk: SetkeyFile, local_addresses: Iterable[str], now: float
                   ) -> dict[str, list[tuple[int, str, str, str]]]:
        """Run a setkey file's commands on the live SPD and SAD (`pyike-setkey -f`, `-c`,
        `-F`, `-FP`), as setkey runs them on a kernel's: `flush` and `delete` reach
        negotiated SAs too. All or nothing: the first command refused raises SetkeyError
        (FILE:LINE:COLUMN, never a key) and nothing changes. Returns the SAs "removed" (for
        the IKE process to forget) and "added", each as (SPI, source, destination, direction).
        """
        spd = copy.deepcopy(self.spd)
        spd.apply(sk)
        local = {_canonical(a) for a in local_addresses}
        kept = list(self.sad)
        for cmd in sk.commands:
            if isinstance(cmd, Flush):
                if cmd.protocol in (None, "esp"):
                    kept = []
            elif isinstance(cmd, ManualSA):
                if cmd.protocol != "esp":
                    raise sk.error(cmd, cmd.protocol, "pyike keeps ESP SAs only")
                if any(sa.spi == cmd.spi and sa.dst == _canonical(str(cmd.dst)) for sa in kept):
                    raise sk.error(cmd, f"{cmd.spi:#x}", "this SA was already added")
                inbound = {sa.spi: "the SAD" for sa in kept if sa.direction == "in"}
                kept.append(_esp_sa(sk, cmd, local, now, inbound))
            elif isinstance(cmd, ManualSADelete):
                match = [sa for sa in kept
                         if sa.spi == cmd.spi and sa.dst == _canonical(str(cmd.dst))]
                if not match:
                    raise sk.error(cmd, f"{cmd.spi:#x}", "no such SA to delete")
                kept = [sa for sa in kept if sa not in match]
            elif isinstance(cmd, ManualSADeleteAll):
                ends = (_canonical(str(cmd.src)), _canonical(str(cmd.dst)))
                kept = [sa for sa in kept if (sa.src, sa.dst) != ends]
        live = list(self.sad)
        kept_ids = {id(sa) for sa in kept}
        removed = [sa for sa in live if id(sa) not in kept_ids]
        live_ids = {id(sa) for sa in live}
        for sa in removed:
            self.sad.remove(sa)
            self.udp_ports.pop(id(sa), None)
            if sa in self.manual:
                self.manual.remove(sa)
        added = [sa for sa in kept if id(sa) not in live_ids]
        for sa in added:
            self.add(sa)
        self.spd = spd
        self.generation += 1
        return {"removed": [(sa.spi, sa.src, sa.dst, sa.direction) for sa in removed],
                "added": [(sa.spi, sa.src, sa.dst, sa.direction) for sa in added]}

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
                self.udp_ports[id(sa)] = struct.pack("!HH", *spec.encap)
            self.add(sa, manual=False)
            sas.append(sa)
        inbound = [sa for sa in sas if sa.direction == "in"]
        outbound = [sa for sa in sas if sa.direction == "out"]
        if len(inbound) == 1 and len(outbound) == 1:
            inbound[0].pair_with(outbound[0])
        return sas

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
        if what == "spd_ports":  # setkey -DPp
            return spd_dump.format_spd(self.spd, wall, with_ports=True)
        if what == "spd_json":
            return spd_dump.spd_json(self.spd)
        raise ValueError(f"unknown query {what!r}")
