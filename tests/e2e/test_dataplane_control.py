"""The forwarding process refuses bad control messages without stopping."""

from __future__ import annotations

import json

import pytest

from tests.e2e.netns import PYTHON, REPO, in_ns

pytestmark = pytest.mark.netns

SCRIPT = """
import json
from ikev1.events import EspKeys
from pyike import pipe
from pyike.dataplane import start
from forward.specs import SaSpec
from spd.parse import parse_setkey

pid, sock = start([], [])
assert pipe.recv(sock) == ("ready",)
out = []
bad = EspKeys(5, "198.18.0.1", "198.18.0.2", "aes-cbc", bytes(16), "hmac-sha1", bytes(20))
pipe.send(sock, "install", (SaSpec(bad, "out"),))
out.append(pipe.recv(sock))
pipe.send(sock, "query", 1, "nonsense")
out.append(pipe.recv(sock))
out.append(pipe.recv(sock))
refused = parse_setkey("spddelete 198.18.0.1 198.18.0.2 any -P out;\\n", "x.conf")
pipe.send(sock, "setkey", [refused])
out.append(pipe.recv(sock))
good = EspKeys(0x1234, "198.18.0.1", "198.18.0.2", "aes-cbc", bytes(16), "hmac-sha1", bytes(20))
pipe.send(sock, "install", (SaSpec(good, "out"),))
pipe.send(sock, "query", 2, "sad_json")
out.append(pipe.recv(sock))
pipe.send(sock, "stop")
import os
out.append(os.waitpid(pid, 0)[1])
print(json.dumps(out, default=str))
"""


def test_refused_messages_leave_forwarding_running(topo):
    res = in_ns(topo.ns["a"], PYTHON, "-c", SCRIPT, cwd=REPO, timeout=30)
    install_err, query_err, query_reply, setkey_err, sad, status = json.loads(res.stdout)
    assert install_err[0] == "error" and install_err[1].startswith("install:")
    assert query_err[0] == "error" and query_reply == ["reply", 1, None]
    assert setkey_err[0] == "error" and setkey_err[1].startswith("setkey:")
    assert sad[0] == "reply" and [e["spi"] for e in sad[2]] == [0x1234]
    assert status == 0
