"""The SAD as `setkey -D` prints it (keys included, as setkey does), and as JSON.

Fields that belong to a kernel's PF_KEY bookkeeping and have no meaning here (reqid, the
message sequence, flags, use-time lifetimes) are printed as zero, the values a racoon-keyed
Linux SA shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from esp.sa import EspSA

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BLANK_TIME = " " * 20  # what setkey prints for a time that never happened

LocalTime = Callable[[float], time.struct_time]


def hex_groups(key: bytes) -> str:
    """Key bytes as setkey prints them: ' xxxxxxxx' per 4 bytes, a line break every 32 bytes."""
    out = []
    for i in range(0, len(key), 4):
        if i and i % 32 == 0:
            out.append("\n")
        out.append(" " + key[i:i + 4].hex())
    return "".join(out)


def _ctime(wall: float | None, localtime: LocalTime) -> str:
    """ctime(3) without the weekday: 'Jan 12 21:43:16 2015'."""
    if wall is None:
        return _BLANK_TIME
    t = localtime(int(wall))
    return (
        f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}"
    )


def _secs(value: float | None) -> int:
    return int(value) if value else 0


class _Clock:
    """Maps the SAs' clock (whatever `now` the data plane passes) onto wall-clock time."""

    def __init__(self, now_wall: float, now: float | None) -> None:
        self.now_wall = now_wall
        self.now = now_wall if now is None else now

    def wall(self, t: float | None) -> float | None:
        return None if t is None else self.now_wall - (self.now - t)


def format_sa(sa: EspSA, clock: _Clock, sadb_seq: int, pid: int, localtime: LocalTime) -> str:
    lt = sa.lifetime
    created = clock.wall(sa.created)
    lines = [
        f"{sa.src} {sa.dst} ",
        f"\tesp mode={sa.mode} spi={sa.spi}(0x{sa.spi:08x}) reqid=0(0x00000000)",
        f"\tE: {sa.enc_alg} {hex_groups(sa.enc_key)}",
        f"\tA: {sa.auth_alg} {hex_groups(sa.auth_key)}",
        f"\tseq=0x00000000 replay={sa.replay.size} flags=0x00000000 "
        f"state={sa.lifetime_state(clock.now)} ",
        f"\tcreated: {_ctime(created, localtime)}\tcurrent: {_ctime(clock.now_wall, localtime)}",
        f"\tdiff: {int(clock.now_wall) - int(created or 0)}(s)"
        f"\thard: {_secs(lt.hard_s)}(s)\tsoft: {_secs(lt.soft_s)}(s)",
        f"\tlast: {_ctime(clock.wall(sa.first_used), localtime)}\thard: 0(s)\tsoft: 0(s)",
        f"\tcurrent: {sa.bytes}(bytes)\thard: {lt.hard_bytes or 0}(bytes)"
        f"\tsoft: {lt.soft_bytes or 0}(bytes)",
        f"\tallocated: {sa.packets}\thard: 0\tsoft: 0",
        f"\tsadb_seq={sadb_seq} pid={pid} refcnt=0",
    ]
    return "\n".join(lines) + "\n"


def format_sad(
    sad: Iterable[EspSA],
    now_wall: float,
    *,
    now: float | None = None,
    pid: int | None = None,
    localtime: LocalTime = time.localtime,
) -> str:
    """The SAD in `setkey -D` layout.

    `now` is the SAs' own clock at `now_wall` (omit it when the data plane passes wall time);
    `localtime` renders the dates, as setkey's ctime(3) does in the local zone.
    """
    clock = _Clock(now_wall, now)
    pid = os.getpid() if pid is None else pid
    sas = list(sad)
    if not sas:
        return "No SAD entries.\n"  # setkey's words for an empty dump
    # Like the Linux PF_KEY dump, the last message carries sequence 0.
    return "".join(
        format_sa(sa, clock, len(sas) - 1 - i, pid, localtime) for i, sa in enumerate(sas)
    )


def sa_json(sa: EspSA, clock: _Clock) -> dict[str, Any]:
    lt = sa.lifetime
    c = sa.counters
    return {
        "src": sa.src,
        "dst": sa.dst,
        "spi": sa.spi,
        "direction": sa.direction,
        "mode": sa.mode,
        "enc": {"alg": sa.enc_alg, "key": sa.enc_key.hex()},
        "auth": {"alg": sa.auth_alg, "key": sa.auth_key.hex(), "icv_bits": 8 * sa.icv_size},
        "replay_window": sa.replay.size,
        "seq": {"sent": sa.seq, "highest_received": sa.replay.top},
        "state": sa.lifetime_state(clock.now),
        "counters": {
            "packets": c.packets,
            "bytes": c.bytes,
            "replay_drops": c.replay_drops,
            "icv_failures": c.icv_failures,
            "malformed": c.malformed,
            "expired_drops": c.expired_drops,
            "dummies": c.dummies,
        },
        "created": clock.wall(sa.created),
        "current": clock.now_wall,
        "first_used": clock.wall(sa.first_used),
        "lifetime": {
            "soft_s": lt.soft_s or 0,
            "hard_s": lt.hard_s or 0,
            "soft_bytes": lt.soft_bytes or 0,
            "hard_bytes": lt.hard_bytes or 0,
        },
    }


def sad_json(sad: Iterable[EspSA], now_wall: float, *, now: float | None = None) -> list[dict]:
    """The SAD as JSON-ready dicts (keys as hex, times as wall-clock epoch seconds)."""
    clock = _Clock(now_wall, now)
    return [sa_json(sa, clock) for sa in list(sad)]
