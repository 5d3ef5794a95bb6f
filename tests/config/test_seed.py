"""The racoon.conf, setkey.conf and psk.txt of the GRE-over-IPsec article, both endpoints."""

from __future__ import annotations

import ipaddress

import pytest

import pyike.config
from ikev1.policy import DpdSettings, Identity, Phase1Proposal

ENDPOINTS = {
    "seed_a": ("1.1.1.1", "2.2.2.2", "10.1.1.1"),
    "seed_b": ("2.2.2.2", "1.1.1.1", "10.1.1.2"),
}


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_seed_endpoint_maps_onto_engine_policy(install, name):
    me, peer, inner = ENDPOINTS[name]
    root = install(name)
    config = pyike.config.load(str(root / "racoon.conf"))
    engine = config.engine

    (remote,) = engine.remotes
    assert remote.remote == peer and remote.port == 500
    assert remote.exchange_mode == ("main",)
    assert remote.initial_contact is True
    assert remote.dpd == DpdSettings(delay=20, retry=2, maxfail=2)
    assert remote.rekey == "on"
    assert remote.verify_identifier is False
    assert remote.my_identifier == Identity("address", me)
    assert remote.peers_identifier == (Identity("address", peer),)
    assert remote.lifetime_s == 24 * 3600
    # the proposal has no lifetime of its own: it takes the remote's 24 hours
    assert remote.proposals == (
        Phase1Proposal(
            encryption="aes",
            hash="sha1",
            dh_group=2,
            key_length=None,
            auth_method="pre_shared_key",
            lifetime_s=86400,
        ),
    )

    (sainfo,) = engine.sainfos
    assert sainfo.local_id is None and sainfo.remote_id is None
    assert sainfo.pfs_group == 2
    assert sainfo.encryption == (("aes", None),)
    assert sainfo.authentication == ("hmac_sha1",)
    assert sainfo.compression == ("deflate",)
    assert sainfo.lifetime_s == 86400
    assert sainfo.lifetime_kb is None

    assert engine.psk == {peer: b"gre over ipsec shared secret"}
    assert engine.local_addresses == (me,)
    assert config.listen_isakmp == ((me, 500),)
    assert config.adminsock == "/run/pyike/pyike.sock"
    assert config.adminsock_mode == 0o600
    assert config.log_level == "notify"
    assert config.psk_file == str(root / "psk.txt")

    (tunnel,) = config.gre_tunnels
    assert (tunnel.name, tunnel.local, tunnel.remote) == ("tun0", me, peer)
    assert tunnel.address == inner and tunnel.mtu is None and tunnel.key is None

    assert config.sources == tuple(str(root / f) for f in ("racoon.conf", "psk.txt", "setkey.conf"))
    ((path, setkey_file),) = config.setkey
    assert path == str(root / "setkey.conf")
    policies = [c.policy for c in setkey_file.commands if hasattr(c, "policy")]
    assert [(str(p.src), str(p.dst), p.proto, p.direction) for p in policies] == [
        (f"{me}/32", f"{peer}/32", 47, "out"),
        (f"{peer}/32", f"{me}/32", 47, "in"),
    ]
    assert all(p.rules[0].mode == "transport" and p.rules[0].level == "require" for p in policies)
    assert config.warnings == ()


def test_seed_endpoints_agree_with_each_other(install):
    a = pyike.config.load(str(install("seed_a") / "racoon.conf"))
    b = pyike.config.load(str(install("seed_b") / "racoon.conf"))
    # what one side proposes the other accepts: same proposals and phase-2 settings
    assert a.engine.remotes[0].proposals == b.engine.remotes[0].proposals
    assert a.engine.sainfos == b.engine.sainfos
    assert a.engine.remotes[0].my_identifier in b.engine.remotes[0].peers_identifier
    assert a.engine.psk[b.engine.local_addresses[0]] == b.engine.psk[a.engine.local_addresses[0]]
    ta, tb = a.gre_tunnels[0], b.gre_tunnels[0]
    assert (ta.local, ta.address) == (tb.remote, tb.peer)
    assert ipaddress.ip_address(ta.address) != ipaddress.ip_address(tb.address)


def test_check_reports_nothing_for_the_seed(install):
    assert pyike.config.check(str(install("seed_a") / "racoon.conf")) == []
