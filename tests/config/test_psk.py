"""psk.txt: racoon's format and its refusal of files that others can read."""

from __future__ import annotations

import os

import pytest

import pyike.config
from pyike.config.psk import PskFileRefused, parse_psk, read_psk_file

CONF = 'path pre_shared_key "psk.txt";\n'


def test_format(tmp_path):
    text = (
        "# comment\n"
        "   # indented comment\n"
        "\n"
        "198.18.0.2\tplain\n"
        "198.18.0.3   0x0102abcdef\n"
        "198.18.0.4 0XNOT-HEX-PREFIX\n"
        "user@example.net  pass phrase with  two spaces \n"
        "host.example.net 0x123\n"
        "2001:DB8:0::9 v6\n"
        "198.18.0.2 second entry loses\n"
        "lonely-id\n"
        "198.18.0.5 0xzz\n"
    )
    table = parse_psk(text, "psk.txt")
    assert table.keys == {
        "198.18.0.2": b"plain",
        "198.18.0.3": bytes.fromhex("0102abcdef"),
        "198.18.0.4": b"0XNOT-HEX-PREFIX",  # only a lower-case 0x means hex, as in racoon
        "user@example.net": b"pass phrase with  two spaces ",
        "host.example.net": b"\x01\x23",  # odd length: a leading zero nibble
        "2001:db8::9": b"v6",
    }
    assert [(e.line, e.keyword) for e in table.errors] == [(12, "198.18.0.5")]
    assert [(w.line, w.keyword) for w in table.warnings] == [(10, "198.18.0.2"), (11, "lonely-id")]
    for problem in table.errors + table.warnings:
        assert "0xzz" not in str(problem) and "second entry" not in str(problem)


def test_keys_never_show_in_repr(tmp_path):
    table = parse_psk("198.18.0.2 topsecret\n", "psk.txt")
    assert "topsecret" not in repr(table.keys) and "topsecret" not in str(table.keys)
    assert "198.18.0.2" in repr(table.keys)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o610, 0o601, 0o666])
def test_readable_by_others_is_refused(write, mode):
    root = write({"racoon.conf": CONF, "psk.txt": "198.18.0.2 k\n"})
    os.chmod(root / "psk.txt", mode)
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert (error.file, error.line, error.keyword) == (
        str(root / "racoon.conf"),
        1,
        "pre_shared_key",
    )
    assert str(root / "psk.txt") in error.message
    assert f"{mode:04o}" in error.message
    with pytest.raises(PskFileRefused):
        read_psk_file(str(root / "psk.txt"))


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_private_file_is_accepted(write, mode):
    root = write({"racoon.conf": CONF, "psk.txt": "198.18.0.2 k\n"})
    os.chmod(root / "psk.txt", mode)
    config = pyike.config.load(str(root / "racoon.conf"))
    assert config.engine.psk == {"198.18.0.2": b"k"}
    assert str(root / "psk.txt") in config.sources


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_file_owned_by_another_user_is_refused(write):
    root = write({"racoon.conf": CONF, "psk.txt": "198.18.0.2 k\n"})
    os.chown(root / "psk.txt", 65534, -1)
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert "owned by" in error.message


def test_missing_or_not_regular_file(write):
    root = write({"racoon.conf": CONF})
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert "cannot read" in error.message and str(root / "psk.txt") in error.message
    (root / "psk.txt").mkdir()
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert "not a regular file" in error.message


def test_bad_hex_key_names_the_psk_file_and_line(write):
    root = write({"racoon.conf": CONF, "psk.txt": "# keys\n198.18.0.2 0xgg\n"})
    (error,) = pyike.config.check(str(root / "racoon.conf"))
    assert (error.file, error.line, error.keyword) == (str(root / "psk.txt"), 2, "198.18.0.2")
