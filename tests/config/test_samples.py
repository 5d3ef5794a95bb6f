"""Fixtures that use every statement of racoon's shipped samples that pyike supports."""

from __future__ import annotations

import ipaddress

import pyike.config
from ikev1.policy import DpdSettings, Identity, Phase1Proposal, TrafficSelector


def _net(text: str):
    return ipaddress.ip_network(text)


def test_full_configuration(install):
    root = install("full")
    config = pyike.config.load(str(root / "racoon.conf"))
    engine = config.engine

    # files: main, both includes (sorted glob), the key id file, psk.txt, setkey.conf
    assert config.sources == (
        str(root / "racoon.conf"),
        str(root / "conf.d/10-remote.conf"),
        str(root / "certs/peer.keyid"),
        str(root / "conf.d/20-sainfo.conf"),
        str(root / "psk.txt"),
        str(root / "setkey.conf"),
    )
    assert config.pidfile == "/run/pyike/gw.pid"
    assert config.log_level == "debug2"
    assert engine.pad_max_length == 40
    assert engine.pad_randomize is False
    assert engine.pad_randomize_length is True
    assert engine.pad_strict_check is True
    assert engine.pad_exclusive_tail is False

    assert config.listen_isakmp == (("198.18.0.1", 500), ("2001:db8::1", 7000))
    assert config.listen_natt == (("198.18.0.1", 4500),)
    assert engine.local_addresses == ("198.18.0.1", "2001:db8::1")
    assert (engine.isakmp_port, engine.natt_port) == (500, 4500)
    assert config.adminsock == "/run/pyike/gw.sock"
    assert (config.adminsock_owner, config.adminsock_group) == ("root", "operator")
    assert config.adminsock_mode == 0o660

    t = engine.timer
    assert (t.counter, t.interval, t.persend) == (7, 20, 2)
    assert (t.phase1_timeout, t.phase2_timeout, t.natt_keepalive) == (60, 15, 10)

    gw2, v6, anon = engine.remotes
    assert gw2.remote == "198.18.0.2"
    assert gw2.exchange_mode == ("aggressive", "main")
    assert gw2.my_identifier == Identity("fqdn", "gw1.example.net")
    assert gw2.peers_identifier == (Identity("user_fqdn", "admin@gw2.example.net"),)
    assert gw2.verify_identifier is True
    assert gw2.lifetime_s == 7200
    assert gw2.initial_contact is False
    assert gw2.passive is True
    assert gw2.proposal_check == "claim"
    assert gw2.nat_traversal == "force"
    assert gw2.dpd == DpdSettings(delay=30, retry=3, maxfail=4)
    assert gw2.rekey == "force"
    assert gw2.support_proxy is True
    assert gw2.nonce_size == 32
    assert gw2.ike_frag == "on"
    assert not [w for w in config.warnings if w.keyword == "ike_frag"]
    assert gw2.proposals == (
        Phase1Proposal("aes", "sha256", 14, key_length=256, lifetime_s=7200),
        Phase1Proposal("3des", "md5", 14, key_length=None, lifetime_s=1800),
    )
    assert config.scripts["198.18.0.2"] == {
        "phase1_up": str(root / "scripts/up.sh"),
        "phase1_down": str(root / "scripts/down.sh"),
        "phase1_dead": "/usr/local/sbin/dead.sh",
    }

    assert (v6.remote, v6.port) == ("2001:db8::2", 8000)
    assert v6.my_identifier == Identity("keyid", "gw1-key")
    assert v6.peers_identifier == (Identity("keyid", "gw2-identity"),)
    assert v6.proposals == (Phase1Proposal("aes", "sha512", 18, key_length=192),)
    # racoon's defaults where the block says nothing
    assert v6.dpd == DpdSettings(delay=0, retry=5, maxfail=5)
    assert (v6.rekey, v6.proposal_check, v6.nat_traversal) == ("on", "strict", "off")
    assert (v6.initial_contact, v6.nonce_size, v6.lifetime_s) == (True, 16, 28800)

    assert anon.remote == "anonymous" and anon.support_proxy is False
    assert anon.dpd.delay == 0
    assert anon.proposals[0].dh_group == 5 and anon.proposals[0].key_length == 128

    any_sa, gre_sa, subnet_sa, icmp6_sa, dns_sa = engine.sainfos
    assert (any_sa.local_id, any_sa.remote_id, any_sa.pfs_group) == (None, None, None)
    assert any_sa.lifetime_s == 3600  # racoon's default phase-2 lifetime

    assert gre_sa.local_id == TrafficSelector(_net("198.18.0.1/32"), 47, 0)
    assert gre_sa.remote_id == TrafficSelector(_net("198.18.0.2/32"), 47, 0)
    assert gre_sa.pfs_group == 2
    assert (gre_sa.lifetime_s, gre_sa.lifetime_kb) == (1800, 50 * 1024)
    assert gre_sa.encryption == (("aes", 256), ("aes", 128), ("3des", None))
    assert gre_sa.authentication == ("hmac_sha256", "hmac_sha1", "hmac_md5")

    assert subnet_sa.local_id == TrafficSelector(_net("10.1.0.0/16"), 0, 0)
    assert subnet_sa.remote_id == TrafficSelector(_net("10.2.3.4/32"), 6, 8080)
    assert subnet_sa.peer_identity == Identity("fqdn", "gw2.example.net")
    assert subnet_sa.authentication == ("hmac_sha256",)

    assert icmp6_sa.local_id == TrafficSelector(_net("2001:db8::1/128"), 58, 0)
    assert icmp6_sa.remote_id is None
    assert dns_sa.local_id is None
    assert dns_sa.remote_id == TrafficSelector(_net("10.3.0.0/24"), 17, 53)

    assert engine.psk == {
        "198.18.0.2": bytes.fromhex("00112233445566778899aabbccddeeff"),
        "2001:db8::2": b"mekmitasdigoat",
        "admin@gw2.example.net": b"a key with  spaces inside",
        "gw2.example.net": b"\x0a\xbc",
    }

    (gre,) = config.gre_tunnels
    assert (gre.name, gre.mtu, gre.key) == ("gre1", 1400, 1234)

    # accepted but without effect in pyike: said, never silent
    warned = {(w.keyword, w.line) for w in config.warnings}
    assert ("privsep", 8) in warned


