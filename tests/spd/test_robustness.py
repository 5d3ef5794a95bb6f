"""Whatever the file holds, the parser answers with a result or a SetkeyError, nothing else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spd.db import SPD
from spd.parse import SetkeyError, parse_setkey
from spd.protocols import builtin_table, load_protocols, parse_protocols

WORDS = [
    "spdadd", "spdupdate", "spddelete", "spdflush", "flush", "add", "delete", "deleteall",
    "exit", "-P", "-4", "-6", "-n", "in", "out", "fwd", "prio", "priority", "high", "low",
    "def", "+", "-", "ipsec", "none", "discard", "esp", "ah", "ipcomp", "transport", "tunnel",
    "require", "use", "unique", "unique:5", "unique:99999", "default", "me", "any", "gre",
    "icmp6", "tcp", "135,0", "1,2,3", "1234", "0.0.4.210", "10.0.0.1", "10.0.0.0", "::",
    "fe80::1%eth0", "2001:db8::1", "/", "/24", "/129", "[", "]", "[any]", "[4500]", "[99999]",
    ";", "\n", "#", "\"", "\"key\"", "-E", "-A", "-m", "-r", "-u", "-lh", "-f", "aes-cbc",
    "rijndael-cbc", "hmac-sha1", "hmac-sha256", "0x1000", "0x", "0xzz", "0x" + "ab" * 16,
    "0x" + "cd" * 20, "-", "%", "$", "\t", "4294967296", "-1", "00", "9" * 30,
]
FUZZ = settings(max_examples=400, deadline=None)


@FUZZ
@given(st.lists(st.sampled_from(WORDS), max_size=40), st.sampled_from([" ", "", "\n"]))
def test_token_soup_never_escapes_as_another_exception(words, sep):
    text = sep.join(words)
    try:
        sk = parse_setkey(text, "fuzz.conf", protocols=builtin_table())
    except SetkeyError as e:
        assert e.file == "fuzz.conf" and e.line >= 1 and e.col >= 1
        return
    try:
        sk.manual_sas()
        SPD().apply(sk, now=1.0)
    except SetkeyError:
        pass


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_never_escapes_as_another_exception(text):
    try:
        parse_setkey(text, "fuzz.conf", protocols=builtin_table())
    except SetkeyError:
        pass


def test_builtin_names_agree_with_the_system_table(tmp_path):
    """The fallback table against an independent source: the system's protocols(5) file."""
    system = load_protocols()
    builtin = builtin_table()
    if system.by_name.keys() == builtin.by_name.keys():
        return  # the system had no file: nothing independent to compare
    for name, number in builtin.by_name.items():
        if name in system.by_name:
            assert system.by_name[name] == number, name


def test_missing_or_empty_protocols_file_falls_back(tmp_path):
    assert load_protocols(str(tmp_path / "absent")).number("gre") == 47
    empty = tmp_path / "protocols"
    empty.write_text("# nothing here\n")
    table = load_protocols(str(empty))
    assert table.number("gre") == 47 and table.name(58) == "ipv6-icmp"
    assert table.number("icmp6") == 58 and table.number("ip4") == 4  # setkey's own fallbacks
    assert table.name(255) == "255"
    odd = parse_protocols("big 300 BIG\nneg -1\nok 7 OK\n")
    assert odd.number("big") is None and odd.number("OK") == 7
