"""racoon.conf files as real racoon sites write them: what racoon accepts loads in pyike, and
what pyike cannot do is dropped with one warning or refused with FILE:LINE."""

from __future__ import annotations

from dataclasses import replace

import pytest

import pyike.config
from esp.algorithms import AUTHS, CIPHERS
from esp.sa import EspSA
from ikev1 import proposals as engine
from ikev1.crypto import SUPPORTED_GROUPS
from ikev1.engine import Engine
from ikev1.events import Phase1Up, Phase2Up
from ikev1.policy import Identity
from pyike.config import names
from pyike.ikesockets import listen_addresses
from tests.ikev1.harness import A, B, events, gre_selector, of_type, pair, pump, seeded

PSK_PROPOSAL = "authentication_method pre_shared_key;"


def _conf(remote_body: str = "", sainfo_body: str = "", top: str = "") -> str:
    remote_body = remote_body or f"""
	proposal {{
		encryption_algorithm aes; hash_algorithm sha1; {PSK_PROPOSAL} dh_group 2;
	}}
"""
    sainfo_body = sainfo_body or """
	encryption_algorithm aes;
	authentication_algorithm hmac_sha1;
	compression_algorithm deflate;
"""
    return (f'path pre_shared_key "psk.txt";\n{top}'
            f"remote 198.18.0.2 {{\n\texchange_mode main;\n{remote_body}}}\n"
            f"sainfo anonymous {{\n{sainfo_body}}}\n")


def _load(write, text: str, psk: str = "198.18.0.2 k\n"):
    root = write({"racoon.conf": text, "psk.txt": psk})
    config, errors = pyike.config.load_all(str(root / "racoon.conf"))
    return root, config, errors


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# -- 1. algorithm lists ----------------------------------------------------------------------


def test_racoon_manual_example_cipher_list_keeps_what_pyike_can_do(write):
    # racoon.conf(5) EXAMPLES and ipsec-tools' sample racoon.conf
    text = _conf(sainfo_body="""
	encryption_algorithm 3des, blowfish 448, twofish, rijndael;
	authentication_algorithm hmac_sha1, hmac_sha384, hmac_sha2_512, non_auth;
	compression_algorithm deflate, lzs;
""")
    root, config, errors = _load(write, text)
    assert errors == []
    (sainfo,) = config.engine.sainfos
    assert sainfo.encryption == (("3des", None), ("aes", None))
    assert sainfo.authentication == ("hmac_sha1", "hmac_sha384", "hmac_sha512")
    dropped = [w for w in config.warnings if "cannot do" in w.message]
    enc_line = _line_of(text, "blowfish 448")
    auth_line = _line_of(text, "non_auth")
    assert [(w.file, w.line) for w in dropped] == [(str(root / "racoon.conf"), enc_line),
                                                  (str(root / "racoon.conf"), auth_line)]
    assert "blowfish, twofish" in dropped[0].message and "3des" not in dropped[0].message
    assert "non_auth" in dropped[1].message and "hmac_sha384" not in dropped[1].message


def test_nothing_usable_left_in_a_list_is_an_error(write):
    text = _conf(sainfo_body="""
	encryption_algorithm blowfish, twofish 256;
	authentication_algorithm hmac_sha1, bogus;
	compression_algorithm deflate;
""")
    root, _, errors = _load(write, text)
    # the statement after the refused one is still read
    assert [(e.line, e.keyword) for e in errors] == [
        (_line_of(text, "blowfish"), "encryption_algorithm"), (_line_of(text, "bogus"), "bogus")]
    assert "none of blowfish, twofish" in errors[0].message


def test_phase1_proposal_with_an_algorithm_pyike_lacks_is_left_out(write):
    text = _conf(remote_body=f"""
	proposal {{
		encryption_algorithm blowfish; hash_algorithm sha1; {PSK_PROPOSAL} dh_group 2;
	}}
	proposal {{
		encryption_algorithm aes 256; hash_algorithm sha2_512; {PSK_PROPOSAL} dh_group 14;
	}}
	proposal {{
		encryption_algorithm 3des; hash_algorithm md5; {PSK_PROPOSAL} dh_group 3;
	}}
""")
    _, config, errors = _load(write, text)
    assert errors == []
    (remote,) = config.engine.remotes
    assert [(p.encryption, p.key_length, p.hash, p.dh_group) for p in remote.proposals] == [
        ("aes", 256, "sha512", 14)]
    dropped = [(w.line, w.message) for w in config.warnings if "cannot do" in w.message]
    assert [line for line, _ in dropped] == [_line_of(text, "blowfish"),
                                             _line_of(text, "dh_group 3")]
    assert "blowfish" in dropped[0][1] and "dh_group: pyike cannot do 3" in dropped[1][1]


