"""Upper-layer protocol names for setkey's upperspec, from /etc/protocols when present.

setkey(8) looks names up with getprotobyname(3) and falls back to `icmp6` and `ip4`; the dump
prints getprotobynumber(3)'s official name or the number. A built-in table stands in when the
file is missing so a minimal system still reads the usual setkey.conf.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PROTOCOLS_FILE = "/etc/protocols"

# The IANA numbers a setkey.conf is likely to name (official name first, then aliases).
BUILTIN = (
    ("ip", 0, ("IP",)),
    ("icmp", 1, ("ICMP",)),
    ("igmp", 2, ("IGMP",)),
    ("ipencap", 4, ("IP-ENCAP",)),
    ("tcp", 6, ("TCP",)),
    ("udp", 17, ("UDP",)),
    ("ipv6", 41, ("IPv6",)),
    ("ipv6-route", 43, ("IPv6-Route",)),
    ("ipv6-frag", 44, ("IPv6-Frag",)),
    ("rsvp", 46, ("RSVP",)),
    ("gre", 47, ("GRE",)),
    ("esp", 50, ("IPSEC-ESP",)),
    ("ah", 51, ("IPSEC-AH",)),
    ("ipv6-icmp", 58, ("IPv6-ICMP",)),
    ("ipv6-nonxt", 59, ("IPv6-NoNxt",)),
    ("ipv6-opts", 60, ("IPv6-Opts",)),
    ("ospf", 89, ("OSPFIGP",)),
    ("ipip", 94, ("IPIP",)),
    ("etherip", 97, ("ETHERIP",)),
    ("pim", 103, ("PIM",)),
    ("ipcomp", 108, ("IPCOMP",)),
    ("vrrp", 112, ("VRRP",)),
    ("l2tp", 115, ("L2TP",)),
    ("sctp", 132, ("SCTP",)),
    ("mobility-header", 135, ("Mobility-Header",)),
    ("udplite", 136, ("UDPLite",)),
)

# setkey's own fallbacks when getprotobyname() does not know the word.
SETKEY_FALLBACKS = {"icmp6": 58, "ip4": 4}


@dataclass
class ProtocolTable:
    """Name -> number (official names and aliases, case-sensitive like getprotobyname)."""

    by_name: dict[str, int] = field(default_factory=dict)
    by_number: dict[int, str] = field(default_factory=dict)

    def add(self, name: str, number: int, aliases: tuple[str, ...] = ()) -> None:
        if not 0 <= number <= 255:  # an IP header has 8 bits for it (RFC 791, RFC 8200)
            return
        for word in (name, *aliases):
            self.by_name.setdefault(word, number)
        self.by_number.setdefault(number, name)

    def number(self, name: str) -> int | None:
        found = self.by_name.get(name)
        if found is None:
            found = SETKEY_FALLBACKS.get(name)
        return found

    def name(self, number: int) -> str:
        """The official name, or the number as text (what setkey -DP prints for 255)."""
        return self.by_number.get(number, str(number))


def builtin_table() -> ProtocolTable:
    table = ProtocolTable()
    for name, number, aliases in BUILTIN:
        table.add(name, number, aliases)
    return table


def parse_protocols(text: str) -> ProtocolTable:
    """Reads the protocols(5) format: `name number aliases... # comment`; bad lines skipped."""
    table = ProtocolTable()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not fields[1].isdigit():
            continue
        table.add(fields[0], int(fields[1]), tuple(fields[2:]))
    return table


def load_protocols(path: str = PROTOCOLS_FILE) -> ProtocolTable:
    """The system's table, or the built-in one when the file is missing or unreadable."""
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                table = parse_protocols(f.read())
        except OSError:
            table = ProtocolTable()
        if table.by_name:
            return table
    return builtin_table()


_default: ProtocolTable | None = None


def default_table() -> ProtocolTable:
    """The system table, read once."""
    global _default
    if _default is None:
        _default = load_protocols()
    return _default
