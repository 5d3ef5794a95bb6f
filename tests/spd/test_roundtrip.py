"""Generated policies: format then parse gives them back; lookup agrees with a plain model."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from spd.db import SPD
from spd.dump import format_setkey, policy_head, rule_text
from spd.parse import parse_setkey
from spd.policy import (
    MANUAL_REQID_MAX,
    PROTO_ANY,
    PROTO_GRE,
    TYPE_CODE_PROTOCOLS,
    IpsecRule,
    Policy,
    priority_text,
)
from spd.protocols import builtin_table

TABLE = builtin_table()
PROTOCOLS = [PROTO_ANY, 1, 6, 17, PROTO_GRE, 50, 58, 132, 135, 200]
BOUNDED = settings(max_examples=150, deadline=None)


@st.composite
def networks(draw, version: int):
    network = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    bits = 32 if version == 4 else 128
    return network((draw(st.integers(0, 2**bits - 1)), draw(st.integers(0, bits))),
                   strict=False)


@st.composite
def addresses(draw, version: int):
    if version == 4:
        return ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    return ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))


@st.composite
def rules(draw, version: int):
    mode = draw(st.sampled_from(["transport", "tunnel"]))
    src = dst = None
    sport = dport = 0
    if mode == "tunnel" or draw(st.booleans()):
        src, dst = draw(addresses(version)), draw(addresses(version))
        if draw(st.booleans()):
            sport, dport = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    level = draw(st.sampled_from(["default", "use", "require", "unique"]))
    reqid = draw(st.integers(1, MANUAL_REQID_MAX)) if level == "unique" and draw(
        st.booleans()) else 0
    return IpsecRule("esp", mode, src, dst, level, reqid, sport, dport)  # what pyike carries


@st.composite
def policies(draw):
    version = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from(PROTOCOLS))
    sport = dport = gre_key = 0
    if proto == PROTO_GRE:
        gre_key = draw(st.integers(0, 2**32 - 1))
    elif proto in TYPE_CODE_PROTOCOLS:
        sport, dport = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    else:
        sport, dport = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    action = draw(st.sampled_from(["discard", "none", "ipsec"]))
    rule = (draw(rules(version)),) if action == "ipsec" else ()  # no bundles: pyike has none
    return Policy(draw(networks(version)), draw(networks(version)), sport, dport, proto,
                  draw(st.sampled_from(["in", "out", "fwd"])),
                  draw(st.integers(0, 2**32 - 1)), action, rule, gre_key)


@BOUNDED
@given(policies(), st.sampled_from(["spdadd", "spdupdate"]))
def test_format_then_parse_gives_the_policy_back(policy, verb):
    text = format_setkey(policy, verb, protocols=TABLE)
    (cmd,) = parse_setkey(text, "gen.conf", protocols=TABLE).commands
    assert cmd.verb == verb
    assert cmd.policy == policy, text


@BOUNDED
@given(policies())
def test_dump_policy_lines_read_back_as_a_policy(policy):
    """What `setkey -DPp` prints under the selector is itself valid `-P` text."""
    lines = [policy_head(policy)] + [rule_text(r, with_ports=True) for r in policy.rules]
    text = f"spdadd 10.0.0.1 10.0.0.2 any -P {' '.join(lines)};"
    if policy.priority == 0:  # printed without `prio`, which reads back as `def`
        assert priority_text(0) == ""
        return
    back = parse_setkey(text, "dump.conf").commands[0].policy
    assert (back.direction, back.priority, back.action) == (
        policy.direction, policy.priority, policy.action)
    assert back.rules == policy.rules


def reference_lookup(installed: list[Policy], direction, src, dst, proto, sport, dport, key):
    """The SPD's documented rule, written plainly with ipaddress objects."""
    order = sorted(enumerate(installed), key=lambda item: (item[1].priority, item[0]))
    for _, p in order:
        if p.direction != direction or p.src.version != src.version:
            continue
        if src not in p.src or dst not in p.dst:
            continue
        if p.proto not in (PROTO_ANY, proto):
            continue
        if (p.sport and p.sport != sport) or (p.dport and p.dport != dport):
            continue
        if p.gre_key and p.gre_key != (key or 0):
            continue
        return p
    return None


@st.composite
def packets_for(draw, candidates: list[Policy]):
    """A packet aimed inside one of the policies most of the time, so matches happen."""
    if candidates and draw(st.integers(0, 4)):
        p = draw(st.sampled_from(candidates))
        src = p.src[draw(st.integers(0, p.src.num_addresses - 1))]
        dst = p.dst[draw(st.integers(0, p.dst.num_addresses - 1))]
        proto = p.proto if p.proto != PROTO_ANY else draw(st.sampled_from(PROTOCOLS[1:]))
        sport = p.sport if draw(st.booleans()) else draw(st.integers(0, 65535))
        dport = p.dport if draw(st.booleans()) else draw(st.integers(0, 65535))
        key = p.gre_key if draw(st.booleans()) else draw(st.none() | st.integers(0, 9))
        return p.direction, src, dst, proto, sport, dport, key
    version = draw(st.sampled_from([4, 6]))
    src, dst = draw(addresses(version)), draw(addresses(version))
    return (draw(st.sampled_from(["in", "out", "fwd"])), src, dst,
            draw(st.sampled_from(PROTOCOLS[1:])), draw(st.integers(0, 65535)),
            draw(st.integers(0, 65535)), draw(st.none() | st.integers(0, 9)))


@BOUNDED
@given(st.data())
def test_lookup_agrees_with_the_reference_model(data):
    generated = data.draw(st.lists(policies(), max_size=8))
    spd = SPD()
    installed: list[Policy] = []
    for p in generated:
        p = Policy(p.src, p.dst, p.sport, p.dport, p.proto, p.direction, p.priority, "none",
                   (), p.gre_key)  # the action does not matter to matching
        if any(q.selector() == p.selector() for q in installed):
            continue
        installed.append(spd.add(p, now=1.0))
    for _ in range(10):
        direction, src, dst, proto, sport, dport, key = data.draw(packets_for(installed))
        want = reference_lookup(installed, direction, src, dst, proto, sport, dport, key)
        got = spd.lookup(direction, src.packed, dst.packed, proto, sport, dport, key)
        assert got == want
        assert spd.lookup(direction, str(src), str(dst), proto, sport, dport, key) == want