def test_no_proposal_left_is_an_error_at_the_remote(write):
    text = _conf(remote_body=f"""
	proposal {{
		encryption_algorithm cast128; hash_algorithm sha1; {PSK_PROPOSAL} dh_group 2;
	}}
""")
    _, _, errors = _load(write, text)
    assert [(e.line, e.keyword) for e in errors] == [(_line_of(text, "remote"), "198.18.0.2")]
    assert "no proposal pyike can do" in errors[0].message


@pytest.mark.parametrize("group", [19, 20, 21])
def test_ecp_groups_the_engine_computes_are_accepted(write, group):
    text = _conf(
        remote_body=f"""
	proposal {{
		encryption_algorithm aes; hash_algorithm sha256; {PSK_PROPOSAL} dh_group {group};
	}}
""",
        sainfo_body=f"""
	pfs_group {group};
	encryption_algorithm aes;
	authentication_algorithm hmac_sha256;
	compression_algorithm deflate;
""")
    _, config, errors = _load(write, text)
    assert errors == []
    assert config.engine.remotes[0].proposals[0].dh_group == group
    assert config.engine.sainfos[0].pfs_group == group


def test_the_config_tables_are_what_the_engine_and_esp_do():
    """One source of truth: every algorithm the config lets through runs in the engine and in
    esp, and every one they both do has a racoon name."""
    for name in names.P1_CIPHERS.supported:
        assert name in engine.P1_ENC
    assert set(engine.P1_HASH) <= names.P1_HASHES.supported
    for name in names.ESP_CIPHERS.supported:
        assert engine.ESP_ENC_NAME[name] in CIPHERS
    both = {n for n, (_, alg) in engine.ESP_AUTH.items() if alg in AUTHS}
    assert names.ESP_AUTHS.supported == both
    assert both <= set(names.ESP_AUTHS.racoon.values())
    assert frozenset(SUPPORTED_GROUPS) == names.DH_GROUPS_SUPPORTED
    assert names.P1_CIPHERS.key_bits == {"aes": (128, 192, 256)}


@pytest.mark.parametrize("auth", ["hmac_sha384", "hmac_sha512"])
def test_sha2_384_512_from_racoon_conf_negotiate_and_carry(write, auth):
    """hmac_sha384/512 in sainfo and sha384/512 in phase 1: two engines configured from the
    file negotiate, and the keys they give seal and open with the RFC 4868 ICV."""
    bits = auth[-3:]
    text = _conf(
        remote_body=f"""
	proposal {{
		encryption_algorithm aes 256; hash_algorithm sha{bits}; {PSK_PROPOSAL} dh_group 14;
	}}
""",
        sainfo_body=f"""
	encryption_algorithm aes 256;
	authentication_algorithm {auth};
	compression_algorithm deflate;
""")
    _, config, errors = _load(write, text)
    assert errors == []
    cfg = config.engine
    a_cfg = replace(cfg, local_addresses=(A,), remotes=(replace(cfg.remotes[0], remote=B),),
                    psk={B: b"k"})
    b_cfg = replace(cfg, local_addresses=(B,), remotes=(replace(cfg.remotes[0], remote=A),),
                    psk={A: b"k"})
    a, b = Engine(a_cfg, rng=seeded(1)), Engine(b_cfg, rng=seeded(2))
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    (ua,), (ub,) = of_type(events(a), Phase2Up), of_type(events(b), Phase2Up)
    out = ua.outbound
    assert out.auth_alg == f"hmac-sha{bits}" and len(out.auth_key) == int(bits) // 8
    assert ub.inbound == out
    seal = EspSA(out.spi, out.src, out.dst, out.enc_alg, out.enc_key, out.auth_alg,
                 out.auth_key, direction="out")
    inbound = ub.inbound
    opener = EspSA(inbound.spi, inbound.src, inbound.dst, inbound.enc_alg, inbound.enc_key,
                   inbound.auth_alg, inbound.auth_key, direction="in")
    packet = seal.seal(b"gre inside", 47, 0.0)
    assert isinstance(packet, bytes) and seal.icv_size == int(bits) // 16
    assert opener.open(packet, 0.0) == (47, b"gre inside")


