"""What tunnel mode takes from the configuration: `generate_policy` in a remote block, and the
tunnel policies of the setkey files, which the responder looks a peer's IDs up in."""

from __future__ import annotations

import ipaddress

import pytest

import pyike.config
from ikev1.engine import Engine
from ikev1.events import NegotiationFailed, Phase2Up
from ikev1.policy import Phase1Proposal, Phase2Route, TrafficSelector
from pyike.live import engine_config
from tests.ikev1.harness import A, B, events, make_config, of_type, relay, seeded

PROPOSAL = """	proposal {
		encryption_algorithm aes; hash_algorithm sha1;
		authentication_method pre_shared_key; dh_group 2;
	}
"""
SETKEY = f"""spdflush;
spdadd 10.2.0.0/24 10.1.0.0/24 any -P out ipsec esp/tunnel/{B}-{A}/require;
spdadd 10.1.0.0/24 10.2.0.0/24 any -P in ipsec esp/tunnel/{A}-{B}/require;
spdadd fd00:2::/64[443] fd00:1::/64[any] tcp -P out ipsec esp/tunnel/{B}-{A}/unique;
spdadd {B}/32 {A}/32 gre -P out ipsec esp/transport//require;
spdadd 10.3.0.0/24 10.4.0.0/24 any -P out none;
spdadd 10.5.0.0/24 10.6.0.0/24 any -P out discard;
"""


def _racoon_conf(remote_extra: str = "") -> str:
    return (f'path pre_shared_key "psk.txt";\nsetkey "setkey.conf";\ntunnel_device "tun1";\n'
            f"listen {{\n\tisakmp {B};\n}}\n"
            f"remote {A} {{\n\texchange_mode main;\n{remote_extra}{PROPOSAL}}}\n"
            "sainfo anonymous {\n\tencryption_algorithm aes;\n"
            "\tauthentication_algorithm hmac_sha1;\n\tcompression_algorithm deflate;\n}\n")


def _load(write, remote_extra: str = "", setkey: str = SETKEY):
    root = write({"racoon.conf": _racoon_conf(remote_extra), "setkey.conf": setkey,
                  "psk.txt": f"{A} k\n"})
    return root, *pyike.config.load_all(str(root / "racoon.conf"))


def _sel(net: str, proto: int = 0, port: int = 0) -> TrafficSelector:
    return TrafficSelector(ipaddress.ip_network(net), proto, port)


@pytest.mark.parametrize("written, kept", [
    ("", "off"), ("generate_policy off;", "off"), ("generate_policy on;", "require"),
    ("generate_policy require;", "require"), ("generate_policy unique;", "unique")])
def test_generate_policy_levels_as_racoon_reads_them(write, written, kept):
    _root, config, errors = _load(write, f"\t{written}\n" if written else "")
    assert errors == []
    assert [r.generate_policy for r in config.engine.remotes] == [kept]


@pytest.mark.parametrize("value", ["always", "yes", "1"])
def test_an_unknown_generate_policy_value_is_a_file_line_error(write, value):
    root, config, errors = _load(write, f"\tgenerate_policy {value};\n")
    assert config is None
    (error,) = errors
    line = _racoon_conf(f"\tgenerate_policy {value};\n").splitlines().index(
        f"\tgenerate_policy {value};") + 1
    assert (error.file, error.line) == (str(root / "racoon.conf"), line)
    assert "on, off, require or unique" in error.message and value in error.message
    assert str(error).startswith(f"{root / 'racoon.conf'}:{line}: ")


def test_the_engine_is_given_each_out_tunnel_policy_of_the_setkey_files(write):
    _root, config, errors = _load(write)
    assert errors == []
    assert engine_config(config, []).policies == (
        Phase2Route(_sel("10.2.0.0/24"), _sel("10.1.0.0/24"), "tunnel", B, A),
        Phase2Route(_sel("fd00:2::/64", 6, 443), _sel("fd00:1::/64", 6), "tunnel", B, A))


def test_no_setkey_file_no_policies(write):
    root = write({"racoon.conf": _racoon_conf().replace('setkey "setkey.conf";\n', ""),
                  "psk.txt": f"{A} k\n"})
    config = pyike.config.load(str(root / "racoon.conf"))
    assert engine_config(config, []).policies == ()


def _pair(config) -> tuple[Engine, Engine]:
    b = Engine(engine_config(config, []), rng=seeded(41))
    a = Engine(make_config(A, B, psk=b"k", proposals=(Phase1Proposal("aes", "sha1", 2),),
                           sainfo={"pfs_group": None}), rng=seeded(42))
    return a, b


@pytest.mark.parametrize("generate", [False, True])
def test_a_responder_built_from_the_files_takes_the_tunnels_its_setkey_allows(write, generate):
    _root, config, errors = _load(write, "\tgenerate_policy on;\n" if generate else "")
    assert errors == []
    a, b = _pair(config)
    a.initiate(B, 0.0, _sel("10.1.0.0/24"), _sel("10.2.0.0/24"), mode="tunnel")
    relay(a, b, 0.0)
    (ub,) = of_type(events(b), Phase2Up)
    assert ub.mode == "tunnel" and not ub.generated_policy  # the policy covers it
    assert (ub.local_selector, ub.remote_selector) == (("10.2.0.0/24", 0, 0),
                                                       ("10.1.0.0/24", 0, 0))
    a.initiate(B, 1.0, _sel("10.1.9.0/24"), _sel("10.2.0.0/24"), mode="tunnel")  # none does
    relay(a, b, 1.0)
    eb = events(b)
    if generate:
        assert [u.generated_policy for u in of_type(eb, Phase2Up)] == [True]
    else:
        assert [f.reason for f in of_type(eb, NegotiationFailed)] == ["NO-PROPOSAL-CHOSEN"]
        assert not of_type(eb, Phase2Up)
