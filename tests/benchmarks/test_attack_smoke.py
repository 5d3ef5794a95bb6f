"""The spoofed-MM1 benchmark runs in smoke mode through the CLI and prints its three tables.

Nothing about speed is asserted: only that every figure was measured, that the pair negotiates
in memory without the flood (the harness works) and that the forged messages were answered
(they are ones the responder accepts, so their cost is the cost of a real first message).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_attack_smoke_through_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "attack", "--smoke", "--rounds", "1", "--json",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    for title in ("attack a) tunnel bring-up", "attack b) responder cost",
                  "attack c) listing"):
        assert title in result.stdout
    doc = json.loads(result.stdout[result.stdout.index("\n{") + 1:])
    attack = doc["attack"]
    assert "error" not in attack, attack.get("error")
    assert attack["table"] in result.stdout
    bring_up = attack["bring_up"]
    assert set(bring_up) == ({f"{i}@{r}" for i in ("a", "b") for r in (0, 1_000, 10_000)}
                            | {f"{i}@10000/arrival" for i in ("a", "b")})
    for initiator in ("a", "b"):
        unflooded = bring_up[f"{initiator}@0"]
        assert unflooded["up"] and unflooded["bring_up_ms"]["median"] > 0, unflooded["runs"]
    for row in bring_up.values():
        assert row["up"] or row["verdict"].startswith(("not up", "wall-clock"))
        if row["rate"]:
            assert sum(run["spoofed"] for run in row["runs"]) > 0
    points = attack["cost"]["points"]
    assert [p["sas"] for p in points] == [0, 10, 50]
    for p in points:
        assert p["mm1_us"]["median"] > 0 and p["mm1_varied_us"]["median"] > 0, p
        assert p["answered"] > 0, p
    for call in ("phase1_sas", "phase2_sas", "ss", "status"):
        stats = attack["cost"]["listing"][call]
        assert stats["median"] is not None and stats["median"] >= 0, (call, stats)
