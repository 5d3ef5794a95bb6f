"""pyike against libreswan 4.10 (pluto, IKEv1 with ikev1-policy=accept) with its ESP and GRE in
the guest's kernel. Debian's libreswan refuses MODP1024, so both ends use MODP2048 here."""

from __future__ import annotations

from tests.interop import scenarios
from tests.interop.peers import LibreswanPeer
from tests.interop.scenarios import Env

PEER = LibreswanPeer


def test_pluto_starts_and_routes_the_gre_policy(env: Env) -> None:
    env.peer.configure()
    env.peer.start()
    status = env.peer.status()
    assert "ikev1-policy=accept" in status and '"pyike"' in status, status
    policies = env.vm.check("ip xfrm policy")
    a, b = env.vm.host_addr, env.vm.guest_addr
    # pluto routes only the outbound trap; the inbound policy comes with the first SA.
    assert f"src {b}/32 dst {a}/32 proto gre" in policies, policies


test_1_pyike_initiates = scenarios.pyike_initiates
test_2_peer_initiates = scenarios.peer_initiates
test_3_dpd_both_ways = scenarios.dpd_both_ways
test_4_initial_contact_after_restart = scenarios.initial_contact_after_restart
test_5_deletes_both_ways = scenarios.deletes_both_ways
test_6_rekey_under_ping = scenarios.rekey_under_ping
test_7_capture_opens_both_ways = scenarios.capture_opens_both_ways
test_8_hmac_sha256_both_ways = scenarios.hmac_sha256_both_ways
