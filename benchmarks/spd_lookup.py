"""SPD lookup cost per packet for SPDs of growing size.

Columns, in microseconds per call, medians over rounds:
- memoised: the same flow again (what the data plane pays per packet of a running tunnel).
- first packet: a flow not seen before, the scan over the compiled selectors; the matching
  policy is the last one, the worst case.
- touch: recording lastused for the matched policy.

python -m benchmarks.spd_lookup [--rounds N] [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.report import fmt, summary, table
from spd.db import SPD
from spd.parse import parse_setkey

SIZES = (2, 20, 200, 2000)
GRE = 47
LOCAL, PEER = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def _spd(size: int) -> tuple[SPD, int]:
    """size-1 LAN policies that do not match, then the GRE transport policy that does."""
    lines = [f"spdadd 10.{i // 256}.{i % 256}.0/24 10.255.0.0/16 tcp -P out none;"
             for i in range(size - 1)]
    lines.append("spdadd 198.18.0.1/32[0] 198.18.0.2/32[0] gre -P out ipsec "
                 "esp/transport//require;")
    spd = SPD()
    spd.apply(parse_setkey("\n".join(lines), "bench.conf"), now=1.0)
    return spd, spd.lookup("out", LOCAL, PEER, GRE).spid


def _per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def run(rounds: int, smoke: bool, out_dir: Path) -> dict:
    calls = 2000 if smoke else 100_000
    results: dict = {}
    rows = []
    for size in SIZES[:2] if smoke else SIZES:
        spd, spid = _spd(size)
        memo = summary([_per_call(lambda s=spd: s.lookup("out", LOCAL, PEER, GRE, 0, 0, None),
                                  calls) for _ in range(rounds)])
        scan = summary([_per_call(lambda s=spd: s._scan("out", LOCAL, PEER, GRE, 0, 0, 0),
                                  max(calls // size, 20)) for _ in range(rounds)])
        touch = summary([_per_call(lambda s=spd, i=spid: s.touch(i, 2.0), calls)
                         for _ in range(rounds)])
        results[size] = {"memoised_us": memo, "first_packet_us": scan, "touch_us": touch}
        rows.append([str(size), fmt(memo["median"], 2), fmt(scan["median"], 2),
                     fmt(touch["median"], 2)])
    print(table("SPD lookup, microseconds per call (median)",
                ["policies", "memoised", "first packet", "touch"], rows))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="a few calls, to check it runs")
    opts = p.parse_args(argv)
    run(opts.rounds, opts.smoke, Path("."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
