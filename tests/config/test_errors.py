"""Bad and unsupported configurations: every error names its file, line and keyword."""

from __future__ import annotations

import pytest

import pyike.config
from pyike.config import ConfigError, ConfigErrors
from tests.config.conftest import DATA

GOOD_REMOTE = """\
remote 198.18.0.2 {
	exchange_mode main;
	proposal {
		encryption_algorithm aes;
		hash_algorithm sha1;
		authentication_method pre_shared_key;
		dh_group 2;
	}
}
"""
GOOD_SAINFO = """\
sainfo anonymous {
	encryption_algorithm aes;
	authentication_algorithm hmac_sha1;
	compression_algorithm deflate;
}
"""
PSK = {"psk.txt": "198.18.0.2 secret\n"}


def _where(errors: list[ConfigError]) -> list[tuple[str, int, str]]:
    return [(e.file.rsplit("/", 1)[-1], e.line, e.keyword) for e in errors]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "certificate.conf",
            [("asn1dn", 7), ("certificate_type", 8), ("rsasig", 12)],
        ),
        (
            "plainrsa.conf",
            [("certificate_type", 9), ("peers_certfile", 10), ("rsasig", 14)],
        ),
        ("gssapi.conf", [("gss_id_enc", 2), ("gssapi_krb", 10), ("gss_id", 11)]),
        (
            "roadwarrior.conf",
            [("mode_cfg", 4), ("mode_cfg", 13), ("xauth_psk_server", 17), ("clientaddr", 22)],
        ),
    ],
)
def test_unsupported_features_are_errors(name, expected):
    path = DATA / "unsupported" / name
    errors = pyike.config.check(str(path))
    assert [(e.keyword, e.line) for e in errors] == expected
    for error in errors:
        assert error.file == str(path)
        assert "not supported by pyike" in error.message
        assert str(error) == f"{path}:{error.line}: {error.message}"
        assert error.keyword in error.message


def test_load_raises_with_every_error_printed_as_file_line_message():
    path = DATA / "unsupported" / "certificate.conf"
    with pytest.raises(ConfigErrors) as info:
        pyike.config.load(str(path))
    lines = str(info.value).splitlines()
    assert lines == [str(e) for e in info.value.errors]
    assert lines[0].startswith(f"{path}:7: ")


@pytest.mark.parametrize(
    ("text", "line", "keyword", "words"),
    [
        ("log loud;\n", 1, "loud", "log level"),
        ("\n\nlisten {\n\tisakmp 198.18.0.1 [500]\n}\n", 5, "}", '";"'),
        ("timer {\n\tinterval 10;\n}\n", 2, ";", "time unit"),
        ("timer {\n\tretries 3;\n}\n", 2, "retries", "unknown keyword"),
        ("listen {\n\tisakmp 198.18.0.300;\n}\n", 2, "198.18.0.300", "IP address"),
        ("remote 198.18.0.2 {\n\tproposal {\n\t\tdh_group 7;\n\t}\n}\n", 3, "7", "DH group"),
        ("sainfo anonymous {\n\tpfs_group 4;\n}\n", 2, "4", "cannot do"),
        ("sainfo anonymous {\n\tpfs_group ec2n155;\n}\n", 2, "ec2n155", "not a DH group"),
        ("sainfo anonymous {\n\tencryption_algorithm hmac_sha1;\n}\n", 2, "hmac_sha1", "aes"),
        ("remote 198.18.0.2 {\n\tdh_group 2;\n}\n", 2, "dh_group", "proposal"),
        ("remote 198.18.0.2 {\n\texchange_mode base;\n}\n", 2, "base", "not supported"),
        ("remote 198.18.0.2 {\n\tlifetime byte 1 MB;\n}\n", 2, "byte", "byte lifetimes"),
        ("frobnicate on;\n", 1, "frobnicate", "unknown keyword"),
        ('include "missing/*.conf";\n', 1, "include", "no file matches"),
        ('path socket "/tmp";\n', 1, "socket", "path type"),
        ('gre "tun0" {\n\tlocal 198.18.0.1;\n}\n', 1, "gre", '"remote"'),
        (
            'gre "tun0" {\n local 198.18.0.1;\n remote 2001:db8::2;\n'
            " address 10.0.0.1 peer 10.0.0.2;\n}\n",
            3,
            "remote",
            "families",
        ),
        ('gre "a/b" { }\n', 1, "gre", "interface name"),
        ('listen {\n\tadminsock "/run/x.sock" "root" "root" 698;\n}\n', 2, "698", "mode"),
        ("remote 198.18.0.2 {\n\texchange_mode main;\n}\n", 1, "198.18.0.2", "no proposal"),
        ("sainfo address 10.0.0.1 bogus anonymous {\n}\n", 1, "bogus", "protocol"),
        ("sainfo address 10.0.0.1-10.0.0.9 any anonymous {\n}\n", 1, "10.0.0.1-10.0.0.9", "ranges"),
        ("sainfo address 10.0.0.1 icmp6 anonymous {\n}\n", 1, "icmp6", "family"),
        ("sainfo anonymous {\n\tencryption_algorithm aes;\n}\n", 1, "sainfo", "authentication"),
        ("sainfo anonymous {\n\tencryption_algorithm aes 100;\n}\n", 2, "100", "key length"),
        ("sainfo anonymous {\n\tencryption_algorithm 3des 192;\n}\n", 2, "192", "no key length"),
        (
            "sainfo anonymous {\n\tencryption_algorithm blowfish;\n}\n",
            2,
            "encryption_algorithm",
            "none of blowfish",
        ),
        (
            "sainfo anonymous {\n\tauthentication_algorithm non_auth;\n}\n",
            2,
            "authentication_algorithm",
            "hmac_sha1",
        ),
        ("sainfo anonymous {\n\tlifetime byte 100 B;\n}\n", 2, "lifetime", "1024"),
        ("sainfo anonymous {\n\tremoteid 5;\n}\n", 2, "remoteid", "not supported"),
        ('remote "peer" {\n\texchange_mode main;\n}\n', 1, "peer", "remote_address"),
        ("remote 198.18.0.9 inherit 198.18.0.8;\n", 1, "198.18.0.8", "inherit"),
        ("padding {\n\trandomize maybe;\n}\n", 2, "maybe", "on or off"),
        ('include "x.conf"', 1, "include", "no file matches"),
        ("listen {\n\tadmin [7002];\n}\n", 2, "admin", "not supported"),
        ('listen {\n\tisakmp "198.18.0.1";\n}\n', 2, "198.18.0.1", "IP address"),
        ("}\n", 1, "}", "unexpected"),
        ("remote 198.18.0.2 {\n", 1, "198.18.0.2", "not closed"),
        ('path include "/etc/racoon\n', 1, '"', "unterminated"),
    ],
)
def test_bad_statement_names_file_line_and_keyword(write, text, line, keyword, words):
    root = write({"racoon.conf": text})
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert errors, "the mistake went unnoticed"
    first = errors[0]
    assert (first.file, first.line, first.keyword) == (str(root / "racoon.conf"), line, keyword)
    assert words in first.message
    assert str(first).startswith(f"{root / 'racoon.conf'}:{line}: ")


