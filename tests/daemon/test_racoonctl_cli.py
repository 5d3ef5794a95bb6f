"""pyikectl as racoonctl is run: commands and short forms, options, exit status, what is
waited for, against a fake daemon on a real control socket."""

from __future__ import annotations

import json

import pytest

from pyike import ctl, feed
from tests.daemon.fakes import records, server_fixture

ROW = {"src": "198.18.0.1", "src_port": 500, "dst": "198.18.0.2", "dst_port": 500,
       "icookie": "a3e1b8ebf4926cc6", "rcookie": "0cc6ac95c4f8141e", "state": "established",
       "racoon_state": 9, "side": "initiator", "exchange": "main", "created": 1e9, "phase2": 1}
UP1 = feed.event(feed.EVT_PHASE1_UP, ("198.18.0.1", 500), ("198.18.0.2", 500))
CFG = feed.event(feed.EVT_PHASE1_MODE_CFG, ("198.18.0.1", 500), ("198.18.0.2", 500))
UP2 = feed.event(feed.EVT_PHASE2_UP, ("198.18.0.1", 500), ("198.18.0.2", 500))
DOWN1 = feed.event(feed.EVT_PHASE1_DOWN, ("198.18.0.1", 500), ("198.18.0.2", 500))
FAIL = feed.event(feed.EVT_PHASE1_NO_RESPONSE, ("198.18.0.1", 500), ("198.18.0.2", 500))


async def daemon(verb, args, want_json):
    if verb == "show-sa":
        return {"ok": True, "text": "isakmp text\n" if args == ["isakmp"] else "esp text\n",
                "data": [ROW] if args == ["isakmp"] else []}
    if verb == "establish-sa":
        if "198.18.0.9" in args:
            return {"ok": False, "error": "an ISAKMP-SA with 198.18.0.9 is up", "errno": "EEXIST"}
        if "-w" in args:
            events = [FAIL] if "198.18.0.66" in args else [UP1, CFG, UP2]
            return {"ok": True, "stream": records(*events)}
        return {"ok": True, "text": "negotiating with 198.18.0.2\n"}
    if verb == "delete-all-sa":
        return {"ok": True, "text": "", "stream": records(DOWN1)}
    if verb == "show-event":
        return {"ok": True, "stream": records(UP1, UP2)}
    if verb in ("flush-sa", "delete-sa", "reload-config", "show-schedule", "status"):
        return {"ok": True, "text": f"{verb} done\n", "data": {"verb": verb}}
    return {"ok": False, "error": f"unknown verb {verb!r}"}


srv = server_fixture(daemon)


def run(srv, *args):
    return ctl.main(["-s", srv.path, *args])


@pytest.mark.parametrize("short, verb, args", [
    ("rc", "reload-config", []), ("sc", "show-schedule", []), ("fs", "flush-sa", ["isakmp"]),
    ("ds", "delete-sa", ["esp", "inet", "198.18.0.1", "198.18.0.2", "gre"]),
    ("es", "establish-sa", ["isakmp", "inet", "198.18.0.1", "198.18.0.2"]),
    ("st", "status", []),
])
def test_short_forms(srv, capsys, short, verb, args):
    assert run(srv, short, *args) == 0
    assert srv.calls[-1][:2] == (verb, args)
    assert capsys.readouterr().out == f"{verb} done\n" or verb == "establish-sa"


def test_show_sa_isakmp_levels_are_built_from_the_rows(srv, capsys):
    for flags, header in (([], "Destination            Cookies                           Created"),
                          (["-l"], "Destination            Cookies                           ST"),
                          (["-ll"], "Source "), (["-l", "-l"], "Source ")):
        assert run(srv, *flags, "ss", "isakmp") == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(header) and len(lines) == 2, flags
    assert srv.calls[-1] == ("show-sa", ["isakmp"], True)


def test_show_sa_esp_is_the_daemons_setkey_dump(srv, capsys):
    assert run(srv, "show-sa", "esp") == 0
    assert capsys.readouterr().out == "esp text\n"


