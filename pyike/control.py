"""The verbs of the control socket: racoonctl's (what racoon's admin port does for each), the
setkey requests of pyike-setkey, and pyike's own `status`, `spd`, `sad`.

Each verb takes the words after it, as the command line had them; a reply is `{"ok": true,
"text": ..., "data": ...}`, or `{"ok": false, "error": ...}` with `"errno": "EEXIST"` where
racoon answers that (racoonctl then exits 0), or for a streaming verb `"stream"`: the records.
A verb is given the daemon's Operations (pyike.ops) and reaches nothing else of it.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import TYPE_CHECKING, Any

from pyike.feed import EVT_PHASE1_DOWN, EVT_PHASE1_MODE_CFG, EVT_PHASE2_UP, FAILURES, Record
from pyike.show import format_isakmp, format_schedule, phase1_json, wall_times

if TYPE_CHECKING:
    from pyike.ops import Operations

log = logging.getLogger("pyike.control")

# racoonctl's short forms (its command table)
ALIASES = {"rc": "reload-config", "sc": "show-schedule", "ss": "show-sa", "fs": "flush-sa",
           "ds": "delete-sa", "da": "delete-all-sa", "es": "establish-sa", "vc": "vpn-connect",
           "vd": "vpn-disconnect", "se": "show-event", "st": "status"}
FAMILIES = ("inet", "inet6")
SA_TYPES = ("isakmp", "esp", "ah", "ipsec", "internal")  # racoonctl's <protocol> words
IPSEC_TYPES = ("esp", "ah", "ipsec")
UL_PROTOS = ("any", "icmp", "tcp", "udp", "gre")  # racoonctl's <ul_proto> words
NO_SAD = "No SAD entries.\n"  # setkey's and racoonctl's words for an empty dump


class UsageError(ValueError):
    pass


def canonical(verb: str) -> str:
    return ALIASES.get(verb, verb)


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
    """racoonctl's <saopts>, `TYPE [inet|inet6] [SRC] DST [ul_proto]` -> (type, src, dst).
    racoonctl requires the family and SRC; pyike also takes them left out."""
    if not args or args[0] not in SA_TYPES:
        raise UsageError(f"unknown protocol {args[0] if args else ''}".rstrip())
    kind, rest = args[0], [a for a in args[1:] if a not in FAMILIES]
    if rest and rest[-1] in UL_PROTOS:
        rest = rest[:-1]
    if len(rest) == 1:
        return kind, None, _host(rest[0])
    if len(rest) == 2:
        return kind, _host(rest[0]), _host(rest[1])
    raise UsageError(f"{kind}: expected [inet|inet6] [SRC] DST [ul_proto]")


async def dispatch(ops: Operations, verb: str, args: list[str], want_json: bool) -> dict[str, Any]:
    verb = canonical(verb)
    handler = VERBS.get(verb)
    if handler is None:
        return {"ok": False, "error": f"unknown verb {verb!r}; known: {', '.join(sorted(VERBS))}"}
    try:
        return await handler(ops, args, want_json)
    except UsageError as exc:
        return {"ok": False, "error": f"{verb}: {exc}"}


# --- show --------------------------------------------------------------------------------------


async def show_sa(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    kind = args[0] if args else "isakmp"
    if kind == "isakmp":
        rows = phase1_json(ops.phase1_sas(), time.monotonic(), time.time())
        # one of the two forms is asked for: the other is not built (10,000 SAs cost 0.1 s)
        return _ok("", rows) if want_json else _ok(format_isakmp(rows))
    if kind in ("esp", "ipsec"):
        return await sad(ops, [], want_json)
    if kind == "ah":  # pyike keeps no AH SA
        return _ok(NO_SAD, [])
    if kind == "internal":  # racoon answers ENOTSUP
        raise UsageError("internal: not supported")
    raise UsageError(f"unknown protocol {kind}")


async def show_schedule(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    mono, wall = time.monotonic(), time.time()
    rows = [wall_times(r, mono, wall) for r in ops.schedule()]
    return _ok("" if want_json else format_schedule(rows, mono, wall), rows)


async def show_event(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    if args:
        raise UsageError("too many arguments")
    return {"ok": True, "stream": ops.follow(lambda r: r["kind"] == "event")}


async def sad(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    data = await ops.query("sad_json")
    text = "" if want_json else await ops.query("sad")
    return _ok(text, data)


async def spd(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    data = await ops.query("spd_json")
    text = "" if want_json else await ops.query("spd_ports" if "-p" in args else "spd")
    return _ok(text, data)


# --- delete and flush --------------------------------------------------------------------------


def _purge(ops: Operations, dst: str, src: str | None, now: float) -> int:
    """racoon's purge_remote(): the peer's IPsec SAs, then its ISAKMP SAs, the peer told."""
    spis = ops.pairs_with(dst, src)
    for spi_in in spis:
        ops.delete_phase2(spi_in, now)
    ops.delete_phase1(dst, now)
    return len(spis)


async def delete_sa(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    kind, src, dst = _sa_args(args)
    if kind not in ("isakmp", "esp", "ah"):
        raise UsageError(f"{kind}: not supported")
    now = time.monotonic()
    if kind == "isakmp":  # as racoon: the ISAKMP SA and the IPsec SAs it made
        deleted = _purge(ops, dst, src, now)
        ops.service()
        return _ok(f"deleting ISAKMP-SA with {dst} and {deleted} IPsec-SA pair(s)\n",
                   {"deleted": deleted})
    deleted = ops.pairs_with(dst, src) if kind == "esp" else []
    for spi_in in deleted:
        ops.delete_phase2(spi_in, now)
    ops.service()
    return _ok(f"deleted {len(deleted)} IPsec-SA pair(s)\n", {"deleted": deleted})


async def delete_all_sa(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """racoon's DELETE_ALL_SA_DST (what `vpn-disconnect` sends): every SA with DST. With
    `-w` the reply streams the phase-1 deletions; no SA with DST is an error."""
    wait = "-w" in args
    words = [a for a in args if a != "-w"]
    _kind, _src, dst = _sa_args(words if words and words[0] in SA_TYPES else ["isakmp", *words])
    has_phase1 = any(r["dst"] == dst for r in ops.phase1_sas())
    if not has_phase1 and not ops.pairs_with(dst):
        return {"ok": False, "error": f"no SA with {dst}", "errno": "ENOENT"}
    records = _Follow(ops, dst, {EVT_PHASE1_DOWN}) if wait else None
    deleted = _purge(ops, dst, None, time.monotonic())
    ops.service()
    reply = _ok(f"deleting every SA with {dst}\n", {"deleted": deleted})
    if records is not None:
        reply["stream"] = records
    return reply


async def flush_sa(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """racoon's FLUSH_SA: `isakmp` the ISAKMP SAs alone (the IPsec SAs they made live on, as
    in the kernel), `esp`/`ipsec` every IPsec SA (pyike tells the peers), `ah` nothing."""
    if len(args) != 1:
        raise UsageError("insufficient arguments")
    kind = args[0]
    if kind not in SA_TYPES:
        raise UsageError(f"unknown protocol {kind}")
    now = time.monotonic()
    if kind == "isakmp":
        peers = {r["dst"] for r in ops.phase1_sas()}
        for peer in sorted(peers):
            ops.delete_phase1(peer, now, ipsec=False)
        ops.service()
        return _ok(f"deleted the ISAKMP-SAs with {len(peers)} peer(s)\n", {"peers": len(peers)})
    if kind == "internal":
        raise UsageError("internal: not supported")
    if kind == "ah":
        return _ok("", {"pairs": 0})
    changes = await _setkey_run(ops, _flush_file())
    return _ok(f"deleted {len(changes['removed'])} IPsec-SA(s)\n",
               {"pairs": len(changes["removed"]) // 2})


# --- establish -------------------------------------------------------------------------------


class _Follow:
    """The peer's events up to and including the first of `until`; it ends early (without
    one) at a failure, or when the ISAKMP SA being waited for goes, as racoon then closes
    the waiting connection."""

    def __init__(self, ops: Operations, peer: str, until: set[int]) -> None:
        self.listener = ops.follow(lambda r: r["kind"] == "event" and r["peer"] == peer)
        self.until = until
        self.done = False

    def __aiter__(self) -> _Follow:
        return self

    async def __anext__(self) -> Record:
        if self.done:
            await self.listener.aclose()
            raise StopAsyncIteration
        record = await anext(self.listener)
        code = record["type"]
        self.done = code in self.until or code in FAILURES or (
            code == EVT_PHASE1_DOWN and EVT_PHASE1_MODE_CFG in self.until)
        return record

    def close(self) -> None:
        self.listener.close()

    async def aclose(self) -> None:
        self.close()


async def establish_sa(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """`[-w] [-n NAME] TYPE [inet|inet6] [SRC] DST [ul_proto]` (racoonctl's options in any
    order). An SA that is up already answers EEXIST, as racoon does."""
    wait, name, words = False, None, list(args)
    while words and words[0].startswith("-"):
        flag = words.pop(0)
        if flag == "-w":
            wait = True
        elif flag == "-n" and words:
            name = words.pop(0)
        elif flag == "-u":
            raise UsageError("-u: XAuth is not supported by pyike")
        else:
            raise UsageError(f"unknown option {flag}")
    kind, src, dst = _sa_args(words)
    if kind not in ("isakmp", "esp", "ah"):
        raise UsageError(f"{kind}: not supported")
    if kind == "ah":
        raise UsageError("ah: pyike negotiates ESP only")
    if name is not None:
        address = ops.remote_address(name)
        if address is None:
            raise UsageError(f"no remote named {name!r}")
        if address not in (dst, "anonymous"):
            raise UsageError(f"remote {name!r} is for {address}, not {dst}")
    now = time.monotonic()
    if kind == "isakmp":
        if any(r["dst"] == dst and r["state"] == "established" for r in ops.phase1_sas()):
            return {"ok": False, "error": f"an ISAKMP-SA with {dst} is up", "errno": "EEXIST"}
        if not ops.have_local_address(now):
            raise UsageError(f"no local address known for {dst}")
        records = _Follow(ops, dst, {EVT_PHASE1_MODE_CFG}) if wait else None
        ops.initiate_phase1(dst, now)
    else:
        if ops.pairs_with(dst, src):
            return {"ok": False, "error": f"an IPsec-SA pair with {dst} is up",
                    "errno": "EEXIST"}
        local = src or ops.local_for(dst)
        if not local:
            raise UsageError(f"no local address known for {dst}; give SRC")
        records = _Follow(ops, dst, {EVT_PHASE2_UP}) if wait else None
        if not ops.acquire_now(local, dst):
            if records is not None:
                records.close()
            raise UsageError(f"cannot negotiate with {dst}: see the daemon's log")
    ops.service()
    reply = _ok(f"negotiating with {dst}\n")
    if records is not None:
        reply["stream"] = records
    return reply


# --- setkey ------------------------------------------------------------------------------------


def _flush_file():
    from spd.commands import Flush, SetkeyFile

    return SetkeyFile("<flush>", [Flush()])


async def _setkey_run(ops: Operations, sk) -> dict[str, list]:
    """Have the forwarding process run `sk` (Operations.run_setkey); refused: UsageError."""
    changes = await ops.run_setkey(sk)
    if "error" in changes:
        raise UsageError(changes["error"])
    return changes


async def setkey(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """`setkey FILENAME TEXT`: run setkey.conf commands on the live SPD and SAD."""
    from spd.errors import SetkeyError
    from spd.parse import parse_setkey

    if len(args) != 2:
        raise UsageError("expected a file name and its text")
    try:
        sk = parse_setkey(args[1], args[0])
    except SetkeyError as exc:
        raise UsageError(str(exc)) from None
    changes = await _setkey_run(ops, sk)
    log.info("setkey commands from %s: %d policy command(s), %d SA(s) added, %d removed",
             args[0], len(sk.spd_commands()), len(changes["added"]), len(changes["removed"]))
    data = {k: [{"spi": c[0], "src": c[1], "dst": c[2], "direction": c[3]} for c in v]
            for k, v in changes.items()}
    return _ok("", data)


async def setkey_watch(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """`pyike-setkey -x`: every SA change from now on."""
    return {"ok": True, "stream": ops.follow(lambda r: r["kind"] == "sa")}


# --- the rest ------------------------------------------------------------------------------------


async def reload_config(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    errors = await ops.reload()
    if errors:
        return {"ok": False, "error": "\n".join(errors)}
    return _ok("configuration reloaded\n")


async def status(ops: Operations, args: list[str], want_json: bool) -> dict[str, Any]:
    """pyike's status (racoonctl's `status [-v] [-f text|json]` words are taken; pyike's
    report is its own)."""
    data = await ops.status()
    lines = [f"pyike pid {data['pid']} (forwarding {data['forwarding_pid']}), "
             f"up {data['uptime']:.0f} s, config {data['config']}",
             f"ISAKMP-SAs: {data['phase1']}  IPsec-SA pairs: {data['phase2']}"]
    for t in data["tunnels"]:
        lines.append(f"{t['name']}: {t['address']} peer {t['peer']} mtu {t['mtu']} GRE "
                     f"{t['local']}->{t['remote']} policy {t['out_action'] or 'none'}")
    if data.get("device"):
        d = data["device"]
        lines.append(f"{d['name']}: ESP tunnel mode, mtu {d['mtu']}, routes "
                     f"{' '.join(d['routes']) or '(none)'}, {d['flows']} flow(s), "
                     f"{d['queued']} packet(s) waiting for an SA")
    for section in ("daemon", "engine", "dataplane"):
        counters = data[section]
        if counters:
            lines.append(f"{section}: " + " ".join(f"{k}={v}" for k, v in counters.items()))
    return _ok("\n".join(lines) + "\n", data)


VERBS = {
    "show-sa": show_sa, "show-schedule": show_schedule, "show-event": show_event,
    "delete-sa": delete_sa, "delete-all-sa": delete_all_sa, "establish-sa": establish_sa,
    "flush-sa": flush_sa, "reload-config": reload_config, "status": status,
    "spd": spd, "sad": sad, "setkey": setkey, "setkey-watch": setkey_watch,
}
