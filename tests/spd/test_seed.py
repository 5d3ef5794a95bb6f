"""The setkey examples of the GRE-over-IPsec article pyike reproduces, and setkey(8)'s own.

The article's `setkey -DP` output is copied below as printed there (tabs shown as 8 spaces).
Example addresses are only parsed and looked up, never sent to.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time

import pytest

from spd.db import SPD
from spd.dump import format_spd
from spd.parse import SetkeyError, parse_setkey
from spd.policy import PRIORITY_DEFAULT, PROTO_ANY, IpsecRule
from spd.protocols import builtin_table

SEED_SETKEY_CONF = """\
flush;
spdflush;


spdadd 1.1.1.1/32[0] 2.2.2.2/32[0] gre -P out ipsec esp/transport//require;
spdadd 2.2.2.2/32[0] 1.1.1.1/32[0] gre -P in ipsec esp/transport//require;
"""

SEED_DUMP = """\
1.1.1.1 2.2.2.2 gre
        out prio def ipsec
        esp/transport//require
        created: Jan 12 21:43:16 2015  lastused: Jan 13 04:07:40 2015
        lifetime: 86400(s) validtime: 0(s)
        spid=377 seq=1 pid=21300
        refcnt=3
2.2.2.2 1.1.1.1 gre
        in prio def ipsec
        esp/transport//require
        created: Jan 12 21:43:16 2015  lastused: Jan 13 04:07:45 2015
        lifetime: 86400(s) validtime: 0(s)
        spid=368 seq=2 pid=21300
        refcnt=3
