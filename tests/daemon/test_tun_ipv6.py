"""The tunnel-mode device's routes of IPv6 networks: the device gets IPv6 first (the kernel
refuses an IPv6 route into a device whose IPv6 is off, as on a host that turns it off for new
devices), and nothing of the kind for IPv4 alone; in memory, with netlink and /proc faked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pyike import tun


class FakeIPRoute:
    """pyroute2's IPRoute as set_routes uses it; each route call recorded with the device's
    IPv6 setting at that moment."""

    def __init__(self, knob: Path, calls: list) -> None:
        self.knob, self.calls = knob, calls

    def __enter__(self) -> FakeIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def link_lookup(self, ifname: str) -> list[int]:
        return [7]

    def route(self, cmd: str, **kw: object) -> None:
        self.calls.append((cmd, kw, self.knob.read_text() if self.knob.exists() else None))


@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    knob = tmp_path / "tun1" / "disable_ipv6"
    knob.parent.mkdir()
    knob.write_text("1\n")  # what net.ipv6.conf.default.disable_ipv6=1 gives a new device
    calls: list = []
    monkeypatch.setattr(tun, "IPV6_CONF", tmp_path)
    monkeypatch.setattr(tun, "IPRoute", lambda: FakeIPRoute(knob, calls))
    dev = object.__new__(tun.TunDevice)  # no TUN device: only its name matters here
    dev.name = "tun1"
    dev._dev = SimpleNamespace(name="tun1")
    return dev, knob, calls


def test_an_ipv6_route_turns_ipv6_on_first(device) -> None:
    dev, knob, calls = device
    have: dict = {}
    dev.set_routes({"10.0.2.0/24": "10.0.1.1", "fd00:2::/64": "fd00:1::1"}, have)
    assert knob.read_text() == "0"
    assert [(kw["dst"], kw.get("prefsrc"), on) for _cmd, kw, on in calls] == [
        ("10.0.2.0/24", "10.0.1.1", "0"), ("fd00:2::/64", "fd00:1::1", "0")]
    assert have == {"10.0.2.0/24": "10.0.1.1", "fd00:2::/64": "fd00:1::1"}


def test_ipv4_routes_leave_ipv6_as_it_is(device) -> None:
    dev, knob, calls = device
    dev.set_routes({"10.0.2.0/24": None}, {})
    assert knob.read_text() == "1\n"
    assert [kw["dst"] for _cmd, kw, _on in calls] == ["10.0.2.0/24"]


def test_no_ipv6_in_the_kernel_leaves_the_route_to_fail(device) -> None:
    dev, knob, calls = device
    knob.unlink()
    knob.parent.rmdir()
    dev.set_routes({"fd00:2::/64": None}, {})
    assert [kw["dst"] for _cmd, kw, _on in calls] == ["fd00:2::/64"]
