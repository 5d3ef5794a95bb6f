"""psk.txt: racoon's format and its refusal of files that others can read."""

from __future__ import annotations

import os

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import pyike.config
from pyike.config.errors import ConfigError
from pyike.config.psk import PskFileRefused, PskTable, parse_psk, read_psk_file

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
        "host.example.net 0x12 3\n"
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
        "2001:db8::9": b"v6",
    }
    assert [str(e) for e in table.errors] == [
        'psk.txt:8: the key for "host.example.net" has an odd number of hex digits',
        'psk.txt:12: the key for "198.18.0.5" is not valid hex (0x, then hex digits and blanks '
        "only)",
    ]
    assert [str(w) for w in table.warnings] == [
        'psk.txt:10: "198.18.0.2" appears again; the first wins',
        "psk.txt:11: an ID with no key after it; line ignored, as racoon does",
    ]
    for problem in table.errors + table.warnings:
        assert "0xzz" not in str(problem) and "second entry" not in str(problem)
        assert "lonely-id" not in repr(problem)  # a lone word may be a key without its ID


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


# -- blanks and control characters, as racoon's getpsk() and str2val() read them ---------------

RACOON_SKIPS = ["\f", "\v", "\r", " \t\f\v\r ", ""]  # isspace() in the C locale: no word at all


@pytest.mark.parametrize("line", RACOON_SKIPS)
def test_a_line_of_racoon_blanks_is_skipped(line):
    table = parse_psk(f"198.18.0.2 k\n{line}\n198.18.0.3 j\n", "psk.txt")
    assert (table.errors, table.warnings) == ([], [])
    assert table.keys == {"198.18.0.2": b"k", "198.18.0.3": b"j"}


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u00a0", "U+00A0 (NO-BREAK SPACE)"),
        ("\x1c", "U+001C (FILE SEPARATOR)"),
        ("\x1d", "U+001D (GROUP SEPARATOR)"),
        ("\x1e", "U+001E (RECORD SEPARATOR)"),
        ("\x1f", "U+001F (UNIT SEPARATOR)"),
        ("\x85", "U+0085 (control character)"),
        ("\u2028", "U+2028 (LINE SEPARATOR)"),
        ("\u3000", "U+3000 (IDEOGRAPHIC SPACE)"),
    ],
)
def test_a_blank_racoon_does_not_know_is_an_error_not_a_crash(char, name):
    """Python's str.split() takes these for blanks; racoon's isspace() does not, so a line of
    one of them alone, or one between ID and key, would be an ID to racoon."""
    expected = (
        f"column {{col}}: {name} in the ID: racoon ends an ID only at a space, tab, VT, FF or "
        "CR, so this character would be part of it; separate the ID from the key with spaces "
        "or tabs"
    )
    alone = parse_psk(f"# keys\n{char}\n", "psk.txt")
    assert [str(e) for e in alone.errors] == ["psk.txt:2: " + expected.format(col=1)]
    between = parse_psk(f"198.18.0.2{char}hidden-secret\n", "psk.txt")
    assert [str(e) for e in between.errors] == ["psk.txt:1: " + expected.format(col=11)]
    assert "hidden-secret" not in repr(between.errors) and not between.keys


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("gw 0x", 'the key for "gw" is empty: "0x" with no hex digits after it'),
        ("gw 0x\f\v\r", 'the key for "gw" is empty: "0x" with no hex digits after it'),
        ("gw 0x\x1c", 'the key for "gw" is not valid hex (0x, then hex digits and blanks only)'),
        ("gw 0x\u00a0", 'the key for "gw" is not valid hex (0x, then hex digits and blanks only)'),
        ("gw 0x0g", 'the key for "gw" is not valid hex (0x, then hex digits and blanks only)'),
        ("gw 0x123", 'the key for "gw" has an odd number of hex digits'),
        ("gw 0x12 3", 'the key for "gw" has an odd number of hex digits'),
    ],
)
def test_hex_keys_str2val_refuses_are_errors(line, message):
    table = parse_psk(f"# keys\n\n{line}\n", "psk.txt")
    assert [str(e) for e in table.errors] == [f"psk.txt:3: {message}"]
    assert not table.keys  # never an empty or shortened key


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("gw 0x01 02\t03", b"\x01\x02\x03"),  # str2val() skips blanks between the digits
        ("gw 0x0102\r", b"\x01\x02"),  # ... a CR too, so hex keys survive CRLF files
        ("gw\fsecret", b"secret"),  # FF, VT and CR end the ID as space and tab do
        ("gw\vsecret", b"secret"),
        ("gw \t\f secret  with blanks \t", b"secret  with blanks \t"),
        ("gw 0XAB", b"0XAB"),  # only a lower-case 0x means hex
        ("gw s\u00a0ecr\u00e9t", "s\u00a0ecr\u00e9t".encode()),  # a key's bytes as written
    ],
)
def test_keys_as_racoon_reads_them(line, key):
    table = parse_psk(line + "\n", "psk.txt")
    assert (table.errors, table.warnings) == ([], [])
    assert table.keys == {"gw": key}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "gw secret\r",
            'the key for "gw" ends in U+000D (CARRIAGE RETURN), as in a file with CRLF line '
            "ends; racoon would keep it as part of the key: convert the file to LF line ends",
        ),
        (
            "gw sec\x1cret",
            'the key for "gw" holds U+001C (FILE SEPARATOR); racoon would keep it as part of '
            "the key: remove it",
        ),
        (
            "gw sec\0ret",
            'the key for "gw" holds a NUL byte, where racoon would cut the key short: remove it',
        ),
        ("g\0w secret", "column 2: a NUL byte, where racoon stops reading the line: remove it"),
        (
            "\ufeffgw secret",
            "column 1: U+FEFF (ZERO WIDTH NO-BREAK SPACE), a byte-order mark in the ID: racoon "
            "ends an ID only at a space, tab, VT, FF or CR, so this character would be part of "
            "it; remove it",
        ),
        (
            "  gw secret",
            "the line starts with a blank: racoon reads an empty ID there and never uses this "
            "entry; remove the leading blanks",
        ),
        (
            "\fgw secret",
            "the line starts with a blank: racoon reads an empty ID there and never uses this "
            "entry; remove the leading blanks",
        ),
    ],
)
def test_control_characters_and_leading_blanks_are_errors(line, message):
    table = parse_psk(f"ok k\n{line}\n", "psk.txt")
    assert [str(e) for e in table.errors] == [f"psk.txt:2: {message}"]
    assert table.keys == {"ok": b"k"}
    assert "secret" not in repr(table.errors)


