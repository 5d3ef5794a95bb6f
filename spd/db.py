"""The security policy database: ordered policies per direction and a fast per-packet lookup.

Order follows setkey(8) on Linux: lower priority values first, and among equal priorities the
older policy first ("policies with equal priorities are added at the end of groups of such
policies"). spdupdate replaces a policy with the same selector and direction, keeping its spid
and moving it to the end of its priority group, as the kernel does.

Linux setkey also adds a `fwd` twin for every `-P in` policy unless run with -k; pyike does not,
as the article's `setkey -DP` shows none and pyike's data plane forwards nothing through an IPsec
policy (a `-P fwd` policy written in the file is kept like any other).

The lookup path keeps to ints: every selector is compiled to (network, mask) integers once,
results are memoised per flow, and `touch` only stores a number.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import time
from collections.abc import Iterable

from spd.commands import SetkeyFile, SpdCommand, SpdFlush
from spd.policy import (
    DIRECTION_CODE,
    DIRECTIONS,
    MANUAL_REQID_MAX,
    PROTO_ANY,
    IPAddress,
    Policy,
)

_CACHE_LIMIT = 4096  # distinct flows remembered before the memo is dropped and rebuilt
_MISS = object()


class SpdError(ValueError):
    """A policy the SPD refuses: a duplicate spdadd, or a spddelete of nothing."""


@dataclasses.dataclass
class SpdEntry:
    """An installed policy and what the kernel keeps beside it for `setkey -DP`."""

    policy: Policy
    created: float
    lastused: float = 0.0  # 0: never used (setkey prints blanks)
    refcnt: int = 1  # 1 for the SPD itself, +1 per holder (e.g. an SA bound to it)
    order: int = 0  # insertion sequence: ties in priority go to the older policy


class SPD:
    def __init__(self) -> None:
        self._entries: dict[int, SpdEntry] = {}
        self._by_selector: dict[tuple, int] = {}
        self._order = 0
        self._index_gen = 0
        self._reqid_gen = MANUAL_REQID_MAX
        self._tables: dict[str, list[tuple]] = {d: [] for d in DIRECTIONS}
        self._cache: dict[tuple, Policy | None] = {}

    # -- changes -------------------------------------------------------------------------

    def apply(self, setkey_file: SetkeyFile, now: float | None = None) -> None:
        """Runs the file's spdflush/spdadd/spdupdate/spddelete in order, all or nothing.

        SAD commands are left to the caller (`setkey_file.manual_sas()`). A command the SPD
        refuses raises SetkeyError at its line, and the SPD is left as it was.
        """
        now = time.time() if now is None else now
        work = copy.deepcopy(self)
        for cmd in setkey_file.spd_commands():
            try:
                work._run(cmd, now)
            except SpdError as e:
                raise setkey_file.error(cmd, cmd.verb if isinstance(cmd, SpdCommand)
                                        else "spdflush", str(e)) from None
        self.__dict__.update(work.__dict__)

    def _run(self, cmd: SpdFlush | SpdCommand, now: float) -> None:
        if isinstance(cmd, SpdFlush):
            self.flush()
        elif cmd.verb == "spdadd":
            self.add(cmd.policy, now)
        elif cmd.verb == "spdupdate":
            self.update(cmd.policy, now)
        else:
            self.delete(cmd.policy)

    def add(self, policy: Policy, now: float | None = None) -> Policy:
        """Installs a policy; returns it with its spid (and any reqid it was given)."""
        if policy.selector() in self._by_selector:
            raise SpdError("a policy with this selector and direction exists already")
        return self._install(policy, self._new_index(policy.direction), now)

    def update(self, policy: Policy, now: float | None = None) -> Policy:
        """spdupdate: replaces the policy with the same selector and direction, or adds it."""
        old = self._by_selector.get(policy.selector())
        if old is None:
            return self.add(policy, now)
        self._remove(old)
        return self._install(policy, old, now)

    def delete(self, policy: Policy) -> Policy:
        """spddelete: removes the policy with this selector and direction."""
        spid = self._by_selector.get(policy.selector())
        if spid is None:
            raise SpdError("no policy with this selector and direction")
        return self._remove(spid)

    def remove(self, spid: int) -> Policy | None:
        return self._remove(spid) if spid in self._entries else None

    def flush(self) -> None:
        self._entries.clear()
        self._by_selector.clear()
        self._rebuild()

    def _install(self, policy: Policy, spid: int, now: float | None) -> Policy:
        policy = dataclasses.replace(policy, spid=spid, rules=tuple(
            dataclasses.replace(r, reqid=self._new_reqid())
            if r.level == "unique" and not 0 < r.reqid <= MANUAL_REQID_MAX else r
            for r in policy.rules))
        self._order += 1
        created = time.time() if now is None else now
        self._entries[spid] = SpdEntry(policy, created, order=self._order)
        self._by_selector[policy.selector()] = spid
        self._rebuild()
        return policy

    def _remove(self, spid: int) -> Policy:
        entry = self._entries.pop(spid)
        del self._by_selector[entry.policy.selector()]
        self._rebuild()
        return entry.policy

    def _new_index(self, direction: str) -> int:
        """Linux numbers policies 8n + direction and never hands out 0 (setkey's spid)."""
        while True:
            index = self._index_gen | DIRECTION_CODE[direction]
            self._index_gen = (self._index_gen + 8) & 0xFFFFFFF8
            if index == 0:
                index = 8
            if index not in self._entries:
                return index

    def _new_reqid(self) -> int:
        """A reqid for a bare `unique` rule, above the hand-set range like the kernel's."""
        in_use = {r.reqid for e in self._entries.values() for r in e.policy.rules}
        while True:
            self._reqid_gen = (self._reqid_gen + 1) & 0xFFFFFFFF
            if self._reqid_gen == 0:
                self._reqid_gen = MANUAL_REQID_MAX + 1
            if self._reqid_gen not in in_use:
                return self._reqid_gen

    def _rebuild(self) -> None:
        tables: dict[str, list[tuple]] = {d: [] for d in DIRECTIONS}
        for entry in sorted(self._entries.values(),
                            key=lambda e: (e.policy.priority, e.order)):
            p = entry.policy
            tables[p.direction].append((
                p.src.version,
                int(p.src.network_address), int(p.src.netmask),
                int(p.dst.network_address), int(p.dst.netmask),
                p.proto, p.sport, p.dport, p.gre_key, p,
            ))
        self._tables = tables
        self._cache = {}

    # -- the packet path -----------------------------------------------------------------

    def lookup(self, direction: str, src: bytes | str | IPAddress,
               dst: bytes | str | IPAddress,
               proto: int, sport: int = 0, dport: int = 0, gre_key: int | None = None
               ) -> Policy | None:
        """The first policy of that direction matching the packet, or None.

        src/dst are raw 4- or 16-byte addresses as they sit in the IP header (the fast form),
        or text / ipaddress objects. For ICMP pass the type and code as sport and dport. A
        policy's port, GRE key or protocol of 0/any matches every packet.
        """
        if type(src) is not bytes and isinstance(src, bytearray | memoryview):
            src = bytes(src)
        if type(dst) is not bytes and isinstance(dst, bytearray | memoryview):
            dst = bytes(dst)
        key = (direction, src, dst, proto, sport, dport, gre_key)
        found = self._cache.get(key, _MISS)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        found = self._scan(direction, src, dst, proto, sport, dport, gre_key or 0)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache = {}
        self._cache[key] = found
        return found

    def _scan(self, direction: str, src, dst, proto: int, sport: int, dport: int,
              gre_key: int) -> Policy | None:
        version, s = _address_int(src)
        dversion, d = _address_int(dst)
        if version != dversion or version == 0:
            return None
        for (fam, snet, smask, dnet, dmask, pproto, psport, pdport, pkey,
             policy) in self._tables.get(direction, ()):
            if (fam == version and s & smask == snet and d & dmask == dnet
                    and pproto in (PROTO_ANY, proto)
                    and (not psport or psport == sport)
                    and (not pdport or pdport == dport)
                    and (not pkey or pkey == gre_key)):
                return policy
        return None

    def touch(self, spid: int, now: float) -> None:
        """Records a use of the policy (setkey's lastused); cheap enough per packet."""
        entry = self._entries.get(spid)
        if entry is not None:
            entry.lastused = now

    def hold(self, spid: int) -> None:
        """Counts a holder of the policy (an SA bound to it): setkey's refcnt."""
        entry = self._entries.get(spid)
        if entry is not None:
            entry.refcnt += 1

    def release(self, spid: int) -> None:
        entry = self._entries.get(spid)
        if entry is not None and entry.refcnt > 1:
            entry.refcnt -= 1

    # -- reading -------------------------------------------------------------------------

    def policies(self, direction: str | None = None) -> list[Policy]:
        """Policies in lookup order (per direction; all directions in, out, fwd)."""
        directions: Iterable[str] = DIRECTIONS if direction is None else (direction,)
        return [row[-1] for d in directions for row in self._tables[d]]

    def entries(self) -> list[SpdEntry]:
        """Installed policies newest first: the order the Linux kernel dumps them in."""
        return sorted(self._entries.values(), key=lambda e: e.order, reverse=True)

    def get(self, spid: int) -> Policy | None:
        entry = self._entries.get(spid)
        return entry.policy if entry else None

    def get_by_selector(self, selector: tuple) -> Policy | None:
        """The installed policy of that Policy.selector(), or None."""
        spid = self._by_selector.get(selector)
        return None if spid is None else self.get(spid)

    def __len__(self) -> int:
        return len(self._entries)


def _address_int(addr) -> tuple[int, int]:
    """(IP version, address as int); version 0 for something that is not an address."""
    if type(addr) is bytes:
        n = len(addr)
        if n == 4:
            return 4, int.from_bytes(addr, "big")
        return (6, int.from_bytes(addr, "big")) if n == 16 else (0, 0)
    try:
        ip = addr if isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address) \
            else ipaddress.ip_address(addr)
    except ValueError:
        return 0, 0
    return ip.version, int(ip)