def test_errors_in_included_files_name_the_included_file(write):
    root = write(
        {
            "racoon.conf": 'path include "conf.d";\ninclude "*.conf";\nlog chatty;\n',
            "conf.d/a.conf": GOOD_SAINFO,
            "conf.d/b.conf": "# second file\n\ntimer {\n\tcounter many;\n}\n",
            "conf.d/c.conf": 'include "nested/d.inc";\n',
            "conf.d/nested/d.inc": "\n\n\npadding { maximum_length 999; }\n",
        }
    )
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert _where(errors) == [
        ("b.conf", 4, "many"),
        ("d.inc", 4, "999"),
        ("racoon.conf", 3, "chatty"),
    ]


def test_parsing_goes_on_after_an_error(write):
    text = "log loud;\n" + GOOD_REMOTE + "timer {\n\tcounter x;\n\tpersend y;\n}\nlog quiet;\n"
    root = write({"racoon.conf": 'path pre_shared_key "psk.txt";\n' + text, **PSK})
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert _where(errors) == [
        ("racoon.conf", 2, "loud"),
        ("racoon.conf", 13, "x"),
        ("racoon.conf", 14, "y"),
        ("racoon.conf", 16, "quiet"),
    ]


def test_include_loop_is_stopped(write):
    root = write({"racoon.conf": 'include "racoon.conf";\n'})
    main = root / "racoon.conf"
    (error,) = pyike.config.check(str(main))
    assert (error.file, error.line, error.keyword) == (str(main), 1, "include")
    assert error.message == (
        f'include "racoon.conf": an include cycle ({main} -> {main}); {main} is not read again'
    )


def test_missing_main_file():
    errors = pyike.config.check("/nonexistent/racoon.conf")
    assert len(errors) == 1 and errors[0].file == "/nonexistent/racoon.conf"
    assert "cannot read" in errors[0].message


def test_psk_authentication_needs_a_psk_file(write):
    root = write({"racoon.conf": GOOD_REMOTE})
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert (error.line, error.keyword) == (6, "pre_shared_key")
    assert "path pre_shared_key" in error.message


def test_aggressive_mode_needs_one_dh_group(write):
    text = GOOD_REMOTE.replace("main", "aggressive").replace(
        "\t}\n}",
        "\t}\n\tproposal {\n\t\tencryption_algorithm aes; hash_algorithm sha1;\n"
        "\t\tauthentication_method pre_shared_key; dh_group 14;\n\t}\n}",
    )
    root = write({"racoon.conf": 'path pre_shared_key "psk.txt";\n' + text, **PSK})
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert (error.line, error.keyword) == (2, "198.18.0.2")
    assert "aggressive" in error.message


def test_duplicates_are_errors(write):
    text = GOOD_REMOTE + GOOD_REMOTE + GOOD_SAINFO
    text += "sainfo address 10.0.0.1 any anonymous {\n encryption_algorithm aes;\n"
    text += " authentication_algorithm hmac_sha1;\n compression_algorithm deflate;\n}\n" * 1
    text += text[text.index("sainfo address") :]
    text += (
        'gre "t0" { local 198.18.0.1; remote 198.18.0.2; address 10.0.0.1 peer 10.0.0.2; }\n' * 2
    )
    root = write({"racoon.conf": 'path pre_shared_key "psk.txt";\n' + text, **PSK})
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert [(e.line, e.keyword) for e in errors] == [
        (11, "198.18.0.2"),
        (30, "sainfo"),
        (36, "gre"),
    ]
    assert all("twice" in e.message for e in errors)


def test_setkey_errors_are_reported(write):
    root = write(
        {
            "racoon.conf": 'setkey "setkey.conf";\nsetkey "absent.conf";\n',
            "setkey.conf": "spdflush;\nspdadd 198.18.0.1/32 198.18.0.2/32 gre -P sideways none;\n",
        }
    )
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert _where(errors)[1] == ("racoon.conf", 2, "setkey")
    assert "absent.conf" in errors[1].message
    pytest.importorskip("spd.parse")
    assert _where(errors)[0][:2] == ("setkey.conf", 2)