# -- 2. exchange_mode base ------------------------------------------------------------------


def test_base_mode_is_left_out_when_other_modes_remain(write):
    text = _conf().replace("exchange_mode main;", "exchange_mode main,base, aggressive;")
    root, config, errors = _load(write, text)
    assert errors == []
    assert config.engine.remotes[0].exchange_mode == ("main", "aggressive")
    (warning,) = [w for w in config.warnings if w.keyword == "exchange_mode"]
    assert (warning.file, warning.line) == (str(root / "racoon.conf"), _line_of(text, "base"))
    assert "base" in warning.message


def test_base_mode_alone_is_an_error(write):
    text = _conf().replace("exchange_mode main;", "exchange_mode base;")
    _, _, errors = _load(write, text)
    assert [(e.line, e.keyword) for e in errors][0] == (_line_of(text, "base"), "base")


# -- 3. several peers_identifier lines ---------------------------------------------------------


def test_several_peers_identifiers_are_all_kept(write):
    text = _conf(remote_body="""
	verify_identifier on;
	peers_identifier address 198.18.0.2;
	peers_identifier fqdn "b.example";
	peers_identifier user_fqdn "ops@b.example";
	proposal {
		encryption_algorithm aes; hash_algorithm sha1;
		authentication_method pre_shared_key; dh_group 2;
	}
""")
    _, config, errors = _load(write, text)
    assert errors == []
    assert config.engine.remotes[0].peers_identifier == (
        Identity("address", "198.18.0.2"), Identity("fqdn", "b.example"),
        Identity("user_fqdn", "ops@b.example"))


@pytest.mark.parametrize(("sent", "up"), [("b.example", True), ("b2.example", True),
                                          ("c.example", False)])
def test_the_engine_takes_a_peer_matching_any_peers_identifier(sent, up):
    wanted = (Identity("fqdn", "b.example"), Identity("fqdn", "b2.example"))
    a, b = pair({"remote": {"verify_identifier": True, "peers_identifier": wanted}},
                {"remote": {"my_identifier": Identity("fqdn", sent)}})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    assert bool(of_type(events(a), Phase1Up)) is up


# -- 4. adminsock PATH OWNER GROUP MODE ---------------------------------------------------------


@pytest.mark.parametrize(("written", "mode"), [("0660", 0o660), ("660", 0o660), ("0600", 0o600),
                                               ("0", 0)])
def test_adminsock_documented_four_argument_form(write, written, mode):
    top = f'listen {{\n\tadminsock "/run/racoon/racoon.sock" "root" "0" {written};\n}}\n'
    _, config, errors = _load(write, _conf(top=top))
    assert errors == []
    assert (config.adminsock, config.adminsock_owner, config.adminsock_group,
            config.adminsock_mode) == ("/run/racoon/racoon.sock", "root", "0", mode)


@pytest.mark.parametrize(("args", "keyword"), [('"no-such-user-x" "0" 0660', "adminsock"),
                                               ('"0" "no-such-group-x" 0660', "adminsock"),
                                               ('"0" "0" 0680', "0680"),
                                               ('"0" "0" 1777', "1777")])
def test_adminsock_owner_group_and_mode_racoon_refuses(write, args, keyword):
    top = f'listen {{\n\tadminsock "/run/racoon/racoon.sock" {args};\n}}\n'
    text = _conf(top=top)
    _, _, errors = _load(write, text)
    assert [(e.line, e.keyword) for e in errors] == [(_line_of(text, "adminsock"), keyword)]


# -- 5. psk.txt `*` ---------------------------------------------------------------------------


def test_psk_star_line_is_kept_and_lines_below_it_are_never_used(write):
    psk = "198.18.0.9 nine\n* everyone\n198.18.0.2 shadowed\n"
    root, config, errors = _load(write, _conf(), psk=psk)
    assert errors == []
    assert dict(config.engine.psk) == {"198.18.0.9": b"nine", "*": b"everyone"}
    (warning,) = [w for w in config.warnings if w.file.endswith("psk.txt")]
    assert warning.line == 3 and "never used" in warning.message
    assert "shadowed" not in warning.message and "everyone" not in warning.message


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_the_engine_uses_the_star_key_for_a_peer_no_line_names(mode):
    remote = {"exchange_mode": (mode,)}
    if mode == "aggressive":
        remote["my_identifier"] = Identity("fqdn", "a.example")
    a, b = pair({"remote": remote}, {"remote": {"exchange_mode": (mode,)}})
    b.config = replace(b.config, psk={"198.18.0.9": b"other", "*": b"a shared secret"})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    assert of_type(events(a), Phase1Up) and of_type(events(b), Phase1Up)