@pytest.mark.parametrize("args, message", [
    (["show-sa"], "insufficient arguments"), (["show-sa", "isakmp", "x"], "insufficient"),
    (["show-sa", "gre"], "unknown protocol gre"), (["flush-sa"], "insufficient arguments"),
    (["fs", "nonsense"], "unknown protocol nonsense"), (["ds"], "insufficient arguments"),
    (["es", "-u", "alice", "isakmp", "198.18.0.2"], "XAuth is not supported"),
    (["vc", "-u", "alice", "198.18.0.2"], "XAuth is not supported"),
    (["vc"], "VPN gateway required"), (["se", "extra"], "too many arguments"),
    (["status", "-f", "yaml"], "usage: status"),
])
def test_refused_before_asking_the_daemon(srv, capsys, args, message):
    assert run(srv, *args) == 1
    assert message in capsys.readouterr().err
    assert srv.calls == []


def test_an_unknown_command_and_the_usage(srv, capsys):
    assert run(srv, "frobnicate") == 1
    assert capsys.readouterr().out == "Invalid command [frobnicate]\n"
    # racoonctl prints its usage and exits 0, without a command or on an unknown option
    assert ctl.main([]) == 0 and "usage:" in capsys.readouterr().out
    assert ctl.main(["-q", "ss", "isakmp"]) == 0 and "usage:" in capsys.readouterr().out
    assert srv.calls == []


def test_establish_sa_that_is_up_already_is_success(srv, capsys):
    assert run(srv, "es", "isakmp", "inet", "198.18.0.1", "198.18.0.9") == 0
    assert capsys.readouterr() == ("", "")


def test_establish_w_waits_for_its_event(srv, capsys):
    assert run(srv, "es", "-w", "isakmp", "inet", "198.18.0.1", "198.18.0.2") == 0
    assert capsys.readouterr().out == "VPN connexion established\n"
    assert run(srv, "es", "-n", "peer", "-w", "esp", "inet", "198.18.0.1", "198.18.0.2") == 0
    assert capsys.readouterr().out == "Phase 2 established : 198.18.0.1[500] -> 198.18.0.2[500]\n"
    assert srv.calls[-1][1][:3] == ["-n", "peer", "-w"]  # passed on as written


def test_establish_w_fails_when_the_stream_ends_without_it(srv, capsys):
    assert run(srv, "es", "-w", "isakmp", "inet", "198.18.0.1", "198.18.0.66") == 1
    out = capsys.readouterr()
    assert out.out == "" and "ended without the SA" in out.err


def test_vpn_connect_and_disconnect(srv, capsys):
    assert run(srv, "vc", "198.18.0.2") == 0
    assert capsys.readouterr().out == "VPN connexion established\n"
    assert srv.calls[-1][:2] == ("establish-sa", ["-w", "isakmp", "198.18.0.2"])
    assert run(srv, "vd", "198.18.0.2") == 0
    assert capsys.readouterr().out == "Phase 1 deleted : 198.18.0.1[500] -> 198.18.0.2[500]\n"
    assert srv.calls[-1][:2] == ("delete-all-sa", ["-w", "isakmp", "198.18.0.2"])


def test_show_event_streams_until_the_daemon_ends_it(srv, capsys):
    assert run(srv, "se") == 1  # racoonctl's stream ends only with racoon, as a failure
    assert capsys.readouterr().out.splitlines() == [
        "Phase 1 established : 198.18.0.1[500] -> 198.18.0.2[500]",
        "Phase 2 established : 198.18.0.1[500] -> 198.18.0.2[500]"]
    assert run(srv, "--json", "se") == 1
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["data"]["type"] for d in docs] == [feed.EVT_PHASE1_UP, feed.EVT_PHASE2_UP]
    assert all(d["version"] == 1 and "T" in d["data"]["time"] for d in docs)


def test_debug_prints_the_request_and_status_takes_racoonctls_format_words(srv, capsys):
    assert run(srv, "-d", "status", "-v", "-f", "json") == 0
    out = capsys.readouterr()
    assert json.loads(out.err) == {"verb": "status", "args": [], "json": True}
    assert json.loads(out.out)["data"] == {"verb": "status"}
