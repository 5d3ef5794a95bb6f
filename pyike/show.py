"""What pyikectl prints: racoonctl's layouts (`show-sa isakmp` at each `-l` level,
`show-schedule`, `show-event`), and the `--json` document beside them.

The layouts are racoonctl's: fixed-width `address.port` fields, cookies as `icookie:rcookie`,
times as `%Y-%m-%d %H:%M:%S` in local time, a blank after every field (so each row ends in
one), as scripts written for racoonctl cut them.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from pyike import feed

# racoon numbers an established ISAKMP-SA 9 in this table (ipsec-tools' PHASE1ST_ESTABLISHED)
RACOON_STATES = {"established": 9}
ISAKMP_VERSION = 0x10  # IKEv1 (RFC 2408 §3.1: major 1, minor 0), shown in hex as racoonctl does
# racoonctl's letter per exchange type (RFC 2408 §4.1: base, identity protection, ...)
EXCHANGE_LETTERS = {"base": "B", "main": "M", "auth_only": "U", "aggressive": "A",
                    "informational": "I"}

# racoonctl's three `show-sa isakmp` headers: default, -l and -ll
ISAKMP_HEADERS = (
    f"{'Destination':<22} {'Cookies':<33} Created",
    f"{'Destination':<22} {'Cookies':<33} ST S  V E {'Created':<19} Phase2",
    f"{'Source':<45} {'Destination':<45} {'Cookies':<33} ST S  V E {'Created':<19} Phase2",
)
SHORT_ADDR, LONG_ADDR = 22, 45  # racoonctl's address widths
NO_TIME = " " * 19  # racoonctl's blank for an SA with no creation time yet
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

SCHEDULE_HEADER = "index    tick     xtime    created"

# racoonctl's words for each event; a number it has no words for prints as "Event N: "
EVENT_TEXT = {
    feed.EVT_RACOON_QUIT: "Racoon terminated",
    feed.EVT_PHASE1_UP: "Phase 1 established",
    feed.EVT_PHASE1_DOWN: "Phase 1 deleted",
    feed.EVT_PHASE1_NO_RESPONSE: "Phase 1 error: peer not responding",
    feed.EVT_PHASE1_NO_PROPOSAL: "Phase 1 error: no proposal chosen",
    feed.EVT_PHASE1_AUTH_FAILED: "Phase 1 error: authentication failed (bad certificate?)",
    feed.EVT_PHASE1_DPD_TIMEOUT: "Phase 1 error: dead peer detected",
    feed.EVT_PHASE1_MODE_CFG: "Phase 1 mode configuration done",
    feed.EVT_PHASE2_NO_PHASE1: "Phase 2 error: no suitable phase 1",
    feed.EVT_PHASE2_UP: "Phase 2 established",
    feed.EVT_PHASE2_DOWN: "Phase 2 deleted",
    feed.EVT_PHASE2_NO_RESPONSE: "Phase 2 error: no response",
}
# what racoonctl prints when the mode-config event it waited for carries no attributes
VPN_ESTABLISHED = "VPN connexion established"

JSON_VERSION = 1  # of the --json document; bumped when a field changes meaning or goes
# fields holding wall-clock times (epoch seconds inside pyike, ISO 8601 in --json)
TIME_FIELDS = frozenset({"created", "established", "expires", "current", "first_used",
                         "lastused", "time", "due"})


def wall_times(row: dict[str, Any], mono_now: float, wall_now: float) -> dict[str, Any]:
    """`row` with its engine-clock (monotonic) times moved to the wall clock."""
    out = dict(row)
    for key in TIME_FIELDS & row.keys():
        if isinstance(row[key], int | float):
            out[key] = wall_now - (mono_now - row[key])
    return out


def phase1_json(entries: list[dict[str, Any]], mono_now: float, wall_now: float
                ) -> list[dict[str, Any]]:
    """The engine's phase1_sas() rows with endpoints joined and times on the wall clock."""
    out = []
    for e in entries:
        row = wall_times(e, mono_now, wall_now)
        row["local"] = f"{e['src']}.{e['src_port']}"
        row["peer"] = f"{e['dst']}.{e['dst_port']}"
        out.append(row)
    return out


