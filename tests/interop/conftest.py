"""Fixtures for the microVM interop tests: every test here is marked `interop`, needs root and
TUN, and shows the guest console's tail when it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.interop.vm import PeerVm


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)
            if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
                item.add_marker(pytest.mark.skip(reason="interop tests need root and /dev/net/tun"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        vms = value if isinstance(value, list | tuple) else [value]
        for vm in vms:
            if isinstance(vm, PeerVm):
                report.sections.append((f"guest console ({vm.tap})", vm.console_tail(80)))