def test_a_crlf_file_is_read_as_racoon_reads_it(write):
    root = write({"racoon.conf": CONF})
    (root / "psk.txt").write_bytes(b"# keys\r\n198.18.0.2 0x0102\r\n198.18.0.3 plain\r\n")
    os.chmod(root / "psk.txt", 0o600)
    table = read_psk_file(str(root / "psk.txt"))
    assert table.keys == {"198.18.0.2": b"\x01\x02"}
    assert [(e.line, e.keyword) for e in table.errors] == [(3, "198.18.0.3")]
    assert "CRLF" in table.errors[0].message


def test_undecodable_bytes_are_kept_and_printable_in_messages(write):
    root = write({"racoon.conf": CONF})
    (root / "psk.txt").write_bytes(b"gw\xff k1\ngw\xff k2\n")
    os.chmod(root / "psk.txt", 0o600)
    table = read_psk_file(str(root / "psk.txt"))
    assert list(table.keys.values()) == [b"k1"]
    (warning,) = table.warnings
    assert str(warning) == f'{root / "psk.txt"}:2: "gw\\udcff" appears again; the first wins'
    str(warning).encode("utf-8")  # printable on any terminal


def test_psk_line_errors_reach_pyike_check(write):
    root = write({"racoon.conf": CONF, "psk.txt": "198.18.0.2 k\n\u00a0\n198.18.0.3 0x\n"})
    psk = root / "psk.txt"
    assert [str(e) for e in pyike.config.check(str(root / "racoon.conf"))] == [
        f"{psk}:2: column 1: U+00A0 (NO-BREAK SPACE) in the ID: racoon ends an ID only at a "
        "space, tab, VT, FF or CR, so this character would be part of it; separate the ID from "
        "the key with spaces or tabs",
        f'{psk}:3: the key for "198.18.0.3" is empty: "0x" with no hex digits after it',
    ]


# -- any text at all ----------------------------------------------------------------------

_ODD = "\0\t\n\v\f\r\x1c\x1d\x1e\x1f\x7f\x85\u00a0\u2028\ufeff #0xX"
_LINE_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(_ODD), st.characters(codec="utf-8")), max_size=60
)
MARK = "S3CR3T"


@settings(max_examples=500, deadline=None)
@given(st.lists(_LINE_TEXT, max_size=8))
def test_any_text_gives_a_table_and_file_line_reports_only(lines):
    text = "\n".join(lines)
    table = parse_psk(text, "psk.txt")
    assert isinstance(table, PskTable)
    for report in table.errors + table.warnings:
        assert isinstance(report, ConfigError)
        assert report.file == "psk.txt" and 1 <= report.line <= text.count("\n") + 1
        assert str(report).startswith(f"psk.txt:{report.line}: ")
        str(report).encode("utf-8")  # printable, whatever the file held
    assert all(isinstance(k, bytes) and k for k in table.keys.values())  # never an empty key


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters=" \t\n\v\f\r"), max_size=12),
    st.sampled_from([" ", "\t", "\f", "\v", "\r", "\u00a0", "\x1c", "", "  \t"]),
    _LINE_TEXT,
    _LINE_TEXT,
)
@example(ident="a", blank=" ", before="", after="\r0")  # a blank inside the key
def test_no_report_quotes_a_key(ident, blank, before, after):
    key = before.replace("\n", "") + MARK + after.replace("\n", "")
    line = f"{ident}{blank}{key}"
    # The identifier ends at the first C-locale blank: with none before MARK, MARK is part of
    # the identifier, which reports may name, not of the key.
    first_blank = next((i for i, ch in enumerate(line) if ch in " \t\v\f\r"), len(line))
    assume(first_blank < line.index(MARK))
    table = parse_psk(f"{line}\n{line}\n", "psk.txt")
    for report in table.errors + table.warnings:
        assert MARK not in str(report) and MARK not in repr(report)
    assert MARK not in repr(table.keys) and MARK not in str(table.keys)
