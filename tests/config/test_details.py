"""Smaller grammar points: defaults, identifiers, paths, the pyike statements."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyike.config
from ikev1.policy import Identity
from pyike.config.lexer import PORT, PREFIX, STRING, WORD, tokenize
from tests.config.conftest import DATA

PROPOSAL = """
	proposal {
		encryption_algorithm aes; hash_algorithm sha1;
		authentication_method pre_shared_key; dh_group 2;
	}
"""


def _remote(head: str, body: str = "") -> str:
    return f"{head} {{\n\texchange_mode main;\n{body}{PROPOSAL}}}\n"


def _load(write, text: str, psk: str = "198.18.0.2 k\n"):
    root = write({"racoon.conf": 'path pre_shared_key "psk.txt";\n' + text, "psk.txt": psk})
    return root, pyike.config.load(str(root / "racoon.conf"))


def test_lexer_cuts_racoon_tokens():
    tokens, errors = tokenize('isakmp ::1 [7000]; a 10.0.0.0/8[any] "x y" # c\n}', "f")
    assert errors == []
    kinds = [(t.kind, t.value, t.line) for t in tokens[:-1]]
    assert kinds == [
        (WORD, "isakmp", 1),
        (WORD, "::1", 1),
        (PORT, "7000", 1),
        (";", ";", 1),
        (WORD, "a", 1),
        (WORD, "10.0.0.0", 1),
        (PREFIX, "8", 1),
        (PORT, "any", 1),
        (STRING, "x y", 1),
        ("}", "}", 2),
    ]


def test_defaults_without_optional_blocks(write):
    _, config = _load(write, _remote("remote 198.18.0.2"))
    assert config.adminsock == "/run/pyike/pyike.sock" and config.adminsock_mode == 0o600
    assert config.pidfile == "/run/pyike/pyike.pid"
    assert config.listen_isakmp == () and config.engine.local_addresses == ()
    assert config.log_level == "notify"
    assert config.engine.sainfos == ()
    t = config.engine.timer
    # ipsec-tools 0.8 localconf.h
    assert (t.counter, t.interval, t.persend, t.phase1_timeout, t.phase2_timeout) == (
        5,
        10,
        1,
        30,
        30,
    )
    assert config.engine.pad_randomize is True and config.engine.pad_max_length == 20


def test_peers_identifier_address_alone_is_the_remote_address(write):
    text = _remote("remote 198.18.0.2", "\tpeers_identifier address;\n\tmy_identifier address;\n")
    text += _remote("remote anonymous", "\tpeers_identifier address;\n")
    _, config = _load(write, text)
    named, anon = config.engine.remotes
    assert named.peers_identifier == (Identity("address", "198.18.0.2"),)
    assert named.my_identifier is None
    assert anon.peers_identifier == ()


def test_scripts_and_ports_and_absolute_paths(write):
    text = 'path script "/etc/racoon/scripts";\npath pidfile "/var/run/gw.pid";\n'
    text += _remote("remote 198.18.0.2 [4500]", '\tscript "up" phase1_up;\n')
    text += "listen {\n\tadminsock disabled;\n}\n"
    _, config = _load(write, text)
    assert config.scripts == {"198.18.0.2[4500]": {"phase1_up": "/etc/racoon/scripts/up"}}
    assert config.engine.remotes[0].port == 4500
    assert config.pidfile == "/var/run/gw.pid"
    assert config.adminsock is None


def test_keyid_file_must_exist(write):
    root = write({"racoon.conf": _remote("remote 198.18.0.2", '\tmy_identifier keyid "none";\n')})
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert (errors[0].line, errors[0].keyword) == (3, "none")
    assert "key id file" in errors[0].message


def test_gre_key_forms(write):
    text = (
        'gre "a" { local 198.18.0.1; remote 198.18.0.2; address 10.0.0.1 peer 10.0.0.2; key 7; }\n'
    )
    text += 'gre "b" { local 2001:db8::1; remote 2001:db8::2; address fd00::1 peer fd00::2; '
    text += "key 255.255.255.255; mtu 1280; }\n"
    _, config = _load(write, text)
    a, b = config.gre_tunnels
    assert (a.key, a.mtu) == (7, None)
    assert (b.key, b.mtu, b.remote) == (2**32 - 1, 1280, "2001:db8::2")


def test_warnings_are_kept_not_silent(write):
    text = 'pfkey_buffer 1024;\ncomplex_bundle on;\npath backupsa "sa.db";\n'
    text += _remote("remote 198.18.0.2", "\tsend_cr off;\n\tike_frag on;\n")
    _, config = _load(write, text)
    assert [(w.line, w.keyword) for w in config.warnings] == [
        (2, "pfkey_buffer"),
        (3, "complex_bundle"),
        (4, "backupsa"),
        (7, "send_cr"),
    ]


def test_config_repr_hides_the_keys(write):
    _, config = _load(write, _remote("remote 198.18.0.2"), psk="198.18.0.2 hunter2-secret\n")
    assert "hunter2-secret" not in repr(config)
    assert config.engine.psk["198.18.0.2"] == b"hunter2-secret"


_VOCABULARY = sorted(
    set(" ".join(p.read_text() for p in DATA.rglob("*.conf")).split())
    | {"{", "}", ";", ",", '"', "[", "]", "/", "#", "\n", "[any]", "/33", "0x"}
)


@pytest.mark.fuzz
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.sampled_from(_VOCABULARY), st.text(string.printable, max_size=4)),
        max_size=60,
    )
)
def test_arbitrary_input_gives_errors_not_exceptions(tmp_path_factory, words):
    path = tmp_path_factory.mktemp("fuzz") / "racoon.conf"
    path.write_text(" ".join(words))
    errors = pyike.config.check(str(path))
    assert all(isinstance(e, pyike.config.ConfigError) and e.line >= 0 for e in errors)


def test_inherited_peers_identifier_is_replaced(write):
    text = _remote("remote anonymous", '\tpeers_identifier fqdn "parent.example.net";\n')
    text += (
        'remote 198.18.0.2 inherit anonymous {\n\tpeers_identifier fqdn "child.example.net";\n}\n'
    )
    text += "remote 198.18.0.3 inherit anonymous;\n"
    _, config = _load(write, text)
    parent, child, copy = config.engine.remotes
    assert child.peers_identifier == (Identity("fqdn", "child.example.net"),)
    assert (
        copy.peers_identifier == parent.peers_identifier
        == (Identity("fqdn", "parent.example.net"),)
    )
