"""The setkey files as the forwarding core installs them (forward.state.SadState.replace_setkey):
their SPD and their hand-keyed ESP SAs, applied to an empty state.

The forwarding process runs this at start and at each reload, and `pyike -t` runs it too, so
the two refuse the same files.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from esp.sa import EspSA, Lifetime
from spd.commands import Flush, ManualSA, ManualSADelete, ManualSADeleteAll, SetkeyFile
from spd.db import SPD

if TYPE_CHECKING:
    from forward.state import SadState


def setkey_state(setkey_files: list[SetkeyFile], local_addresses: Iterable[str], now: float
                 ) -> tuple[SPD, list[EspSA]]:
    """The SPD and the hand-keyed ESP SAs that `setkey_files` make, applied in order to an
    empty state. Raises SetkeyError, naming FILE:LINE:COLUMN, at the first command refused."""
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
        # setkey(8): "If size is zero or not specified, replay checks don't take place"
        return EspSA(m.spi, src, str(m.dst), m.enc_alg, m.enc_key, m.auth_alg, m.auth_key,
                     direction=direction, replay_window=m.replay or 0,
                     lifetime=Lifetime(m.soft_s, m.hard_s, m.soft_bytes, m.hard_bytes), now=now)
    except ValueError as exc:  # what esp refuses; its messages never hold a key
        raise sk.error(m, spi, str(exc)) from None


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def run_setkey(state: SadState, sk: SetkeyFile, local_addresses: Iterable[str], now: float
               ) -> dict[str, list[tuple[int, str, str, str]]]:
    """Run a setkey file's commands on the live SPD and SAD (`pyike-setkey -f`, `-c`,
    `-F`, `-FP`), as setkey runs them on a kernel's: `flush` and `delete` reach
    negotiated SAs too. All or nothing: the first command refused raises SetkeyError
    (FILE:LINE:COLUMN, never a key) and nothing changes. Returns the SAs "removed" (for
    the IKE process to forget) and "added", each as (SPI, source, destination, direction).
    """
    spd = copy.deepcopy(state.spd)
    spd.apply(sk)
    local = {_canonical(a) for a in local_addresses}
    kept = list(state.sad)
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
    live = list(state.sad)
    kept_ids = {id(sa) for sa in kept}
    removed = [sa for sa in live if id(sa) not in kept_ids]
    live_ids = {id(sa) for sa in live}
    state.spd = spd  # first: an SA that goes takes its generated policies out of this SPD
    for sa in removed:
        state.discard(sa)
    added = [sa for sa in kept if id(sa) not in live_ids]
    for sa in added:
        state.add(sa)
    state.generation += 1
    return {"removed": [(sa.spi, sa.src, sa.dst, sa.direction) for sa in removed],
            "added": [(sa.spi, sa.src, sa.dst, sa.direction) for sa in added]}
