"""The verbs of the control socket (racoonctl's, plus `spd`, `sad`, `status`)."""

from __future__ import annotations

import ipaddress
import os
import time
from typing import TYPE_CHECKING, Any

from pyike.show import format_isakmp, phase1_json

if TYPE_CHECKING:
    from pyike.daemon import Daemon

ALIASES = {"ss": "show-sa", "ds": "delete-sa", "es": "establish-sa"}
FAMILIES = ("inet", "inet6")
SA_TYPES = ("isakmp", "esp", "ipsec", "ah")


class UsageError(ValueError):
    pass


def _ok(text: str, data: Any = None) -> dict[str, Any]:
    return {"ok": True, "text": text, "data": data}


def _host(arg: str) -> str:
    """racoonctl's `address[/prefixlen][[port]]` -> the address."""
    host = arg.split("[", 1)[0].split("/", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError as exc:
        raise UsageError(f"not an address: {arg}") from exc


def _sa_args(args: list[str]) -> tuple[str, str | None, str]:
    """`TYPE [inet|inet6] [SRC] DST [proto]` -> (type, src or None, dst)."""
    if not args or args[0] not in SA_TYPES:
        raise UsageError("expected isakmp|esp|ipsec followed by addresses")
    kind, rest = args[0], [a for a in args[1:] if a not in FAMILIES]
    addrs = [a for a in rest if a[:1].isdigit() or ":" in a]
    if len(addrs) == 1:
        return kind, None, _host(addrs[0])
    if len(addrs) >= 2:
        return kind, _host(addrs[0]), _host(addrs[1])
    raise UsageError(f"{kind}: an address is needed")


async def dispatch(d: Daemon, verb: str, args: list[str], want_json: bool) -> dict[str, Any]:
    verb = ALIASES.get(verb, verb)
    handler = VERBS.get(verb)
    if handler is None:
        return {"ok": False, "error": f"unknown verb {verb!r}; known: {', '.join(sorted(VERBS))}"}
    try:
        return await handler(d, args, want_json)
    except UsageError as exc:
        return {"ok": False, "error": f"{verb}: {exc}"}


async def show_sa(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    kind = args[0] if args else "isakmp"
    if kind == "isakmp":
        rows = phase1_json(d.engine.phase1_sas(), time.monotonic(), time.time())
        # one of the two forms is asked for: the other is not built (10,000 SAs cost 0.1 s)
        return _ok("", rows) if want_json else _ok(format_isakmp(rows))
    if kind in ("esp", "ipsec", "ah"):
        return await sad(d, [], want_json)
    raise UsageError(f"unknown SA type {kind!r}")


async def sad(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    data = await d.query("sad_json")
    text = "" if want_json else await d.query("sad")
    return _ok(text, data)


async def spd(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    data = await d.query("spd_json")
    text = "" if want_json else await d.query("spd")
    return _ok(text, data)


async def delete_sa(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    kind, src, dst = _sa_args(args)
    now = time.monotonic()
    if kind == "isakmp":
        d.engine.delete_phase1(dst, now)
        d._service()
        return _ok(f"deleting ISAKMP-SA with {dst}\n")
    deleted = []
    for spi_in, pair in list(d.pairs.items()):
        ends = {pair.outbound.src, pair.outbound.dst}
        if dst in ends and (src is None or src in ends):
            d.engine.delete_phase2(spi_in, now)
            deleted.append(spi_in)
    d._service()
    return _ok(f"deleted {len(deleted)} IPsec-SA pair(s)\n", {"deleted": deleted})


async def establish_sa(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    _kind, src, dst = _sa_args(args)
    local = src or d._local_for(dst)
    if not local:
        raise UsageError(f"no local address known for {dst}; give SRC")
    d.acquiring.pop((local, dst), None)
    started = d._acquire(local, dst)
    d._service()
    if not started:
        raise UsageError(f"cannot negotiate with {dst}: see the daemon's log")
    return _ok(f"negotiating with {dst}\n")


async def flush_sa(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    kind = args[0] if args else "ipsec"
    d.engine.flush(time.monotonic())
    d._service()
    if kind in ("esp", "ipsec", "ah"):
        d._to_dataplane("flush")
    return _ok("flushed\n")


async def reload_config(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    errors = await d.reload()
    if errors:
        return {"ok": False, "error": "\n".join(errors)}
    return _ok("configuration reloaded\n")


async def status(d: Daemon, args: list[str], want_json: bool) -> dict[str, Any]:
    dp = await d.query("counters")
    engine_counters = getattr(d.engine, "counters", {})
    if not isinstance(engine_counters, dict):
        engine_counters = dict(getattr(engine_counters, "__dict__", {}))
    data = {
        "pid": os.getpid(), "forwarding_pid": d.dp_pid, "config": d.config_path,
        "uptime": round(time.time() - d.started_wall, 1),
        "phase1": d.engine.phase1_count(), "phase2": len(d.pairs),
        "daemon": d.counters, "engine": engine_counters,
        "dataplane": dp["counters"], "tunnels": dp["tunnels"],
    }
    lines = [f"pyike pid {data['pid']} (forwarding {data['forwarding_pid']}), "
             f"up {data['uptime']:.0f} s, config {data['config']}",
             f"ISAKMP-SAs: {data['phase1']}  IPsec-SA pairs: {data['phase2']}"]
    for t in data["tunnels"]:
        lines.append(f"{t['name']}: {t['address']} peer {t['peer']} mtu {t['mtu']} GRE "
                     f"{t['local']}->{t['remote']} policy {t['out_action'] or 'none'}")
    for section in ("daemon", "engine", "dataplane"):
        counters = data[section]
        if counters:
            lines.append(f"{section}: " + " ".join(f"{k}={v}" for k, v in counters.items()))
    return _ok("\n".join(lines) + "\n", data)


VERBS = {
    "show-sa": show_sa, "delete-sa": delete_sa, "establish-sa": establish_sa,
    "flush-sa": flush_sa, "reload-config": reload_config, "status": status,
    "spd": spd, "sad": sad,
}
