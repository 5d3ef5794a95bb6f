"""Router a under a flood of forged main-mode first messages while the tunnel comes up.

    attacker (198.18.7.2) ==veth== (198.18.7.1) router-a (198.18.0.1) ==veth== router-b ...

The attacker sends FLOOD_COUNT IKEv1 main-mode message 1 (random initiator cookie, zero
responder cookie, Identity Protection, an SA payload router a's `remote` accepts) to router a's
UDP 500 at up to FLOOD_RATE a second, with router b's address as the source and random source
ports, from a raw socket (IP_HDRINCL). Such messages may not make a believe it is already
negotiating with b, crowd out the exchange b really starts, or cost a's negotiation time: the
tunnel has to come up within GRACE_S of the time it took unflooded, measured first in the same
test, whichever end starts it, and still carry traffic once the flood is over. The flood
stops by itself (count and time limit); the attacker's namespace and everything in it is
removed after the test, also on failure.

Run as a module (`python -m tests.e2e.test_flood --flood ...`) it is the flood itself, which
the test starts inside the attacker's namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.e2e.netns import LAN, OUTER, PYTHON, REPO, SEED, in_ns, sh

pytestmark = pytest.mark.netns

ATTACK_LINK = ("198.18.7.1", "198.18.7.2")  # router a's end, the attacker's end (/24)
FLOOD_COUNT = 20_000
FLOOD_RATE = 5_000  # per second, at most
FLOOD_TIME_LIMIT_S = 30.0  # the flood stops after this long whatever it has sent
FLOOD_LEAD_S = 0.5  # the flood runs this long before the first packet that needs the tunnel
# The flooded bring-up may take this much longer than the unflooded one: room for one message
# lost to a full socket buffer and resent (racoon's `timer { interval 10 sec; }`), none for
# what the attacks cause (an acquire given up after `phase1 30 sec`, half-open exchanges that
# stand for the peer until their resends run out after a minute).
GRACE_S = 15.0
REFERENCE_DEADLINE_S = 30


class TunnelNotUp(AssertionError):
    """The tunnel did not come up under the flood within the allowed time."""


# --- the flood (runs in the attacker's namespace) -------------------------------------------


def flood(src: str, dst: str, count: int, rate: float, time_limit: float, seed: int) -> dict:
    """Send `count` forged MM1s from `src` (random ports and cookies) to `dst`:500 at up to
    `rate` a second; stop after `time_limit` seconds in any case."""
    from benchmarks.attack import spoofed_mm1

    rng = random.Random(seed)
    tail = spoofed_mm1()[8:]
    udp_len = 8 + 8 + len(tail)
    # Linux fills in the IP checksum (and an ID, being zero) of an IP_HDRINCL packet.
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64,
                            socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    print("started", flush=True)
    sent = refused = 0
    started = time.monotonic()
    elapsed = 0.0
    while sent < count:
        elapsed = time.monotonic() - started
        if elapsed > time_limit:
            break
        due = min(count, int(elapsed * rate) + 1)
        while sent < due:
            udp = struct.pack("!HHHH", rng.randint(1, 65535), 500, udp_len, 0)  # no checksum
            try:
                sock.sendto(ip_header + udp + rng.randbytes(8) + tail, (dst, 0))
            except OSError:  # ENOBUFS: the queue is full; what is sent counts
                refused += 1
                break
            sent += 1
        time.sleep(0.002)
    sock.close()
    return {"sent": sent, "refused": refused, "elapsed_s": time.monotonic() - started}


class Flood:
    """The flood in the attacker's namespace, as a process of its own; always stopped."""

    def __init__(self, ns: str, *, seed: int) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, PYTHON, "-m", "tests.e2e.test_flood", "--flood",
             "--src", OUTER["b"], "--dst", OUTER["a"], "--count", str(FLOOD_COUNT),
             "--rate", str(FLOOD_RATE), "--time-limit", str(FLOOD_TIME_LIMIT_S),
             "--seed", str(seed)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)

    def wait_started(self) -> None:
        line = self.proc.stdout.readline()  # "started" once the raw socket is open
        if line.strip() != "started":
            self.stop()
            raise RuntimeError(f"the flood did not start: {line}{self.proc.stderr.read()}")

    def finish(self) -> dict:
        out, err = self.proc.communicate(timeout=FLOOD_TIME_LIMIT_S + 15)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the flood failed: {err[-2000:]}")
        return json.loads(out.strip().splitlines()[-1])

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=5)

    def __enter__(self) -> Flood:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def attacker(topo):
    """A namespace with a veth into router a; it routes b's address to a."""
    ns = f"{topo.prefix}ak"
    sh("ip", "netns", "add", ns)
    try:
        in_ns(ns, "ip", "link", "set", "lo", "up")
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        a = topo.ns["a"]
        sh("ip", "link", "add", "atk0", "netns", a, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        in_ns(a, "ip", "addr", "add", f"{ATTACK_LINK[0]}/24", "dev", "atk0")
        in_ns(a, "ip", "link", "set", "atk0", "up")
        # b's address arriving on the attacker's link is what a spoofer on a's segment shows;
        # reverse-path filtering would hide it.
        for conf in ("all", "atk0"):
            in_ns(a, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")
        in_ns(ns, "ip", "addr", "add", f"{ATTACK_LINK[1]}/24", "dev", "eth0")
        in_ns(ns, "ip", "link", "set", "eth0", "up")
        in_ns(ns, "ip", "route", "add", f"{OUTER['a']}/32", "via", ATTACK_LINK[0])
        yield ns
    finally:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)


def start_routers(topo) -> None:
    for r in topo.routers.values():
        r.start()
    topo.route_lans()


def stop_routers(topo) -> None:
    for r in topo.routers.values():
        r.stop()


def first_reply_after(topo, src: str, dst: str, deadline_s: float) -> float | None:
    """Seconds from the first echo request (which starts the negotiation) to the first reply;
    None when none came within the deadline."""
    t0 = time.monotonic()
    out = topo.ping(src=src, dst=dst, count=1, interval=0.2, deadline=math.ceil(deadline_s))
    elapsed = time.monotonic() - t0
    return elapsed if out.returncode == 0 else None


def established_row(rows: list[dict], local: str, peer: str) -> dict | None:
    for row in rows:
        if (row.get("src"), row.get("dst")) == (local, peer) and (
                row.get("state") == "established" or row.get("racoon_state") == 9):
            return row
    return None


def check_established(topo) -> None:
    """`pyikectl ss isakmp` and `status --json` on both routers show the tunnel up."""
    for side, other in (("a", "b"), ("b", "a")):
        r = topo.routers[side]
        rows = r.ctl_json("ss", "isakmp")
        assert established_row(rows, OUTER[side], OUTER[other]), \
            f"router {side}: no established ISAKMP-SA with {OUTER[other]}: {summary(rows)}"
        text = r.ctl("-ll", "ss", "isakmp").stdout  # racoonctl's layout with the source
        assert any(f"{OUTER[side]}.500" in line and OUTER[other] in line
                   and line.split()[3] == "9" for line in text.splitlines()[1:]), text[:2000]
        status = r.ctl_json("status")
        assert status["phase1"] >= 1 and status["phase2"] >= 1, status


def summary(rows: list[dict]) -> str:
    """ISAKMP-SAs counted by (side, state, peer)."""
    counts = Counter((r.get("side"), r.get("state"), r.get("dst")) for r in rows)
    return ", ".join(f"{n} x {side} {state} with {peer}"
                     for (side, state, peer), n in counts.most_common(6)) or "none"


def ike_received(router) -> int | None:
    status = router.ctl_json("status")
    value = status.get("daemon", {}).get("ike_in")
    return value if value is not None else status.get("engine", {}).get("received")


def log_lines(router, *needles: str, limit: int = 8) -> str:
    text = router.log.read_text(errors="replace") if router.log.exists() else ""
    hits = [line for line in text.splitlines() if any(n in line for n in needles)]
    return "\n".join(hits[-limit:])


def diagnose(topo, initiator: str, elapsed: float | None, allowed: float, flood_result: dict
             ) -> str:
    a = topo.routers["a"]
    rows = a.ctl_json("ss", "isakmp")
    towards_b = [r for r in rows if r.get("dst") == OUTER["b"]]
    initiating = [r for r in towards_b if r.get("side") == "initiator"]
    status = a.ctl_json("status")
    return "\n".join([
        f"{initiator} initiated; first reply after "
        f"{'none' if elapsed is None else f'{elapsed:.1f} s'}, allowed {allowed:.1f} s",
        f"flood: {flood_result}",
        f"router a ISAKMP-SAs: {len(rows)} ({summary(rows)}); "
        f"initiator ISAKMP-SAs towards b: {len(initiating)}",
        f"router a engine counters: {status.get('engine')}",
        "router a log:", log_lines(a, "initiate", "phase 1", "negotiation", "established"),
        "router b log:", log_lines(topo.routers["b"], "initiate", "phase 1", "negotiation",
                                   "established"),
    ])


# --- the tests ------------------------------------------------------------------------------


def test_the_forged_mm1_is_one_router_a_answers(tmp_path):
    """The flood's message is one a's configuration accepts: a answers it with message 2."""
    import pyike.config
    from benchmarks.attack import is_mm2_for, spoofed_mm1
    from ikev1.engine import Engine

    for name in ("racoon.conf", "setkey.conf", "psk.txt"):
        text = (SEED / "a" / name).read_text()
        text = text.replace("/etc/pyike/", f"{tmp_path}/").replace("/run/pyike/", f"{tmp_path}/")
        (tmp_path / name).write_text(text)
    os.chmod(tmp_path / "psk.txt", 0o600)
    engine = Engine(pyike.config.load(str(tmp_path / "racoon.conf")).engine)
    cookie = bytes.fromhex("0123456789abcdef")
    spoofed_from = (OUTER["b"], 40_000)
    engine.receive_datagram(spoofed_mm1(cookie), (OUTER["a"], 500), spoofed_from, 1.0)
    replies = engine.datagrams_to_send()
    assert any(is_mm2_for(data, cookie) and peer == spoofed_from for data, _l, peer in replies), \
        replies


@pytest.mark.timeout(240)
@pytest.mark.parametrize("initiator", ["a", "b"])
def test_tunnel_comes_up_during_spoofed_mm1_flood(topo, attacker, initiator):
    src, dst = ("la", LAN["b"][1]) if initiator == "a" else ("lb", LAN["a"][1])
    topo.write_configs()

    # Unflooded, on the same namespaces and configuration: the reference time.
    start_routers(topo)
    reference = first_reply_after(topo, src, dst, REFERENCE_DEADLINE_S)
    assert reference is not None, "no tunnel even without the flood"
    check_established(topo)
    stop_routers(topo)

    # Fresh daemons, the flood running first; then the packet that needs the tunnel.
    start_routers(topo)
    a = topo.routers["a"]
    received_before = ike_received(a)
    allowed = reference + GRACE_S
    with Flood(attacker, seed=1 if initiator == "a" else 2) as attack:
        attack.wait_started()
        time.sleep(FLOOD_LEAD_S)
        elapsed = first_reply_after(topo, src, dst, allowed)
        during_flood = attack.running()
        flood_result = attack.finish()
    flood_result["tunnel_up_while_flooding"] = during_flood

    # The flood was sent and reached a's IKE socket: otherwise this test proves nothing.
    assert flood_result["sent"] >= 0.9 * FLOOD_COUNT, flood_result
    received = ike_received(a)
    assert received is not None and received_before is not None
    assert received - received_before >= 0.5 * FLOOD_COUNT, (received_before, received)

    if elapsed is None or elapsed > allowed:
        raise TunnelNotUp(diagnose(topo, initiator, elapsed, allowed, flood_result))
    check_established(topo)
    out = topo.ping(src=src, dst=dst, count=3, interval=0.2)
    assert " 0% packet loss" in out.stdout, out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.test_flood")
    parser.add_argument("--flood", action="store_true", required=True)
    parser.add_argument("--src", required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--count", type=int, default=FLOOD_COUNT)
    parser.add_argument("--rate", type=float, default=FLOOD_RATE)
    parser.add_argument("--time-limit", type=float, default=FLOOD_TIME_LIMIT_S)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = flood(args.src, args.dst, min(args.count, FLOOD_COUNT), args.rate,
                   min(args.time_limit, FLOOD_TIME_LIMIT_S), args.seed)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
