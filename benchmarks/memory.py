"""Memory per established phase-1 + phase-2 pair, as a pyike daemon would hold them.

How the pairs are built: a fresh child process creates one responder Engine (the IKE process's
engine, `remote anonymous`, pre-shared keys for every peer address) and the forwarding process's
SA state (forward.state.SadState). For each pair a throwaway initiator Engine with its own address
negotiates main mode + quick mode with the responder in memory (datagrams handed across, a fake
clock) with ECP-256 (group 19), so that 10,000 negotiations take seconds rather than minutes;
the responder keeps its ISAKMP SA and IPsec SA pair, the Phase2Up is kept as the daemon
keeps it, and both ESP SAs are installed in the SadState. The initiator is then dropped. The
child reports its resident set size (VmRSS) before the first pair and after 1, 100, 1,000 and
10,000 pairs; bytes per pair = (RSS(N) - RSS(0)) / N. Both processes' state is in one process
here, so the figure covers IKE and forwarding state together. Bounded by a time limit: the
last checkpoint reached is reported.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import report, setups

CHECKPOINTS = (1, 100, 1_000, 10_000)
SMOKE_CHECKPOINTS = (1, 10)
RESPONDER = "198.18.0.2"
FIRST_PEER = ipaddress.ip_address("198.18.4.1")
PSK = setups.PSK.encode()
TIME_LIMIT_S = 400.0
SMOKE_TIME_LIMIT_S = 30.0
GOAL_BYTES = 20 * 1024
DH_GROUP = 19  # ECP-256 (RFC 5903): the cheapest group, only to build the pairs quickly


def rss_bytes() -> int:
    """This process's resident set size (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def responder_config(peers: int):
    from ikev1.policy import EngineConfig, Phase1Proposal, Phase2Policy, RemotePolicy

    proposal = Phase1Proposal("aes", "sha1", DH_GROUP, key_length=128)
    return EngineConfig(
        local_addresses=(RESPONDER,),
        remotes=(RemotePolicy(remote="anonymous", proposals=(proposal,), passive=True,
                              initial_contact=False),),
        sainfos=(Phase2Policy(encryption=(("aes", 128),), authentication=("hmac_sha1",)),),
        psk={str(FIRST_PEER + i): PSK for i in range(peers)},
    )


def shuttle(a, a_addr: tuple[str, int], b, b_addr: tuple[str, int], now: float) -> int:
    """Hand datagrams between two engines until both are quiet; returns how many moved."""
    moved = 0
    for _ in range(64):  # main mode 6 + quick mode 3 messages, with room for notifies
        out_a = a.datagrams_to_send()
        out_b = b.datagrams_to_send()
        if not out_a and not out_b:
            return moved
        for data, _local, _peer in out_a:
            b.receive_datagram(data, b_addr, a_addr, now)
        for data, _local, _peer in out_b:
            a.receive_datagram(data, a_addr, b_addr, now)
        moved += len(out_a) + len(out_b)
    return moved


def establish(responder, state, pairs: dict, index: int, now: float) -> bool:
    """Negotiate one pair with a throwaway initiator; keep the responder's side of it."""
    from benchmarks.ikeload import engine_config
    from forward.specs import SaSpec
    from ikev1 import events as ev
    from ikev1.engine import Engine
    from ikev1.policy import TrafficSelector

    peer = str(FIRST_PEER + index)
    initiator = Engine(engine_config(peer, RESPONDER, PSK, pfs=False, group=DH_GROUP))
    initiator.initiate(
        RESPONDER, now,
        TrafficSelector(ipaddress.ip_network(f"{peer}/32"), 47),
        TrafficSelector(ipaddress.ip_network(f"{RESPONDER}/32"), 47),
    )
    shuttle(initiator, (peer, 500), responder, (RESPONDER, 500), now)
    while initiator.next_event() is not None:
        pass
    up = False
    while (event := responder.next_event()) is not None:
        if isinstance(event, ev.Phase2Up):
            pairs[event.inbound.spi] = event
            state.install((SaSpec(event.inbound, "in", event.lifetime_s, 0, event.peer),
                           SaSpec(event.outbound, "out", event.lifetime_s, 0, event.peer)), now)
            up = True
    return up


