"""Fixtures for the microVM interop tests: every test here is marked `interop`, needs root and
TUN, and shows the guest console's tail (and the daemons' logs) when it fails.

A peer's test module names its peer class as `PEER`; `peer_vm` boots that peer's image once per
module and `env` gives each scenario the VM with no daemon, no SA and no policy left from the
scenario before, its outer addresses in IPv4, plus a pyike that is always killed afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop import initramfs, peers
from tests.interop.pyike_side import pyike_beside
from tests.interop.scenarios import Env
from tests.interop.vm import PeerVm, boot_vm


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
        if isinstance(value, Env):
            with contextlib.suppress(Exception):
                report.sections.append(("daemons", value.diagnostics()))
            value = value.vm
        if isinstance(value, PeerVm):
            report.sections.append((f"guest console ({value.tap})", value.console_tail(80)))


@pytest.fixture(scope="module")
def peer_vm(request: pytest.FixtureRequest) -> Iterator[PeerVm]:
    peer_cls: type[peers.Peer] = request.module.PEER
    image = initramfs.build(peer_cls.image_spec())
    with boot_vm(image, peer_cls.name[:6]) as vm:
        peers.configure_gre(vm)
        yield vm


@pytest.fixture
def env(peer_vm: PeerVm, request: pytest.FixtureRequest) -> Iterator[Env]:
    peer = request.module.PEER(peer_vm)
    peer.reset()
    with pyike_beside(peer_vm) as pyike:
        try:
            yield Env(peer_vm, peer, pyike)
        finally:
            pyike.stop()
            peer.reset()
            peers.use_outer(peer_vm, "ipv4")  # what the scenario's Env.start(outer=) changed
