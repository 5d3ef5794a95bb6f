"""scripts/demo.sh's program: it succeeds, shows the SAs, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.e2e.netns import PYTHON, REPO

pytestmark = pytest.mark.netns


@pytest.mark.parametrize(("args", "mode"), [((), "transport"), (("--tunnel",), "tunnel")])
def test_demo_runs_and_cleans_up(args, mode):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out = subprocess.run([PYTHON, "-m", "tests.e2e.demo", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    text = out.stdout
    for marker in ("==> pyikectl ss isakmp", "==> pyikectl ss esp", "==> pyikectl sad",
                   f"esp mode={mode}", "E: aes-cbc", "works"):
        assert marker in text, marker
    prefix = text.split("==> namespaces ", 1)[1].split(",", 1)[0][:-2]  # e.g. pkdemo123
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left