def measure(checkpoints: tuple[int, ...], time_limit: float) -> dict:
    """The child's work: build pairs up to each checkpoint, RSS at each (gc first)."""
    from forward.state import SadState
    from ikev1.engine import Engine

    # One pair on a throwaway responder first: lazy imports and caches are not per-pair state.
    establish(Engine(responder_config(1)), SadState(), {}, 0, 1.0)
    responder = Engine(responder_config(max(checkpoints)))
    state = SadState()
    pairs: dict = {}
    gc.collect()
    base = rss_bytes()
    started = time.monotonic()
    now = 1000.0
    built = failed = 0
    points = []
    for target in checkpoints:
        while built < target and time.monotonic() - started < time_limit:
            now += 0.001
            if establish(responder, state, pairs, built + failed, now):
                built += 1
            else:
                failed += 1
                if failed > 10 and built == 0:
                    raise RuntimeError("no pair could be established in memory")
        gc.collect()
        rss = rss_bytes()
        points.append({"pairs": built, "rss_bytes": rss,
                       "bytes_per_pair": (rss - base) / built if built else None})
        if built < target:
            break
    return {"baseline_rss_bytes": base, "points": points, "failed": failed,
            "phase1_sas": len(responder.phase1_sas()), "phase2_sas": len(responder.phase2_sas()),
            "sad_entries": len(list(state.sad)), "build_s": time.monotonic() - started}


def run(rounds: int, smoke: bool, out_dir: Path) -> dict:
    """Measure in a fresh child process (a clean baseline), then print and plot."""
    checkpoints = SMOKE_CHECKPOINTS if smoke else CHECKPOINTS
    limit = SMOKE_TIME_LIMIT_S if smoke else TIME_LIMIT_S
    argv = [sys.executable, "-m", "benchmarks.memory", "--child",
            "--checkpoints", ",".join(map(str, checkpoints)), "--time-limit", str(limit)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=limit + 120,
                            env=setups.python_env())
    if result.returncode != 0:
        return {"name": "memory", "error": result.stderr.strip()[-1000:]}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    rows = [[f"{p['pairs']:,}", report.fmt(p["rss_bytes"] / 2**20, 1),
             report.fmt(p["bytes_per_pair"] / 1024 if p["bytes_per_pair"] is not None else None,
                        2)]
            for p in data["points"]]
    print(report.table(
        f"memory: one process holding N phase-1 + phase-2 pairs (baseline RSS "
        f"{data['baseline_rss_bytes'] / 2**20:.1f} MiB; goal <= 20 KiB per pair)",
        ["pairs", "RSS MiB", "KiB per pair"], rows,
    ))
    print(f"  responder holds {data['phase1_sas']} phase-1 SAs, {data['phase2_sas']} phase-2 "
          f"SA pairs, {data['sad_entries']} ESP SAs; built in {data['build_s']:.1f} s")
    plots = []
    pts = [p for p in data["points"] if p["bytes_per_pair"] is not None]
    if pts:
        plots.append(report.line_plot(
            out_dir / "memory_per_pair.png", "Resident memory per established pair",
            "established phase-1 + phase-2 pairs", "KiB per pair",
            {"pyike (engine + SAD)": ([p["pairs"] for p in pts],
                                      [p["bytes_per_pair"] / 1024 for p in pts])},
            logx=True,
        ))
    last = data["points"][-1] if data["points"] else None
    data.update({
        "name": "memory",
        "goal_bytes_per_pair": GOAL_BYTES,
        "bytes_per_pair": last["bytes_per_pair"] if last else None,
        "plots": [str(p) for p in plots if p],
    })
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--child", action="store_true", help="measure in this process")
    parser.add_argument("--checkpoints", default=",".join(map(str, CHECKPOINTS)))
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S)
    args = parser.parse_args(argv)
    checkpoints = tuple(int(x) for x in args.checkpoints.split(","))
    if args.child:
        print(json.dumps(measure(checkpoints, args.time_limit)), flush=True)
        return 0
    print(json.dumps(run(1, False, Path("bench-out")), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
