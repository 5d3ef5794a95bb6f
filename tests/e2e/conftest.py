"""Fixtures for the end-to-end tests: a fresh topology per test, always torn down."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from tests.e2e.netns import Topology

_runs = itertools.count(1)


def _can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", "ping", "tcpdump"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


@pytest.fixture
def topo(request):
    reason = _can_run()
    if reason:
        pytest.skip(reason)
    t = Topology(f"pk{os.getpid() % 100000}t{next(_runs)}")
    try:
        t.create()
        yield t
    finally:
        t.destroy()