def test_inheritance(install):
    root = install("inherit")
    engine = pyike.config.load(str(root / "racoon.conf")).engine
    base, child, grandchild, plain = engine.remotes

    assert base.remote == "anonymous"
    assert base.exchange_mode == ("main", "aggressive")
    assert base.proposals == (Phase1Proposal("3des", "sha1", 2, lifetime_s=3 * 3600),)

    # the child keeps everything but what it says
    assert (child.remote, child.port) == ("2001:db8::7", 500)
    assert child.exchange_mode == ("aggressive",)
    assert child.nat_traversal == "force"
    assert child.my_identifier == Identity("user_fqdn", "gw@example.net")
    assert child.proposal_check == "obey"
    assert child.proposals == base.proposals

    # a grandchild with its own proposal replaces the inherited one; its lifetime applies
    assert (grandchild.remote, grandchild.port) == ("2001:db8::7", 8000)
    assert grandchild.exchange_mode == ("aggressive",)
    assert grandchild.nat_traversal == "force"
    assert grandchild.lifetime_s == 60
    assert grandchild.proposals == (Phase1Proposal("aes", "sha256", 2, 256, lifetime_s=60),)

    # `remote X inherit Y;` without a block is a copy
    assert plain.remote == "198.18.5.5"
    assert plain.proposals == base.proposals and plain.exchange_mode == base.exchange_mode

    (sainfo,) = engine.sainfos
    assert sainfo.encryption == (("aes", None), ("3des", None))
    assert sainfo.authentication == ("hmac_sha1", "hmac_md5")
    assert sainfo.lifetime_s == 12 * 3600


def test_nat_traversal(install):
    config = pyike.config.load(str(install("natt") / "racoon.conf"))
    (remote,) = config.engine.remotes
    assert remote.nat_traversal == "on"
    assert remote.my_identifier is None  # `my_identifier address;` is our own address
    assert remote.exchange_mode == ("main", "aggressive")
    assert remote.proposal_check == "obey"
    assert config.listen_natt == (("198.18.0.1", 4500),)
    assert config.engine.timer.natt_keepalive == 10
    assert config.engine.timer.phase1_timeout == 30  # racoon 0.8's default
    assert config.engine.sainfos[0].encryption == (("3des", None), ("aes", None))
