"""The TUN devices' receive offload (forward.gro) against a real kernel: TCP segments of a real
connection, written to pyike's TUN device as pyike.dataplane writes them, reach the socket
intact and in order, merged into few writes; a segment whose checksum fails is not merged, the
kernel drops it, and the data after it waits until it comes again."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.netns import PYTHON, REPO, in_ns

pytestmark = pytest.mark.netns

# Runs in a namespace of its own: pyike's TUN device with a listening socket behind it, and
# the far end of one TCP connection played through the device with scapy.
PROBE = """
import json, os, select, socket, subprocess, sys, time
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw
from forward.gro import NO_OFFLOAD, TUN_READ_SIZE, VNET_HEADER_LEN, coalesce
from pyike.tun import TunDevice

family, near, far, count, size = sys.argv[1], sys.argv[2], sys.argv[3], 20, 1000
v6 = family == "ipv6"
tun = TunDevice("gro0", near, far, 1400)
fd = tun.fileno()
if v6:  # an address is usable once duplicate address detection is over
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = open("/proc/net/if_inet6").read()
        if "gro0" in text and all(int(line.split()[4], 16) & 0x40 == 0
                                  for line in text.splitlines() if line.endswith("gro0")):
            break
        time.sleep(0.05)
    # the far end is routed into the device explicitly, as pyike routes networks into it
    subprocess.run(["ip", "-6", "route", "replace", far, "dev", "gro0"], check=True)
srv = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
srv.bind((near, 5000))
srv.listen(1)
srv.settimeout(5)


def ip():
    return IPv6(src=far, dst=near) if v6 else IP(src=far, dst=near, flags="DF")


def write(packets):
    writes = coalesce([(None, bytes(p)) for p in packets])
    for _, header, data in writes:
        os.writev(fd, (header, data))
    return [header != NO_OFFLOAD for _, header, _ in writes]


def answer():
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            pkt = os.read(fd, TUN_READ_SIZE)[VNET_HEADER_LEN:]
            parsed = (IPv6 if v6 else IP)(pkt)
            if TCP in parsed and parsed[TCP].flags.S:
                return parsed[TCP]
    raise SystemExit("no SYN-ACK")


def csum_errors():
    names, values = [line.split() for line in open("/proc/net/snmp").read().splitlines()
                     if line.startswith("Tcp:")]
    return int(values[names.index("InCsumErrors")])


write([ip() / TCP(sport=40000, dport=5000, flags="S", seq=999, window=65535)])
synack = answer()
ack = synack.seq + 1
write([ip() / TCP(sport=40000, dport=5000, flags="A", seq=1000, ack=ack, window=65535)])
conn, _ = srv.accept()
conn.settimeout(5)
data = [bytes([65 + i]) * size for i in range(count)]
segments = [bytes(ip() / TCP(sport=40000, dport=5000, flags="A", seq=1000 + i * size, ack=ack,
                              window=65535) / Raw(data[i])) for i in range(count)]
bad_at = count // 2
broken = bytearray(segments[bad_at])
broken[-1] ^= 0xFF
errors_before = csum_errors()
merged = write([*segments[:bad_at], bytes(broken), *segments[bad_at + 1:]])


def receive(want):
    got = b""
    while len(got) < want:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    return got


before_resend = receive(bad_at * size)
write([segments[bad_at]])  # the far end sends it again
after = receive((count - bad_at) * size)
print(json.dumps({"merged": merged, "before": before_resend == b"".join(data[:bad_at]),
                  "after": after == b"".join(data[bad_at:]),
                  "csum_errors": csum_errors() - errors_before}))
"""


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_merged_segments_reach_a_real_socket_intact(family):
    from tests.e2e.conftest import _can_run

    if reason := _can_run():
        pytest.skip(reason)
    ns = f"pkgro{os.getpid() % 10000}{family[-1]}"
    near, far = ("10.9.0.1", "10.9.0.2") if family == "ipv4" else ("fd00:9::1", "fd00:9::2")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        in_ns(ns, "ip", "link", "set", "lo", "up")
        out = in_ns(ns, "env", f"PYTHONPATH={REPO}", PYTHON, "-c", PROBE, family, near, far,
                    timeout=60)
        result = json.loads(out.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    # ten good segments in one write, the broken one alone, the nine after it in one write
    assert result["merged"] == [True, False, True]
    assert result["csum_errors"] == 1  # the kernel dropped the broken one, and only it
    assert result["before"] and result["after"]
