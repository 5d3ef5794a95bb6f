"""The text after `-P`: direction, priority, action and IPsec rules (ipsec_set_policy(3)).

    in|out|fwd [prio|priority (N | -N | low|def|high [(+|-) N])] discard|none|ipsec RULE...
    RULE = esp|ah|ipcomp / transport|tunnel [/ [SRC[[port]]-DST[[port]]] [/ [LEVEL]]]
    LEVEL = default | use | require | unique[:N]

What pyike's data plane cannot carry is refused here, where the token's position is known, so
that every reader of setkey text (the daemon's start and reload, `pyike -t`, pyike-setkey and
the control socket) refuses it alike: AH and IPComp rules, and bundles (more than one rule).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from spd.errors import SourceText
from spd.lexer import Cursor, Token, tokenize_policy
from spd.policy import (
    ACTIONS,
    DIRECTIONS,
    IPSEC_PROTOCOLS,
    LEVELS,
    MODES,
    NOT_CARRIED,
    PRIORITY_BASES,
    PRIORITY_DEFAULT,
    PRIORITY_MINUS_MAX,
    PRIORITY_PLUS_MAX,
    IPAddress,
    IpsecRule,
)

# setkey(8): a bare priority offset ranges over -2147483647 .. 2147483648 around `def`.
_BARE_PLUS_MAX = 2**31
_BARE_MINUS_MAX = 2**31 - 1
_REQID_MAX = 32767  # setkey(8): unique:N with N between 1 and 32767


@dataclass(frozen=True)
class PolicySpec:
    direction: str
    priority: int
    action: str
    rules: tuple[IpsecRule, ...]


def parse_policy_spec(src: SourceText, region: Token, *, bare_direction: bool = False
                      ) -> PolicySpec:
    """Parses one `-P` region. bare_direction allows `-P out;` (what spddelete needs)."""
    cur = Cursor(src, tokenize_policy(src, region), eof_text=";")
    tok = cur.take()
    if tok.kind != "word" or tok.text not in DIRECTIONS:
        raise cur.fail(tok, "expected a direction: in, out or fwd")
    direction = tok.text
    if bare_direction and cur.peek().kind == "eof":
        # ipsec_set_policy(3) gives a bare direction priority 0 and action discard.
        return PolicySpec(direction, 0, "discard", ())
    priority = _priority(cur)
    tok = cur.take()
    if tok.kind != "word" or tok.text not in ACTIONS:
        if tok.kind == "word" and tok.text in ("bypass", "entrust"):
            raise cur.fail(tok, "policy action not supported (use discard, none or ipsec)")
        raise cur.fail(tok, "expected an action: discard, none or ipsec")
    action = tok.text
    rules: list[IpsecRule] = []
    while cur.peek().kind != "eof":
        if action != "ipsec":
            raise cur.fail(cur.peek(), f"a '{action}' policy takes no IPsec rules")
        if rules:
            # the kernel would apply the rules one inside the other (e.g. ESP then AH); pyike
            # seals a packet once, so the second rule would be silently left out
            raise cur.fail(cur.peek(), "a bundle (more than one IPsec rule in a policy) is not "
                                       "supported: pyike's data plane applies one ESP rule")
        rules.append(_rule(cur, direction))
    if action == "ipsec" and not rules:
        raise cur.fail(cur.peek(), "an ipsec policy needs a protocol/mode/src-dst/level rule")
    return PolicySpec(direction, priority, action, tuple(rules))


def _priority(cur: Cursor) -> int:
    """The kernel's priority value; no `prio` means `def` (ipsec-tools policy_parse.y)."""
    tok = cur.peek()
    if tok.kind != "word" or tok.text not in ("prio", "priority"):
        return PRIORITY_DEFAULT
    cur.take()
    if cur.accept("-"):
        # A negative offset places the policy later: a larger kernel value.
        return PRIORITY_DEFAULT + cur.number(cur.take(), _BARE_MINUS_MAX, "priority offset")
    tok = cur.take()
    if tok.kind == "word" and tok.text in PRIORITY_BASES:
        base = PRIORITY_BASES[tok.text]
        if cur.accept("+"):
            return base - cur.number(cur.take(), PRIORITY_PLUS_MAX, "priority offset")
        if cur.accept("-"):
            return base + cur.number(cur.take(), PRIORITY_MINUS_MAX, "priority offset")
        return base
    if tok.kind == "+":
        raise cur.fail(tok, "a bare priority offset takes no '+' (write prio N or prio -N)")
    return PRIORITY_DEFAULT - cur.number(tok, _BARE_PLUS_MAX, "priority offset")


