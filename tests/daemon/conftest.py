"""Fixtures of the IKE process's unit tests: router a's seed files, a root logger put back as
it was, and a reload beside a stand-in forwarding process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path

import pytest

from pyike import daemon as daemon_mod
from pyike import pipe
from pyike.config import load

SEED_A = Path(__file__).resolve().parents[2] / "examples" / "seed" / "a"


@pytest.fixture
def root_logger():
    """The test's handlers and level are its own; the root logger is put back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def seed(tmp_path) -> Path:
    """A copy of router a's racoon.conf, setkey.conf and psk.txt."""
    for f in SEED_A.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "psk.txt").chmod(0o600)
    return tmp_path


def log_in_child(logger: str, text: str) -> int:
    """Log one INFO line from a forked child, as the forwarding process would; its pid."""
    child = os.fork()
    if child == 0:
        try:
            logging.getLogger(logger).info("%s", text)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    return child


def seed_daemon(seed: Path, verbose: int = 0) -> daemon_mod.Daemon:
    conf = str(seed / "racoon.conf")
    return daemon_mod.Daemon(load(conf), conf, verbose=verbose)


async def reload_beside_fake_forwarding(d: daemon_mod.Daemon) -> tuple[list[str], list[tuple]]:
    """`d.reload()` with a forwarding process that accepts every `tunnels` message; returns
    the reload's errors and what the forwarding process was sent."""
    ours, theirs = pipe.make_pipe()
    ours.setblocking(False)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    d.forwarding.sock, d.stopping = ours, asyncio.Event()
    seen: list[tuple] = []

    def answer() -> None:
        with contextlib.suppress(BlockingIOError):
            while (msg := pipe.recv(theirs)) is not None:
                seen.append(msg)
                if msg[0] == "tunnels":
                    pipe.send(theirs, "reply", msg[1], None)

    loop.add_reader(ours.fileno(), d.forwarding.readable)
    loop.add_reader(theirs.fileno(), answer)
    try:
        errors = await asyncio.wait_for(d.reload(), 10)
        answer()
    finally:
        loop.remove_reader(ours.fileno())
        loop.remove_reader(theirs.fileno())
        d.forwarding.sock = None
        ours.close()
        theirs.close()
    return errors, seen