def test_a_named_line_above_the_star_wins():
    a, b = pair()
    b.config = replace(b.config, psk={A: b"wrong key", "*": b"a shared secret"})
    a.initiate(B, 0.0, gre_selector(A), gre_selector(B))
    pump(a, b, 0.0)
    assert not of_type(events(a), Phase1Up)


# -- 6. isakmp_natt without a port --------------------------------------------------------------


def test_isakmp_natt_without_a_port_is_port_500_as_in_racoon(write):
    top = "listen {\n\tisakmp 198.18.0.1;\n\tisakmp_natt 198.18.0.1;\n}\n"
    text = _conf(top=top)
    _, config, errors = _load(write, text)
    assert errors == []
    assert config.listen_natt == (("198.18.0.1", 500),)
    assert config.engine.natt_port == 4500  # where IKE floats to: no NAT-T socket is 500
    (warning,) = [w for w in config.warnings if w.keyword == "isakmp_natt"]
    assert warning.line == _line_of(text, "isakmp_natt") and "[4500]" in warning.message
    assert listen_addresses(config) == [("198.18.0.1", 500)]


def test_isakmp_natt_with_a_port_is_the_port_ike_floats_to(write):
    top = "listen {\n\tisakmp 198.18.0.1;\n\tisakmp_natt 198.18.0.1 [4501];\n}\n"
    _, config, errors = _load(write, _conf(top=top))
    assert errors == [] and not [w for w in config.warnings if w.keyword == "isakmp_natt"]
    assert config.engine.natt_port == 4501


# -- 7. ike_frag, generate_policy, support_proxy, strict_address ---------------------------------


@pytest.mark.parametrize(("statement", "outcome"), [
    ("ike_frag off;", "quiet"), ("ike_frag on;", "quiet"), ("ike_frag force;", "quiet"),
    ("generate_policy off;", "quiet"), ("generate_policy on;", "quiet"),
    ("generate_policy require;", "quiet"), ("generate_policy unique;", "quiet"),
    ("support_proxy on;", "quiet"), ("support_proxy off;", "quiet")])
def test_remote_statements_do_what_racoon_does_or_are_refused(write, statement, outcome):
    text = _conf(remote_body=f"""
	{statement}
	proposal {{
		encryption_algorithm aes; hash_algorithm sha1; {PSK_PROPOSAL} dh_group 2;
	}}
""")
    _, config, errors = _load(write, text)
    keyword, line = statement.split()[0], _line_of(text, statement)
    if outcome == "error":
        assert [(e.line, e.keyword) for e in errors] == [(line, keyword)]
        assert "not supported by pyike" in errors[0].message
        return
    assert errors == []
    said = [(w.line, w.keyword) for w in config.warnings if w.keyword == keyword]
    assert said == ([(line, keyword)] if outcome == "warning" else [])
    if keyword == "ike_frag":  # racoon's three levels, kept for the engine (ikev1.fragment)
        assert [r.ike_frag for r in config.engine.remotes] == [statement.split()[1][:-1]]
    if keyword == "generate_policy":  # racoon.conf(5): on and require are the same level
        level = {"on;": "require"}.get(statement.split()[1], statement.split()[1][:-1])
        assert [r.generate_policy for r in config.engine.remotes] == [level]


def test_strict_address_is_what_pyike_always_does(write):
    _, config, errors = _load(write, _conf(top="listen {\n\tstrict_address;\n}\n"))
    assert errors == [] and config.warnings == ()


@pytest.mark.parametrize("proxy", [False, True])
def test_support_proxy_sends_client_ids_where_racoon_would_leave_them_out(proxy):
    """racoon's isakmp_quick.c: without support_proxy, a quick mode for all traffic between the
    IKE addresses carries no client IDs; with it, it always does. The responder's record of
    the exchange shows whether the IDs came."""
    a, b = pair({"remote": {"support_proxy": proxy}})
    a.initiate(B, 0.0, None, None)
    pump(a, b, 0.0)
    assert of_type(events(a), Phase2Up)
    (qx,) = b._quick.values()
    assert (qx.id_ci is not None, qx.id_cr is not None) == (proxy, proxy)
