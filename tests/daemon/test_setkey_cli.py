"""pyike-setkey as setkey(8) is run (-D, -DP, -F, -FP, -f, -c, -x, exit status) against a fake
daemon, and the live SPD/SAD changes it asks for (pyike.sadb.run_setkey)."""

from __future__ import annotations

import io
import json
import time

import pytest

from forward.state import SadState
from pyike import feed, setkey
from pyike.sadb import run_setkey
from spd.errors import SetkeyError
from spd.parse import parse_setkey
from tests.daemon.fakes import records, server_fixture

ENC = "0x" + "11" * 16
AUTH = "0x" + "22" * 20
ADD_OUT = f"add 198.18.0.1 198.18.0.2 esp 0x1001 -E aes-cbc {ENC} -A hmac-sha1 {AUTH};"
ADD_IN = f"add 198.18.0.2 198.18.0.1 esp 0x2002 -E aes-cbc {ENC} -A hmac-sha1 {AUTH};"
POLICY = "spdadd 198.18.0.1 198.18.0.2 gre -P out ipsec esp/transport//require;"
CHANGE = feed.sa_change("add", 0x1001, "198.18.0.1", "198.18.0.2", "out", enc="aes-cbc",
                        auth="hmac-sha1", now=1_000_000_000.25)


async def daemon(verb, args, want_json):
    if verb == "sad":
        return {"ok": True, "text": "No SAD entries.\n", "data": []}
    if verb == "spd":
        return {"ok": True, "text": "spd -p\n" if args == ["-p"] else "spd\n", "data": []}
    if verb == "setkey":
        try:
            parse_setkey(args[1], args[0])
        except SetkeyError as exc:
            return {"ok": False, "error": str(exc)}
        if "delete" in args[1]:
            return {"ok": False, "error": f"{args[0]}:1:1: no such SA to delete at '0x999'"}
        return {"ok": True, "text": "", "data": {"removed": [], "added": []}}
    if verb == "setkey-watch":
        return {"ok": True, "stream": records(CHANGE)}
    return {"ok": False, "error": f"unknown verb {verb!r}"}


srv = server_fixture(daemon)


def run(srv, *args):
    return setkey.main(["-s", srv.path, *args])


def test_dumps(srv, capsys):
    assert run(srv, "-D") == 0
    assert capsys.readouterr().out == "No SAD entries.\n"
    assert run(srv, "-DP") == 0 and capsys.readouterr().out == "spd\n"
    assert run(srv, "-D", "-P", "-p") == 0 and capsys.readouterr().out == "spd -p\n"
    assert run(srv, "-aD") == 0  # -a (dead SAs too) is accepted
    capsys.readouterr()
    assert run(srv, "-D", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["version"], doc["verb"], doc["data"]) == (1, "sad", [])
    assert [c[0] for c in srv.calls] == ["sad", "spd", "spd", "sad", "sad"]


def test_flushes_are_setkey_statements(srv):
    assert run(srv, "-F") == 0 and run(srv, "-FP") == 0
    assert [c[1] for c in srv.calls] == [["<flush>", "flush;"], ["<flush>", "spdflush;"]]


def test_a_file_runs_and_a_refused_one_names_its_line(srv, tmp_path, capsys):
    good = tmp_path / "good.conf"
    good.write_text(f"{POLICY}\n{ADD_OUT}\n")
    assert run(srv, "-f", str(good)) == 0
    assert srv.calls[-1] == ("setkey", [str(good), good.read_text()], False)
    bad = tmp_path / "bad.conf"
    bad.write_text("spdadd 198.18.0.1 198.18.0.2 gre -P sideways none;\n")
    assert run(srv, "-f", str(bad)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:1:") and "sideways" in err
    assert run(srv, str(good), str(good)) == 0  # setkey FILE ...: each file
    assert run(srv, "-f", str(tmp_path / "none.conf")) == 1
    assert "Can't open" in capsys.readouterr().err


def test_n_parses_without_asking_the_daemon(srv, tmp_path, capsys):
    bad = tmp_path / "bad.conf"
    bad.write_text(f"{ADD_OUT}\nspdadd 198.18.0.1 198.18.0.2 gre -P out bogus;\n")
    calls = len(srv.calls)
    assert run(srv, "-n", "-f", str(bad)) == 1 and f"{bad}:2:" in capsys.readouterr().err
    assert len(srv.calls) == calls
    assert ENC[2:] not in capsys.readouterr().err  # no key in a report


def test_c_runs_each_statement_as_it_is_read_and_goes_on_after_a_refusal(srv, monkeypatch,
                                                                        capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "# comment\nspdflush; flush;\n"
        "spdadd 198.18.0.1 198.18.0.2\n  gre -P out none;\n"
        "delete 198.18.0.1 198.18.0.2 esp 0x999;\n"
        f"{ADD_IN}\n"))
    assert run(srv, "-c") == 0  # as setkey -c
    sent = [c[1][1] for c in srv.calls]
    assert sent == ["spdflush;", "flush;", "spdadd 198.18.0.1 198.18.0.2   gre -P out none;",
                    "delete 198.18.0.1 198.18.0.2 esp 0x999;", ADD_IN]
    assert "no such SA to delete" in capsys.readouterr().out


