"""The setkey files as the forwarding core installs them (forward.state.SadState.replace_setkey):
their SPD and their hand-keyed ESP SAs, applied to an empty state.

The forwarding process runs this at start and at each reload, and `pyike -t` runs it too, so
the two refuse the same files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from esp.sa import EspSA, Lifetime
from spd.commands import ManualSA, SetkeyFile
from spd.db import SPD


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
    inbound: dict[int, tuple[str, int]] = {}  # SPI -> where its inbound SA was added
    for m in left:
        if m.protocol != "esp":
            continue
        sk = file_of[id(m)]
        spi = f"{m.spi:#x}"
        src = str(m.src)
        direction = "out" if src in local else "in"
        if direction == "in":
            # inbound SAs are found by SPI alone (RFC 4301 §4.1 allows it; pyike's SAD does it),
            # so two inbound SAs with one SPI cannot both be kept
            if m.spi in inbound:
                first = inbound[m.spi]
                raise sk.error(m, spi, f"SPI {spi} is already used by the inbound SA added at "
                                       f"{first[0]}:{first[1]} (an SA is outbound only when "
                                       "its source is a gre block's local address)")
            inbound[m.spi] = (sk.filename, m.line)
        try:
            sas.append(EspSA(
                m.spi, src, str(m.dst), m.enc_alg, m.enc_key, m.auth_alg, m.auth_key,
                direction=direction,
                lifetime=Lifetime(m.soft_s, m.hard_s, m.soft_bytes, m.hard_bytes), now=now))
        except ValueError as exc:  # what esp refuses; its messages never hold a key
            raise sk.error(m, spi, str(exc)) from None
    return sas


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address