def fixed_addr(addr: str, port: int | str, width: int) -> str:
    """racoonctl's `address.port` in exactly `width` columns: the address cut to leave room
    for the port, blanks after."""
    port = str(port)
    return f"{addr[:max(width - len(port) - 1, 0)]}.{port}".ljust(width)[:width]


def format_isakmp(rows: list[dict[str, Any]], long_format: int = 0) -> str:
    """`racoonctl show-sa isakmp`: 0 destination, cookies, created; 1 (-l) with state, side,
    version, exchange and phase-2 count; 2 and more (-ll) with the source and wider addresses."""
    level = min(max(long_format, 0), 2)
    width = LONG_ADDR if level >= 2 else SHORT_ADDR
    lines = [ISAKMP_HEADERS[level]]
    stamps: dict[int, str] = {}  # SAs made in the same second share their text
    for r in rows:
        parts = []
        if level >= 2:
            parts.append(fixed_addr(r["src"], r["src_port"], width))
        parts.append(fixed_addr(r["dst"], r["dst_port"], width))
        parts.append(f"{r['icookie']}:{r['rcookie']}")
        if level >= 1:
            state = r.get("racoon_state") or RACOON_STATES.get(r["state"], 0)
            side = "I" if r["side"] == "initiator" else "R"
            parts.append(f"{int(state):2d} {side} {ISAKMP_VERSION:2x}")
            letter = EXCHANGE_LETTERS.get(str(r["exchange"]))
            if letter:
                parts.append(letter)
        created = r.get("created")
        if isinstance(created, int | float) and created > 0:
            stamp = stamps.get(int(created))
            if stamp is None:
                stamp = stamps[int(created)] = time.strftime(TIME_FORMAT,
                                                             time.localtime(int(created)))
        else:
            stamp = NO_TIME
        parts.append(stamp)
        if level >= 1:
            parts.append(f"{int(r['phase2']):6d}")
        lines.append("".join(p + " " for p in parts))
    return "\n".join(lines) + "\n"


def format_schedule(rows: list[dict[str, Any]], mono_now: float, wall_now: float) -> str:
    """`racoonctl show-schedule`: index, seconds to go (tick), the deadline on the monotonic
    clock (xtime) and when its owner was made; pyike adds what the timer is and its peer."""
    lines = [SCHEDULE_HEADER]
    for i, r in enumerate(rows, 1):
        due_mono = mono_now - (wall_now - r["due"])  # rows carry wall-clock times
        created = r.get("created")
        stamp = time.strftime(TIME_FORMAT, time.localtime(created)) if created else NO_TIME
        lines.append(f"{i:<8d} {max(int(r['due'] - wall_now), 0):<8d} {int(due_mono):<8d} "
                     f"{stamp} {r['timer']} {r['peer']}")
    return "\n".join(lines) + "\n"


def _sockaddr(end: list | None) -> str:
    """racoon's saddr2str(): `address[port]`."""
    return "unknown" if not end else f"{end[0]}[{end[1]}]"


def format_event(record: dict[str, Any]) -> str:
    """One `racoonctl show-event` line."""
    code = record["type"]
    text = EVENT_TEXT.get(code)
    head = f"{text} : " if text else f"Event {code}: "
    return f"{head}{_sockaddr(record.get('src'))} -> {_sockaddr(record.get('dst'))}\n"


def iso8601(t: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in local time with its offset; None (and 0, never) stay None."""
    if not t:
        return None
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _iso_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: iso8601(v) if k in TIME_FIELDS and isinstance(v, int | float)
                and not isinstance(v, bool) else _iso_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_times(v) for v in value]
    return value


def json_document(verb: str, data: Any, now: float | None = None) -> dict[str, Any]:
    """The `--json` output: the document version, the verb, when, and the data with every
    time in ISO 8601."""
    return {"version": JSON_VERSION, "verb": verb,
            "time": iso8601(time.time() if now is None else now), "data": _iso_times(data)}
