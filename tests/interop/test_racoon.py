"""pyike against racoon (ipsec-tools) with the seed article's own files, when a racoon build is
supplied: PYIKE_RACOON_PREFIX names an install prefix holding sbin/racoon, sbin/setkey and
bin/racoonctl, linked against this system's libc and libcrypto. Debian no longer packages racoon
and the project never downloads or builds it."""

from __future__ import annotations

import pytest

from tests.interop import scenarios
from tests.interop.peers import RACOON_BINARIES, RacoonPeer, racoon_prefix
from tests.interop.scenarios import Env

PEER = RacoonPeer

pytestmark = pytest.mark.skipif(
    racoon_prefix() is None,
    reason="set PYIKE_RACOON_PREFIX to an install prefix holding " + ", ".join(RACOON_BINARIES),
)


def test_racoon_starts_with_the_seed_policies(env: Env) -> None:
    env.peer.configure()
    env.peer.start()
    policies = env.vm.check("setkey -DP")
    a, b = env.vm.host_addr, env.vm.guest_addr
    assert f"{b}[any] {a}[any] gre" in policies or f"{b} {a} gre" in policies, policies
    assert "esp/transport//require" in policies, policies


test_1_pyike_initiates = scenarios.pyike_initiates
test_2_peer_initiates = scenarios.peer_initiates
test_3_dpd_both_ways = scenarios.dpd_both_ways
test_4_initial_contact_after_restart = scenarios.initial_contact_after_restart
test_5_deletes_both_ways = scenarios.deletes_both_ways
test_6_rekey_under_ping = scenarios.rekey_under_ping
test_7_capture_opens_both_ways = scenarios.capture_opens_both_ways
