"""sd_notify(3) over a fake $NOTIFY_SOCKET: the datagrams' exact bytes, the abstract namespace,
and a reload reported from its start to its end, also when it is refused."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
import time

import pytest

from pyike import sdnotify
from tests.daemon.conftest import reload_beside_fake_forwarding, seed_daemon


@pytest.fixture
def manager(monkeypatch):
    """A unix datagram socket standing for systemd's, at a short path (sun_path is 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn") as directory:
        path = os.path.join(directory, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        try:
            yield sock
        finally:
            sock.close()


def test_fields_go_out_as_one_datagram(manager):
    assert sdnotify.ready("2 tunnel(s)") is True
    assert manager.recv(4096) == b"READY=1\nSTATUS=2 tunnel(s)"
    assert sdnotify.stopping() is True
    assert manager.recv(4096) == b"STOPPING=1"


def test_reloading_carries_the_monotonic_clock(manager):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    m = re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=(\d+)", manager.recv(4096))
    assert m and before <= int(m[1]) <= after


def test_abstract_namespace_address(monkeypatch):
    name = f"pyike-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1") is True
        assert sock.recv(4096) == b"READY=1"


def test_without_a_manager_nothing_is_sent_and_nothing_fails(monkeypatch, tmp_path):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready("x") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.stopping() is False


def test_a_reload_is_reported_from_start_to_end_even_when_refused(manager, seed):
    d = seed_daemon(seed)
    errors, _ = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == []
    assert manager.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
    assert manager.recv(4096).startswith(b"READY=1\nSTATUS=1 tunnel(s), 0 IPsec-SA pair(s)")
    conf = seed / "racoon.conf"
    conf.write_text(conf.read_text() + "frobnicate;\n")
    errors, _ = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors
    assert manager.recv(4096).startswith(b"RELOADING=1\n")
    assert manager.recv(4096).startswith(b"READY=1\n")
