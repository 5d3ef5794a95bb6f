"""The control socket: JSON lines, mode 0600, bad requests answered, pyikectl's output."""

import asyncio
import json
import os
import stat

import pytest

from pyike import ctl
from pyike.admin import AdminServer, request
from tests.daemon.fakes import Server


async def handler(verb, args, want_json):
    if verb == "boom":
        raise RuntimeError("exploded")
    if verb == "status":
        return {"ok": True, "text": "all good\n", "data": {"pid": 42, "created": 0.0}}
    return {"ok": False, "error": f"unknown verb {verb!r}"}


@pytest.fixture
def server(tmp_path):
    with Server(str(tmp_path / "sub" / "pyike.sock"), handler) as s:
        yield s


def test_socket_mode_is_0600(server):
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


def test_request_reply(server):
    reply = request(server.path, "status", ["x"], True)
    assert reply == {"ok": True, "text": "all good\n", "data": {"pid": 42, "created": 0.0}}
    assert server.calls == [("status", ["x"], True)]


def test_failing_verb_is_an_error_reply_and_server_survives(server):
    reply = request(server.path, "boom")
    assert reply["ok"] is False and "exploded" in reply["error"]
    assert request(server.path, "status")["ok"] is True


def test_bad_json_is_refused(server):
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server.path)
        s.sendall(b"{not json\n")
        reply = json.loads(s.makefile().readline())
    assert reply["ok"] is False and "bad request" in reply["error"]
    assert server.calls == []


def test_pyikectl_text_json_and_exit_codes(server, capsys):
    assert ctl.main(["-s", server.path, "status"]) == 0
    assert capsys.readouterr().out == "all good\n"
    assert ctl.main(["-s", server.path, "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["version"], doc["verb"], doc["data"]) == (1, "status", {"pid": 42,
                                                                         "created": None})
    assert ctl.main(["-s", server.path, "spd"]) == 1
    assert "unknown verb" in capsys.readouterr().err


def test_pyikectl_without_daemon(tmp_path, capsys):
    # racoonctl: a daemon it cannot reach is exit status 1, as every other failure
    assert ctl.main(["-s", str(tmp_path / "none.sock"), "status"]) == 1
    assert "none.sock" in capsys.readouterr().err


def test_owner_and_group_as_racoons_adminsock(tmp_path):
    import grp

    async def handler(verb, args, want_json):
        return {"ok": True}

    async def run():
        server = AdminServer(str(tmp_path / "s.sock"), 0o660, handler, owner="0",
                             group=grp.getgrgid(1).gr_name)
        await server.start()
        st = os.stat(server.path)
        await server.close()
        return st

    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    st = asyncio.run(run())
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 1, 0o660)
