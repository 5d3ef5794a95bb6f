"""pyike against strongSwan 5.9 (charon, IKEv1) with its ESP and GRE in the guest's kernel."""

from __future__ import annotations

import re

from tests.interop import scenarios
from tests.interop.peers import (
    LAN_DEVICE,
    LAN_HOST_PEER,
    LAN_PEER,
    LAN_PYIKE,
    StrongswanPeer,
    configure_lan,
)
from tests.interop.scenarios import Env

PEER = StrongswanPeer


def test_charon_starts_and_routes_the_gre_policy(env: Env) -> None:
    env.peer.configure()
    env.peer.start()
    status = env.peer.status()
    assert "IKEv1" in status and "TRANSPORT" in status, status
    policies = env.vm.check("ip xfrm policy")
    a, b = env.vm.host_addr, env.vm.guest_addr
    assert f"src {b}/32 dst {a}/32 proto gre" in policies, policies
    assert f"src {a}/32 dst {b}/32 proto gre" in policies, policies


def test_charon_routes_the_tunnel_mode_subnets(env: Env) -> None:
    """The guest's half of tunnel mode alone: lan0 holds the guest's LAN host, and charon
    loads and routes the LANs' connection in tunnel mode between the outer addresses."""
    configure_lan(env.vm)
    env.peer.configure(mode="tunnel")
    env.peer.start()
    assert f"inet {LAN_HOST_PEER}/24" in env.vm.check(f"ip -o -4 addr show dev {LAN_DEVICE}")
    status = env.peer.status()
    assert "IKEv1" in status and "TUNNEL" in status, status
    assert f"{LAN_PEER} === {LAN_PYIKE}" in status, status
    policies = env.vm.check("ip xfrm policy")
    a, b = env.vm.host_addr, env.vm.guest_addr
    assert re.search(rf"src {LAN_PEER} dst {LAN_PYIKE}\s*\n\s*dir out", policies), policies
    assert f"tmpl src {b} dst {a}" in policies, policies
    assert "mode tunnel" in policies and "proto gre" not in policies, policies


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
