"""pyike against libreswan 4.10 (pluto, IKEv1 with ikev1-policy=accept) with its ESP and GRE in
the guest's kernel. Debian's libreswan refuses MODP1024, so both ends use MODP2048 here."""

from __future__ import annotations

import re

from tests.interop import scenarios
from tests.interop.peers import LAN_PEER, LAN_PYIKE, LibreswanPeer, configure_lan
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


def test_pluto_routes_the_tunnel_mode_subnets(env: Env) -> None:
    """The guest's half of tunnel mode alone: pluto loads the LANs' connection between the
    outer addresses and routes its outbound trap for the LANs."""
    configure_lan(env.vm)
    env.peer.configure(mode="tunnel")
    env.peer.start()
    status = env.peer.status()
    a, b = env.vm.host_addr, env.vm.guest_addr
    ends = rf'"pyike": {LAN_PEER}==={b}\S*\.\.\.{a}\S*==={LAN_PYIKE}'
    assert re.search(ends, status), status
    policies = env.vm.check("ip xfrm policy")
    # pluto's trap for the LANs is a bare template (0.0.0.0 ends, transport, reqid 0) that only
    # raises the acquire; the tunnel-mode template between the outer addresses comes with the SA
    assert re.search(rf"src {LAN_PEER} dst {LAN_PYIKE}\s*\n\s*dir out", policies), policies
    assert "proto gre" not in policies, policies


test_1_pyike_initiates = scenarios.pyike_initiates
test_2_peer_initiates = scenarios.peer_initiates
test_3_dpd_both_ways = scenarios.dpd_both_ways
test_4_initial_contact_after_restart = scenarios.initial_contact_after_restart
test_5_deletes_both_ways = scenarios.deletes_both_ways
test_6_rekey_under_ping = scenarios.rekey_under_ping
test_7_capture_opens_both_ways = scenarios.capture_opens_both_ways
test_8_hmac_sha256_both_ways = scenarios.hmac_sha256_both_ways
test_9_tunnel_mode_subnets = scenarios.tunnel_mode_subnets
test_10_gre_over_ipv6 = scenarios.gre_over_ipv6
test_11_tunnel_mode_over_ipv6 = scenarios.tunnel_mode_over_ipv6
test_11b_tunnel_mode_ipv6_lans_over_ipv6 = scenarios.tunnel_mode_ipv6_lans_over_ipv6