def test_x_prints_each_change_as_a_pf_key_message(srv, capsys, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert run(srv, "-x") == 0
        out = capsys.readouterr().out
        assert run(srv, "-xx") == 0
        unix = capsys.readouterr().out
    finally:
        monkeypatch.undo()
        time.tzset()
    assert out == (
        "01:46:40.250000 \n"
        "sadb_msg{ version=2 type=3 errno=0 satype=3\n"
        "  len=10 reserved=0 seq=0 pid=0\n"
        "sadb_ext{ len=2 type=1 }\n"
        "sadb_sa{ spi=4097 replay=0 state=1\n"
        "  auth=3 encrypt=12 flags=0x00000000 }\n"
        "sadb_ext{ len=3 type=5 }\n"
        "sadb_address{ proto=0 prefixlen=32 reserved=0x0000 }\n"
        "sockaddr{ len=16 family=2 port=0\n"
        " c6120001  }\n"
        "sadb_ext{ len=3 type=6 }\n"
        "sadb_address{ proto=0 prefixlen=32 reserved=0x0000 }\n"
        "sockaddr{ len=16 family=2 port=0\n"
        " c6120002  }\n"
        "\n")
    assert unix.startswith("1000000000.250000 \nsadb_msg{")


def test_an_ipv6_change_and_a_deletion():
    text = setkey.sadb_dump(feed.sa_change("delete", 7, "2001:db8::1", "2001:db8::2", "in",
                                           state="dead"))
    assert "type=4 " in text and "state=3" in text and "len=14 " in text
    assert "sockaddr{ len=28 family=10 port=0\n  flowinfo=0x00000000, scope_id=0x00000000\n" \
        " 20010db8 00000000 00000000 00000001  }\n" in text


def test_usage_version_and_no_daemon(tmp_path, capsys):
    assert setkey.main([]) == 1 and capsys.readouterr().out.startswith("usage: pyike-setkey")
    assert setkey.main(["-V"]) == 1 and "pyike-setkey" in capsys.readouterr().out
    assert setkey.main(["-Q"]) == 1
    capsys.readouterr()
    assert setkey.main(["-s", str(tmp_path / "none.sock"), "-D"]) == 1
    assert "control socket" in capsys.readouterr().err


# --- what the forwarding process does with them -------------------------------------------


def _run(state: SadState, text: str) -> dict:
    return run_setkey(state, parse_setkey(text, "cmd"), ["198.18.0.1"], 100.0)


def test_run_setkey_adds_deletes_and_flushes_on_the_live_state():
    state = SadState()
    changes = _run(state, f"{POLICY}\n{ADD_OUT}\n{ADD_IN}\n")
    assert changes == {"removed": [], "added": [(0x1001, "198.18.0.1", "198.18.0.2", "out"),
                                                (0x2002, "198.18.0.2", "198.18.0.1", "in")]}
    assert len(state.spd) == 1 and state.inbound(0x2002) is not None
    assert state.outbound("198.18.0.1", "198.18.0.2").spi == 0x1001
    dump = state.dump("sad", 1e9, 100.0)
    assert dump.startswith("198.18.0.1 198.18.0.2 \n\tesp mode=transport spi=4097(0x00001001)")
    assert "\tE: aes-cbc  11111111 11111111 11111111 11111111\n" in dump  # -D prints keys
    changes = _run(state, "delete 198.18.0.2 198.18.0.1 esp 0x2002;")
    assert changes["removed"] == [(0x2002, "198.18.0.2", "198.18.0.1", "in")]
    assert state.inbound(0x2002) is None
    assert _run(state, "flush;")["removed"] == [(0x1001, "198.18.0.1", "198.18.0.2", "out")]
    _run(state, "spdflush;")
    assert len(state.spd) == 0


def test_run_setkey_is_all_or_nothing():
    state = SadState()
    _run(state, f"{POLICY}\n{ADD_OUT}\n")
    for text in (f"spdflush;\n{ADD_OUT}\n",  # the same SA twice
                 "flush;\ndelete 198.18.0.1 198.18.0.2 esp 0x1001;\n",  # gone by then
                 f"{ADD_IN}\nadd 198.18.0.3 198.18.0.1 esp 0x2002 -E aes-cbc {ENC} "
                 f"-A hmac-sha1 {AUTH};\n"):  # one inbound SPI twice
        with pytest.raises(SetkeyError) as info:
            _run(state, text)
        assert info.value.line == 2 and ENC[2:] not in str(info.value)
        assert len(state.spd) == 1 and [sa.spi for sa in state.sad] == [0x1001]
