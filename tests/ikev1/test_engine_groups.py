"""Every Diffie-Hellman group racoon offers (MODP 1, 2, 5, 14-18; ECP 19-21), in phase 1 and PFS."""

from __future__ import annotations

import pytest

from ikev1.events import Phase1Up, Phase2Up
from ikev1.policy import Phase1Proposal

from .harness import A, B, events, gre_selector, of_type, pair, pump


def _negotiate(group: int) -> None:
    props = (Phase1Proposal("aes", "sha256", group, key_length=256, lifetime_s=86400),)
    kw = {"proposals": props, "sainfo": {"pfs_group": group}}
    a, b = pair(kw, kw)
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    ea, eb = events(a), events(b)
    assert [e.dh_group for e in of_type(ea, Phase1Up)] == [group]
    (ua,), (ub,) = of_type(ea, Phase2Up), of_type(eb, Phase2Up)
    assert ua.pfs_group == ub.pfs_group == group
    assert ua.outbound == ub.inbound and ua.inbound == ub.outbound


@pytest.mark.parametrize("group", [1, 2, 5, 14, 15, 16, 17, 19, 20, 21])
def test_group(group):
    _negotiate(group)


def test_group_18_modp_8192():
    _negotiate(18)  # the slow one, kept to a single test
