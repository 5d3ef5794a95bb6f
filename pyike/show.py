"""`pyikectl show-sa isakmp` in racoonctl's `-ll` layout, and its JSON twin.

The engine's phase-1 entries are read by attribute or key, so that a dict or a small dataclass
both do.
"""

from __future__ import annotations

import time
from typing import Any

HEADER = (f"{'Source':<45} {'Destination':<45} {'Cookies':<33} {'ST':>2} S  V E "
          f"{'Created':<19} Phase2")


def _get(entry: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(entry, dict) and name in entry:
            return entry[name]
        if hasattr(entry, name):
            return getattr(entry, name)
    return default


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else str(value or "")


def _endpoint(value: Any) -> str:
    if isinstance(value, tuple | list) and len(value) == 2:
        return f"{value[0]}.{value[1]}"
    return str(value or "")


def phase1_json(entries: list[Any], mono_now: float, wall_now: float) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        created = _get(e, "created", "established_at")
        if isinstance(created, int | float) and created < 1e9:  # monotonic -> wall clock
            created = wall_now - (mono_now - created)
        out.append({
            "local": _endpoint(_get(e, "local")),
            "peer": _endpoint(_get(e, "peer", "remote")),
            "icookie": _hex(_get(e, "icookie")),
            "rcookie": _hex(_get(e, "rcookie")),
            "state": _get(e, "state", "status", default=""),
            "side": "I" if _get(e, "initiator", default=False) else "R",
            "exchange": _get(e, "exchange", default="main"),
            "created": created,
            "phase2": _get(e, "phase2_count", "phase2", default=0),
        })
    return out


def format_isakmp(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER]
    for r in rows:
        created = r["created"]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) \
            if isinstance(created, int | float) else str(created or "")
        exch = {"main": "M", "aggressive": "A"}.get(str(r["exchange"]), str(r["exchange"])[:1])
        state = r["state"] if isinstance(r["state"], int) else str(r["state"])[:2]
        lines.append(f"{r['local']:<45} {r['peer']:<45} {r['icookie'] + ':' + r['rcookie']:<33} "
                     f"{state!s:>2} {r['side']} 10 {exch} {stamp:<19} {r['phase2']:>6}")
    return "\n".join(lines) + "\n"
