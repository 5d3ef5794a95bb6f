"""The NAT-T port's socket filters (pyike.sockfilter) in a real kernel: which datagrams reach
the IKE process's UDP socket and which the forwarding process's raw UDP socket."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from pyike import sockfilter
from tests.e2e.netns import OUTER, PYTHON, REPO, in_ns

# Runs in router a's namespace: both filtered sockets as the daemon makes them, then one
# datagram of each kind to its own outer address, then what each socket got.
PROBE = """
import json, socket, sys
from pyike import sockfilter
addr, natt = sys.argv[1], int(sys.argv[2])
ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ike.bind((addr, natt))
ike500 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ike500.bind((addr, 500))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
attached = [sockfilter.attach(ike, sockfilter.ike_program(), "IKE"),
            sockfilter.attach(raw, sockfilter.esp_in_udp_program(natt), "raw")]
sent = {"ike": (natt, b"\\0\\0\\0\\0" + b"i" * 28), "esp": (natt, b"\\0\\0\\1\\0" + b"e" * 28),
        "keepalive": (natt, b"\\xff"), "short": (natt, b"\\1\\2\\3\\4\\5"),
        "esp-shortest": (natt, b"\\0\\0\\1\\1" + b"m" * 4),
        "esp-to-500": (500, b"\\0\\0\\1\\0" + b"f" * 28)}
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port, data in sent.values():
    tx.sendto(data, (addr, port))
names = {data: name for name, (_port, data) in sent.items()}
got = {}
for sock, key, header in ((ike, "ike", 0), (raw, "raw", 28), (ike500, "ike500", 0)):
    sock.setblocking(False)
    got[key] = []
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            break
        got[key].append(names.get(data[header:], data.hex()))
print(json.dumps({"attached": attached, "got": got}))
"""


@pytest.mark.netns
@pytest.mark.parametrize("natt_port", [4500, 4501])
def test_filters_split_the_natt_port(topo, natt_port):
    out = in_ns(topo.ns["a"], "env", f"PYTHONPATH={REPO}", PYTHON, "-c", PROBE, OUTER["a"],
                str(natt_port))
    result = json.loads(out.stdout)
    assert result["attached"] == [True, True]
    got = result["got"]
    # Everything but ESP reaches IKE; ESP to the NAT-T port and nothing else reaches the
    # forwarding process (RFC 3948 §2.2: the non-ESP marker; §2.3: the one-byte keepalive).
    assert sorted(got["ike"]) == ["ike", "keepalive", "short"]
    assert sorted(got["raw"]) == ["esp", "esp-shortest"]
    assert got["ike500"] == ["esp-to-500"]  # port 500 has no filter: not ESP's port


@pytest.mark.parametrize("program", [sockfilter.ike_program(),
                                     sockfilter.esp_in_udp_program(4500)])
def test_the_kernel_takes_both_programs(program):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        assert sockfilter.attach(sock, program, "test socket")
        # SO_GET_FILTER (the same number) gives the program back; Linux reports its length
        # in instructions, so what comes back is that many bytes of it
        back = sock.getsockopt(socket.SOL_SOCKET, sockfilter.SO_ATTACH_FILTER, 256)
        assert len(back) == len(program) and b"".join(program).startswith(back)


def test_a_refused_filter_is_logged_and_not_fatal(caplog):
    jump_past_the_end = [sockfilter._insn(sockfilter._JEQ_K, 0, 5, 5)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            caplog.at_level(logging.WARNING, logger="pyike"):
        assert not sockfilter.attach(sock, jump_past_the_end, "IKE NAT-T socket")
    assert "no socket filter on the IKE NAT-T socket" in caplog.text
