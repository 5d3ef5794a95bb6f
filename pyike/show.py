"""`pyikectl show-sa isakmp` in racoonctl's `-ll` layout, and its JSON twin."""

from __future__ import annotations

import time
from typing import Any

# racoon numbers an established ISAKMP-SA 9 in this table (ipsec-tools' PHASE1ST_ESTABLISHED)
RACOON_STATES = {"established": 9}

HEADER = (f"{'Source':<45} {'Destination':<45} {'Cookies':<33} {'ST':>2} S  V E "
          f"{'Created':<19} Phase2")


def phase1_json(entries: list[dict[str, Any]], mono_now: float, wall_now: float
                ) -> list[dict[str, Any]]:
    """The engine's phase1_sas() rows with endpoints joined and times on the wall clock."""
    out = []
    for e in entries:
        row = dict(e)
        row["local"] = f"{e['src']}.{e['src_port']}"
        row["peer"] = f"{e['dst']}.{e['dst_port']}"
        for key in ("created", "established", "expires"):
            if isinstance(e.get(key), int | float):  # the engine's clock is monotonic
                row[key] = wall_now - (mono_now - e[key])
        out.append(row)
    return out


def format_isakmp(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER]
    stamps: dict[int, str] = {}  # SAs made in the same second share their text
    for r in rows:
        created = r["created"]
        if isinstance(created, int | float):
            stamp = stamps.get(int(created))
            if stamp is None:
                stamp = stamps[int(created)] = time.strftime("%Y-%m-%d %H:%M:%S",
                                                             time.localtime(int(created)))
        else:
            stamp = str(created or "")
        exch = {"main": "M", "aggressive": "A"}.get(str(r["exchange"]), str(r["exchange"])[:1])
        state = r.get("racoon_state") or RACOON_STATES.get(r["state"], str(r["state"])[:2])
        side = "I" if r["side"] == "initiator" else "R"
        lines.append(f"{r['local']:<45} {r['peer']:<45} {r['icookie'] + ':' + r['rcookie']:<33} "
                     f"{state!s:>2} {side} 10 {exch} {stamp:<19} {r['phase2']:>6}")
    return "\n".join(lines) + "\n"
