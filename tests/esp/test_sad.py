"""The SAD: lookups, the choice among outbound SAs, removal and lifetime events."""

from __future__ import annotations

import os

from esp.sa import SEQ_MAX, EspSA, Lifetime
from esp.sad import SAD

A, B, C = "198.18.0.1", "198.18.0.2", "198.18.0.3"


def make(spi: int, src: str, dst: str, direction: str, now: float = 0.0, **kw) -> EspSA:
    return EspSA(
        spi, src, dst, "aes-cbc", os.urandom(16), "hmac-sha1", os.urandom(20),
        direction=direction, now=now, **kw,
    )


def test_inbound_by_spi_and_outbound_by_pair():
    sad = SAD()
    sa_in = make(0x1000, B, A, "in")
    sa_out = make(0x2000, A, B, "out")
    sa_other = make(0x3000, A, C, "out")
    for sa in (sa_in, sa_out, sa_other):
        sad.add(sa)
    assert sad.inbound(0x1000) is sa_in
    assert sad.inbound(0x2000) is None  # outbound SPIs are not inbound lookups
    assert sad.outbound(A, B) is sa_out
    assert sad.outbound(A, C) is sa_other
    assert sad.outbound(B, A) is None
    assert sad.outbound("198.018.0.1", B) is None  # ambiguous leading zeros: no match
    assert sad.outbound("not an address", B) is None
    assert list(sad) == [sa_in, sa_out, sa_other]
    assert len(sad) == 3


def test_ipv6_addresses_are_canonical():
    sad = SAD()
    sa = make(0x2000, "2001:db8::1", "2001:0db8:0:0::2", "out")
    sad.add(sa)
    assert sad.outbound("2001:db8::1", "2001:db8::2") is sa
    assert sad.outbound("2001:0db8::1", "2001:db8:0::2") is sa


def test_newest_mature_outbound_wins_and_dying_is_a_fallback():
    sad = SAD()
    old = make(0x2000, A, B, "out", now=0.0, lifetime=Lifetime(soft_s=100, hard_s=200))
    new = make(0x2001, A, B, "out", now=50.0, lifetime=Lifetime(soft_s=100, hard_s=200))
    sad.add(new)
    sad.add(old)  # installation order does not matter, creation time does
    assert sad.outbound(A, B) is new
    sad.remove(new)
    assert sad.outbound(A, B) is old
    sad.add(new)
    events = sad.expire(120.0)  # old is dying now, new still mature
    assert events == [(old, "soft")]
    assert sad.outbound(A, B) is new
    sad.remove(0x2001)
    assert sad.outbound(A, B) is old  # dying still serves while nothing better exists
    assert sad.expire(200.0) == [(old, "hard")]
    assert sad.outbound(A, B) is None  # dead serves nothing


def test_expire_reports_each_transition_once_and_soft_before_hard():
    sad = SAD()
    sa = make(0x1000, B, A, "in", now=10.0, lifetime=Lifetime(soft_s=5, hard_s=8))
    sad.add(sa)
    assert sad.expire(14.0) == []
    assert sad.expire(15.0) == [(sa, "soft")]
    assert sad.expire(16.0) == []
    assert sad.expire(18.0) == [(sa, "hard")]
    assert sad.expire(100.0) == []
    jumper = make(0x1001, B, A, "in", now=0.0, lifetime=Lifetime(soft_s=5, hard_s=8))
    sad.add(jumper)
    assert sad.expire(50.0) == [(jumper, "soft"), (jumper, "hard")]


def test_byte_lifetime_and_sequence_exhaustion_are_expiry_events():
    sad = SAD()
    sa = make(0x2000, A, B, "out", lifetime=Lifetime(soft_bytes=100, hard_bytes=1000))
    sad.add(sa)
    sa.seal(b"z" * 150, 47, 0.0)
    assert sad.expire(0.0) == [(sa, "soft")]
    seq_sa = make(0x2001, A, C, "out")
    sad.add(seq_sa)
    seq_sa.seq = SEQ_MAX
    assert sad.expire(0.0) == [(seq_sa, "soft"), (seq_sa, "hard")]
    assert sad.outbound(A, C) is None


def test_remove_by_spi_and_direction():
    sad = SAD()
    ours = make(0x4242, B, A, "in")
    theirs = make(0x4242, A, B, "out")  # the peer happened to pick the same SPI
    sad.add(ours)
    sad.add(theirs)
    assert sad.remove(0x4242, "out") == [theirs]
    assert sad.inbound(0x4242) is ours
    assert sad.outbound(A, B) is None
    assert sad.remove(0x4242) == [ours]
    assert sad.remove(0x4242) == []
    assert len(sad) == 0


def test_inbound_spi_reuse_replaces():
    sad = SAD()
    first, second = make(0x1000, B, A, "in"), make(0x1000, B, A, "in")
    sad.add(first)
    sad.add(second)
    assert sad.inbound(0x1000) is second
    assert list(sad) == [second]
    sad.flush()
    assert sad.inbound(0x1000) is None and len(sad) == 0