"""

NATT_EXAMPLE = """\
spdadd 10.0.11.0/24[any] 10.0.11.33/32[any] any -P out ipsec
esp/tunnel/192.168.0.1[4500]-192.168.1.2[30000]/require ;
"""

GRE_KEY_EXAMPLE = "spdadd 0.0.0.0 0.0.0.0 gre 1234 ipsec esp/transport//require;\n"

ICMP6_EXAMPLE = "spdadd ::/0 ::/0 icmp6 135,0 -P in none;\n"

GRE = 47
A = bytes([1, 1, 1, 1])
B = bytes([2, 2, 2, 2])


def local_epoch(y: int, mo: int, d: int, h: int, mi: int, s: int) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))


def masked(line: str) -> str:
    """A dump line with the dumping process's pid and the kernel's absolute spid hidden."""
    line = re.sub(r"pid=\d+", "pid=*", line)
    return re.sub(r"spid=\d+", "spid=*", line)


def test_seed_file_parses_to_the_gre_transport_pair():
    sk = parse_setkey(SEED_SETKEY_CONF, "setkey.conf")
    verbs = [type(c).__name__ for c in sk.commands]
    assert verbs == ["Flush", "SpdFlush", "SpdCommand", "SpdCommand"]
    out, inn = (c.policy for c in sk.commands[2:])
    assert (out.direction, inn.direction) == ("out", "in")
    assert out.src == ipaddress.ip_network("1.1.1.1/32")
    assert out.dst == ipaddress.ip_network("2.2.2.2/32")
    assert (out.sport, out.dport, out.proto, out.gre_key) == (0, 0, GRE, 0)
    assert out.priority == PRIORITY_DEFAULT
    assert out.action == "ipsec"
    assert out.rules == (IpsecRule("esp", "transport", None, None, "require", 0),)
    assert inn.src == out.dst and inn.dst == out.src
    assert sk.commands[2].line == 5 and sk.commands[3].line == 6


def test_seed_dump_is_reproduced_line_by_line():
    """The state behind the article's dump: the pair re-installed by the IKE daemon with the
    phase 2 lifetime (86400 s, its sainfo), `in` first (its spid is the lower), each policy
    held by two SAs. Everything but the pid and the absolute spid must match."""
    created = local_epoch(2015, 1, 12, 21, 43, 16)
    spd = SPD()
    sk = parse_setkey(SEED_SETKEY_CONF, "setkey.conf")
    spd.apply(sk, now=created - 60)
    out, inn = (c.policy for c in sk.commands[2:])
    installed = {}
    for p in (inn, out):
        installed[p.direction] = spd.update(dataclasses.replace(p, lifetime_s=86400), created)
        spd.hold(installed[p.direction].spid)
        spd.hold(installed[p.direction].spid)
    spd.touch(installed["out"].spid, local_epoch(2015, 1, 13, 4, 7, 40))
    spd.touch(installed["in"].spid, local_epoch(2015, 1, 13, 4, 7, 45))

    got = format_spd(spd, pid=21300).expandtabs(8).splitlines()
    want = SEED_DUMP.splitlines()
    assert [masked(x) for x in got] == [masked(x) for x in want]
    # Linux numbers policies 8n + direction: 377 = 8*47 + 1 (out), 368 = 8*46 + 0 (in).
    spids = [int(m) for m in re.findall(r"spid=(\d+)", "\n".join(got))]
    assert [s % 8 for s in spids] == [377 % 8, 368 % 8]


def test_seed_file_applied_fresh_dumps_newest_first_with_idle_counters():
    spd = SPD()
    spd.apply(parse_setkey(SEED_SETKEY_CONF, "setkey.conf"), now=local_epoch(2015, 1, 12, 21, 0, 0))
    text = format_spd(spd, pid=7)
    # The `in` policy, added last, comes first.
    assert text.startswith("2.2.2.2 1.1.1.1 gre\n\tin prio def ipsec\n\tesp/transport//require\n")
    assert "1.1.1.1 2.2.2.2 gre\n\tout prio def ipsec\n\tesp/transport//require\n" in text
    assert text.count("\tcreated: Jan 12 21:00:00 2015  lastused: " + " " * 20 + "\n") == 2
    assert text.count("\tlifetime: 0(s) validtime: 0(s)\n") == 2
    assert "\tspid=8 seq=1 pid=7\n\trefcnt=1\n" in text
    assert "\tspid=1 seq=2 pid=7\n\trefcnt=1\n" in text


def test_seed_policies_select_gre_between_the_end_points_only():
    spd = SPD()
    spd.apply(parse_setkey(SEED_SETKEY_CONF, "setkey.conf"), now=1.0)
    out = spd.lookup("out", A, B, GRE)
    inn = spd.lookup("in", B, A, GRE)
    assert out is not None and out.direction == "out" and out.rules[0].level == "require"
    assert inn is not None and inn.direction == "in"
    assert spd.lookup("out", A, B, 6, 1000, 22) is None  # not GRE
    assert spd.lookup("out", B, A, GRE) is None  # wrong way round for `out`
    assert spd.lookup("in", A, B, GRE) is None
    assert spd.lookup("out", A, bytes([2, 2, 2, 3]), GRE) is None  # /32 means that host
    assert spd.lookup("out", A, B, GRE, gre_key=77) is out  # no key in the selector: any key


def test_natt_example_keeps_the_encapsulation_ports():
    sk = parse_setkey(NATT_EXAMPLE, "setkey.conf")
    (cmd,) = sk.commands
    p = cmd.policy
    assert (cmd.line, cmd.column) == (1, 1)
    assert p.src == ipaddress.ip_network("10.0.11.0/24")
    assert p.dst == ipaddress.ip_network("10.0.11.33/32")
    assert (p.sport, p.dport, p.proto) == (0, 0, PROTO_ANY)
    assert p.rules == (IpsecRule("esp", "tunnel", ipaddress.ip_address("192.168.0.1"),
                                 ipaddress.ip_address("192.168.1.2"), "require", 0,
                                 4500, 30000),)
    spd = SPD()
    spd.apply(sk, now=0)
    text = format_spd(spd, pid=1, protocols=builtin_table())
    # setkey -DP prints no ports in the rule; -DPp does.
    assert text.startswith("10.0.11.0/24[any] 10.0.11.33[any] 255\n\tout prio def ipsec\n"
                           "\tesp/tunnel/192.168.0.1-192.168.1.2/require\n")
    ported = format_spd(spd, pid=1, with_ports=True, protocols=builtin_table())
    assert "\tesp/tunnel/192.168.0.1[4500]-192.168.1.2[30000]/require\n" in ported
    (installed,) = spd.policies("out")
    for proto, ports in ((6, (40000, 443)), (17, (5000, 53)), (GRE, (0, 0))):
        assert spd.lookup("out", "10.0.11.200", "10.0.11.33", proto, *ports) is installed
    assert spd.lookup("out", "10.0.12.1", "10.0.11.33", 6, 1, 2) is None  # outside the /24
    assert spd.lookup("out", "10.0.11.200", "10.0.11.34", 6, 1, 2) is None
    assert spd.lookup("in", "10.0.11.200", "10.0.11.33", 6, 1, 2) is None


def test_gre_key_as_a_number_is_refused_like_setkey():
    """setkey(8) says a GRE key may be "a plain number", but setkey's lexer reads 1234 as a
    number where the grammar wants a string: setkey refuses the line, and so does pyike, naming
    the dotted quad to write instead."""
    text = GRE_KEY_EXAMPLE.replace("gre 1234 ipsec", "gre 1234 -P out ipsec")
    with pytest.raises(SetkeyError) as err:
        parse_setkey(text, "setkey.conf")
    assert (err.value.line, err.value.token) == (1, "1234") and "0.0.4.210" in err.value.msg


def test_gre_key_example_without_direction_is_refused_like_setkey():
    """setkey(8) prints this example with a decimal key and without `-P`; setkey itself
    refuses it at the key (its lexer reads 1234 as a number where a string is wanted), and
    with the key as a dotted quad at the action (a policy needs `-P DIRECTION`). pyike
    refuses it at the same two places, one after the other."""
    for text, col, token, words in (
            (GRE_KEY_EXAMPLE, 28, "1234", "dotted quad"),
            (GRE_KEY_EXAMPLE.replace("1234", "0.0.4.210"), 38, "ipsec", "-P")):
        with pytest.raises(SetkeyError) as err:
            parse_setkey(text, "setkey.conf")
        e = err.value
        assert (e.file, e.line, e.col, e.token) == ("setkey.conf", 1, col, token)
        assert words in e.msg
        assert str(e).startswith(f"setkey.conf:1:{col}: ")


def test_gre_key_example_with_direction_selects_that_key():
    text = GRE_KEY_EXAMPLE.replace("gre 1234 ipsec", "gre 0.0.4.210 -P out ipsec")
    sk = parse_setkey(text, "setkey.conf")
    p = sk.commands[0].policy
    assert (p.proto, p.gre_key, p.sport, p.dport) == (GRE, 1234, 0, 0)
    # No prefix length means the whole address: 0.0.0.0 here is a host, not a wildcard.
    assert p.src.prefixlen == 32 and p.dst.prefixlen == 32
    spd = SPD()
    spd.apply(sk, now=0)
    zero = bytes(4)
    assert spd.lookup("out", zero, zero, GRE, gre_key=1234) is not None
    assert spd.lookup("out", zero, zero, GRE, gre_key=1235) is None
    assert spd.lookup("out", zero, zero, GRE) is None  # a keyless packet
    assert spd.lookup("out", A, B, GRE, gre_key=1234) is None
    assert format_spd(spd, pid=1).startswith("0.0.0.0 0.0.0.0 gre 0.0.4.210\n")


def test_icmp6_example_exempts_neighbour_solicitation():
    sk = parse_setkey(ICMP6_EXAMPLE, "setkey.conf")
    p = sk.commands[0].policy
    assert (p.proto, p.sport, p.dport, p.direction, p.action) == (58, 135, 0, "in", "none")
    assert p.src == ipaddress.ip_network("::/0")
    spd = SPD()
    spd.apply(sk, now=0)
    assert spd.lookup("in", "fe80::1", "ff02::1:ff00:2", 58, 135, 0) is not None
    assert spd.lookup("in", "fe80::1", "ff02::1:ff00:2", 58, 136, 0) is None  # advertisement
    assert spd.lookup("in", "10.0.0.1", "10.0.0.2", 1, 135, 0) is None  # IPv4 never matches
    text = format_spd(spd, pid=1, protocols=builtin_table())
    assert text.startswith("::/0 ::/0 ipv6-icmp 135,0\n\tin prio def none\n\tcreated: ")