def _rule(cur: Cursor, direction: str) -> IpsecRule:
    tok = cur.take()
    if tok.kind != "word" or tok.text not in IPSEC_PROTOCOLS:
        raise cur.fail(tok, "expected an IPsec protocol: esp, ah or ipcomp")
    protocol = tok.text
    if protocol in NOT_CARRIED:
        raise cur.fail(tok, f"{NOT_CARRIED[protocol]} is not supported: pyike's data plane "
                            "carries ESP only")
    if not cur.accept("/"):
        raise cur.fail(cur.peek(), "expected '/' and a mode after the protocol")
    tok = cur.take()
    if tok.kind != "word" or tok.text not in MODES:
        raise cur.fail(tok, "expected a mode: transport or tunnel")
    mode = tok.text
    src = dst = None
    sport = dport = 0
    level, reqid = "default", 0
    if cur.accept("/"):
        if cur.peek().kind == "word" and not _is_level(cur.peek().text):
            src, sport, dst, dport = _endpoints(cur, direction)
        if cur.accept("/") and cur.peek().kind == "word" and _is_level(cur.peek().text):
            level, reqid = _level(cur)
    if mode == "tunnel" and (src is None or dst is None):
        raise cur.fail(tok, "tunnel mode needs the end points: tunnel/SRC-DST/")
    return IpsecRule(protocol, mode, src, dst, level, reqid, sport, dport)


def _is_level(word: str) -> bool:
    return word in LEVELS or word.startswith("unique:")


def _level(cur: Cursor) -> tuple[str, int]:
    tok = cur.take()
    if tok.text in LEVELS:
        return tok.text, 0
    digits = tok.text[len("unique:"):]
    if not digits.isdigit() or not 1 <= int(digits) <= _REQID_MAX:
        raise cur.fail(tok, f"unique:N needs N between 1 and {_REQID_MAX}")
    return "unique", int(digits)


def _endpoints(cur: Cursor, direction: str
               ) -> tuple[IPAddress | None, int, IPAddress | None, int]:
    first = cur.take()
    if first.text in ("me", "any"):
        # `me-any` (out) / `any-me` (in): no explicit end points, as ipsec_set_policy(3) has it.
        if not cur.accept("-"):
            raise cur.fail(cur.peek(), "expected '-' between the end points")
        second = cur.take()
        expected = ("me", "any") if direction == "out" else ("any", "me")
        if (first.text, second.text) != expected:
            raise cur.fail(first, f"'{first.text}-{second.text}' does not fit direction "
                                  f"{direction}")
        return None, 0, None, 0
    src = _address(cur, first)
    sport = _port(cur)
    if not cur.accept("-"):
        raise cur.fail(cur.peek(), "expected '-' between the end points")
    dst = _address(cur, cur.take())
    dport = _port(cur)
    if src.version != dst.version:
        raise cur.fail(first, "the end points are of different address families")
    return src, sport, dst, dport


def _address(cur: Cursor, tok: Token) -> IPAddress:
    if "%" in tok.text:
        raise cur.fail(tok, "scoped addresses (%zone) are not supported")
    try:
        return ipaddress.ip_address(tok.text)
    except ValueError:
        raise cur.fail(tok, "expected a numeric IP address") from None


def _port(cur: Cursor) -> int:
    tok = cur.peek()
    if tok.kind != "port":
        return 0
    cur.take()
    value = int(tok.text)
    if value > 65535:
        raise cur.fail(tok, "port out of range (at most 65535)")
    return value
