"""The SPD as text: `setkey -DP` layout, JSON, and setkey.conf statements.

The -DP layout is that of ipsec-tools' pfkey_spdump on Linux: the selector line (prefix
length shown only when shorter than the address, `[port]` except for ICMP/GRE, the protocol's
/etc/protocols name or number), then tab-indented the direction/priority/action, the rules,
the times, the policy lifetimes, spid/seq/pid and refcnt. Policies come newest first.
"""

from __future__ import annotations

import ipaddress
import os
import time

from spd.db import SPD, SpdEntry
from spd.policy import (
    MANUAL_REQID_MAX,
    PRIORITY_DEFAULT,
    PROTO_ANY,
    PROTO_GRE,
    TYPE_CODE_PROTOCOLS,
    IPNetwork,
    IpsecRule,
    Policy,
    priority_text,
)
from spd.protocols import ProtocolTable, default_table

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_spd(spd: SPD, now_wall: float | None = None, *, pid: int | None = None,
               with_ports: bool = False, protocols: ProtocolTable | None = None) -> str:
    """`setkey -DP` (`-DPp` with with_ports). Times are the SPD's wall-clock seconds shown in
    local time like ctime(3); now_wall is accepted for symmetry with the SAD dump, whose
    layout shows the current time while this one does not. pid is the dumping process's.
    """
    entries = spd.entries()
    if not entries:
        return "No SPD entries.\n"
    table = protocols or default_table()
    pid = os.getpid() if pid is None else pid
    return "".join(_format_entry(e, seq, pid, with_ports, table)
                   for seq, e in enumerate(entries, 1))


def _format_entry(entry: SpdEntry, seq: int, pid: int, with_ports: bool,
                  table: ProtocolTable) -> str:
    p = entry.policy
    header = (f"{_endpoint(p.src, p.sport, p.proto)} {_endpoint(p.dst, p.dport, p.proto)} "
              f"{_upper_spec(p, table)}")
    rules = "".join(f"\n\t{rule_text(r, with_ports)}" for r in p.rules)
    return (f"{header}\n"
            f"\t{policy_head(p)}{rules}\n"
            f"\tcreated: {ctime20(entry.created)}  lastused: {ctime20(entry.lastused)}\n"
            f"\tlifetime: {p.lifetime_s}(s) validtime: {p.validtime_s}(s)\n"
            f"\tspid={p.spid} seq={seq} pid={pid}\n"
            f"\trefcnt={entry.refcnt}\n")


def _endpoint(net: IPNetwork, port: int, proto: int) -> str:
    prefix = "" if net.prefixlen == net.max_prefixlen else f"/{net.prefixlen}"
    if proto in TYPE_CODE_PROTOCOLS or proto == PROTO_GRE:
        return f"{net.network_address}{prefix}"  # their "ports" are shown after the protocol
    return f"{net.network_address}{prefix}[{port if port else 'any'}]"


def _upper_spec(p: Policy, table: ProtocolTable) -> str:
    name = table.name(p.proto)
    if p.proto in TYPE_CODE_PROTOCOLS and (p.sport or p.dport):
        return f"{name} {p.sport},{p.dport}"
    if p.proto == PROTO_GRE and p.gre_key:
        # the dotted quad, the one form of a GRE key setkey reads back
        return f"{name} {ipaddress.IPv4Address(p.gre_key)}"
    return name


def policy_head(p: Policy) -> str:
    """'out prio def ipsec': direction, priority (when not 0) and action."""
    prio = priority_text(p.priority)
    return f"{p.direction} {prio} {p.action}" if prio else f"{p.direction} {p.action}"


def rule_text(rule: IpsecRule, with_ports: bool = False) -> str:
    """'esp/tunnel/192.0.2.1-192.0.2.2/unique:3' ('#' for reqids the SPD assigned)."""
    ends = ""
    if rule.src is not None and rule.dst is not None:
        if with_ports:
            ends = f"{rule.src}[{rule.sport}]-{rule.dst}[{rule.dport}]"
        else:
            ends = f"{rule.src}-{rule.dst}"
    text = f"{rule.protocol}/{rule.mode}/{ends}/{rule.level}"
    if rule.reqid:
        text += f"{':' if rule.reqid <= MANUAL_REQID_MAX else '#'}{rule.reqid}"
    return text


def ctime20(t: float) -> str:
    """'Jan 12 21:43:16 2015' (ctime(3) without the weekday); 20 blanks for never."""
    if not t:
        return " " * 20
    tm = time.localtime(t)
    return (f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year}")


def spd_json(spd: SPD, protocols: ProtocolTable | None = None) -> list[dict]:
    """The SPD as plain data, in the dump's order (newest first)."""
    table = protocols or default_table()
    return [_entry_json(e, table) for e in spd.entries()]


def _entry_json(entry: SpdEntry, table: ProtocolTable) -> dict:
    p = entry.policy
    return {
        "spid": p.spid,
        "direction": p.direction,
        "src": str(p.src),
        "dst": str(p.dst),
        "sport": p.sport,
        "dport": p.dport,
        "proto": p.proto,
        "proto_name": "any" if p.proto == PROTO_ANY else table.name(p.proto),
        "gre_key": p.gre_key,
        "priority": p.priority,
        "priority_text": priority_text(p.priority),
        "action": p.action,
        "rules": [{
            "protocol": r.protocol, "mode": r.mode,
            "src": None if r.src is None else str(r.src),
            "dst": None if r.dst is None else str(r.dst),
            "sport": r.sport, "dport": r.dport, "level": r.level, "reqid": r.reqid,
        } for r in p.rules],
        "created": entry.created,
        "lastused": entry.lastused,
        "lifetime_s": p.lifetime_s,
        "validtime_s": p.validtime_s,
        "refcnt": entry.refcnt,
    }


def format_setkey(p: Policy, verb: str = "spdadd",
                  protocols: ProtocolTable | None = None) -> str:
    """The setkey.conf statement that recreates the policy (ports and keys spelled out)."""
    table = protocols or default_table()
    if p.proto in TYPE_CODE_PROTOCOLS or p.proto == PROTO_GRE:
        ends = f"{p.src} {p.dst}"
    else:
        ends = f"{p.src}[{p.sport or 'any'}] {p.dst}[{p.dport or 'any'}]"
    upper = _upper_spec(p, table) if p.proto != PROTO_ANY else "any"
    # Priority 0 has no `prio` spelling of its own: it is `def` minus the whole 2^31.
    prio = priority_text(p.priority) or f"prio {PRIORITY_DEFAULT}"
    rules = "".join(f" {_rule_setkey(r)}" for r in p.rules)
    return f"{verb} {ends} {upper} -P {p.direction} {prio} {p.action}{rules};"


def _rule_setkey(rule: IpsecRule) -> str:
    ends = ""
    if rule.src is not None and rule.dst is not None:
        ends = f"{rule.src}-{rule.dst}"
        if rule.sport or rule.dport:
            ends = f"{rule.src}[{rule.sport}]-{rule.dst}[{rule.dport}]"
    # Reqids above the hand-set range were assigned by an SPD: a bare `unique` asks for one.
    manual = rule.level == "unique" and 0 < rule.reqid <= MANUAL_REQID_MAX
    level = f"unique:{rule.reqid}" if manual else rule.level
    return f"{rule.protocol}/{rule.mode}/{ends}/{level}"
