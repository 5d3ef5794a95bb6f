"""The SPD's data model: selectors, actions and IPsec rules as setkey(8) and PF_KEY know them.

Numbers follow the Linux PF_KEY encoding that `setkey -DP` prints, so a dump of pyike's SPD
reads like one of a racoon host:

- `proto` is the upper-layer protocol number; 255 means any (IPSEC_ULPROTO_ANY, RFC 2367
  §2.3.4 leaves "any" to the implementation; KAME and Linux use 255).
- `sport`/`dport` are ports, 0 meaning any. For ICMP/ICMPv6/MH selectors they carry the
  type and the code, as the kernel does (setkey(8): "icmp6 type,code").
- `gre_key` is the RFC 2890 key of a `gre KEY` selector, 0 meaning any.
- `priority` is the kernel's unsigned 32-bit value: lower is matched first. setkey's
  `prio def` is 0x80000000, `high` 0x40000000, `low` 0xC0000000 (ipsec-tools libpfkey.h).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PROTO_ANY = 255  # IPSEC_ULPROTO_ANY
PROTO_ICMP = 1
PROTO_GRE = 47
PROTO_ICMPV6 = 58
PROTO_MH = 135  # IPv6 mobility header: type/code in the ports like ICMP
TYPE_CODE_PROTOCOLS = frozenset({PROTO_ICMP, PROTO_ICMPV6, PROTO_MH})

DIRECTIONS = ("in", "out", "fwd")
# Linux numbers policies 8*n + direction (XFRM_POLICY_IN=0, OUT=1, FWD=2); setkey shows it as spid.
DIRECTION_CODE = {"in": 0, "out": 1, "fwd": 2}

ACTIONS = ("discard", "none", "ipsec")
IPSEC_PROTOCOLS = ("esp", "ah", "ipcomp")
# setkey's IPsec protocols that pyike's data plane does not carry (it seals and opens ESP
# alone), named as errors name them. A policy or an SA asking for one is refused at load.
NOT_CARRIED = {"ah": "AH (RFC 4302)", "ipcomp": "IPComp (RFC 3173)"}
MODES = ("transport", "tunnel")
LEVELS = ("default", "use", "require", "unique")

PRIORITY_HIGH = 0x40000000
PRIORITY_DEFAULT = 0x80000000
PRIORITY_LOW = 0xC0000000
PRIORITY_BASES = {"high": PRIORITY_HIGH, "def": PRIORITY_DEFAULT, "low": PRIORITY_LOW}
# setkey(8): base + offset up to 1073741824, base - offset up to 1073741823.
PRIORITY_PLUS_MAX = 0x40000000
PRIORITY_MINUS_MAX = 0x3FFFFFFF

# Reqids up to this were set by hand (`unique:N`); above it the kernel made them up.
MANUAL_REQID_MAX = 0x3FFF


@dataclass(frozen=True)
class IpsecRule:
    """One `protocol/mode/src-dst/level` request of an ipsec policy (a bundle has several).

    src/dst are the SA end points (tunnel mode; None in transport mode when omitted);
    sport/dport are the NAT-T ports given as `addr[port]`, 0 when not given.
    reqid is `unique:N`'s N, or one the SPD assigned to a bare `unique`; 0 otherwise.
    """

    protocol: str
    mode: str
    src: IPAddress | None = None
    dst: IPAddress | None = None
    level: str = "default"
    reqid: int = 0
    sport: int = 0
    dport: int = 0


@dataclass(frozen=True)
class Policy:
    """One SPD entry as `spdadd` writes it.

    spid is 0 until the policy is installed in an SPD; lifetime_s/validtime_s are the
    policy's own hard lifetimes (0: none), which setkey cannot set but an IKE daemon may.
    """

    src: IPNetwork
    dst: IPNetwork
    sport: int
    dport: int
    proto: int
    direction: str
    priority: int
    action: str
    rules: tuple[IpsecRule, ...] = ()
    gre_key: int = 0
    lifetime_s: int = 0
    validtime_s: int = 0
    spid: int = 0

    def selector(self) -> tuple:
        """What identifies the policy for spdupdate/spddelete: selector and direction.

        The priority and the action are not part of it (Linux compares the selector only).
        """
        return (self.direction, self.src, self.dst, self.sport, self.dport, self.proto,
                self.gre_key)


def priority_text(priority: int) -> str:
    """The priority as `setkey -DP` prints it: '', 'prio def', 'prio high + 5', ...

    Mirrors ipsec-tools' dump: the nearest base is chosen by thirds of the range, and the
    offset's sign is shown the way it is typed (a '+' means matched earlier).
    """
    if priority == 0:
        return ""
    if priority < PRIORITY_DEFAULT // 4 * 3:
        name, base = "high", PRIORITY_HIGH
    elif priority < PRIORITY_DEFAULT // 4 * 5:
        name, base = "def", PRIORITY_DEFAULT
    else:
        name, base = "low", PRIORITY_LOW
    offset = base - priority
    if offset == 0:
        return f"prio {name}"
    return f"prio {name} {'+' if offset > 0 else '-'} {abs(offset)}"
