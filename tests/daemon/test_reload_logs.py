"""Log rotation and the `log` level on reload: a renamed `-l` file is followed by a new one in
both processes, and a reload applies a changed `log` statement (a refused one changes nothing)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pyike import logsetup
from tests.daemon.conftest import log_in_child, reload_beside_fake_forwarding, seed_daemon

pytestmark = pytest.mark.usefixtures("root_logger")


def test_a_renamed_log_file_is_followed_by_a_new_one(tmp_path):
    path = tmp_path / "pyike.log"
    logsetup.setup(logging.INFO, foreground=True, logfile=str(path))
    log = logging.getLogger("pyike")
    log.info("before")
    path.rename(tmp_path / "pyike.log.1")
    log.info("after")
    assert (tmp_path / "pyike.log.1").read_text().endswith(": INFO: before\n")
    assert path.read_text().endswith(": INFO: after\n") and "before" not in path.read_text()


def test_the_forwarding_process_follows_the_rotation_too(tmp_path):
    """It is forked after set-up and ignores SIGHUP; its handler notices the rename itself."""
    path = tmp_path / "pyike.log"
    logsetup.setup(logging.INFO, foreground=True, logfile=str(path))
    logging.getLogger("pyike").info("parent, before")
    path.rename(tmp_path / "pyike.log.1")
    log_in_child("pyike.dataplane", "child, after")
    assert path.read_text().endswith(": INFO: child, after\n")


def test_reload_after_rotation_logs_into_the_new_file_and_applies_the_log_level(seed):
    path = seed / "pyike.log"
    conf = seed / "racoon.conf"
    d = seed_daemon(seed)
    logsetup.setup(logsetup.level_for(d.config.log_level, 0), foreground=True,
                   logfile=str(path))
    path.rename(seed / "pyike.log.1")
    conf.write_text(conf.read_text().replace("log notify;", "log debug;"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == []
    text = path.read_text()
    assert "configuration reloaded" in text
    assert "configuration reloaded" not in (seed / "pyike.log.1").read_text()
    assert logging.getLogger().level == logging.DEBUG
    assert ("log_level", logging.DEBUG) in seen
    # back to `error`: info lines stop in this process, and the forwarding process is told
    conf.write_text(conf.read_text().replace("log debug;", "log error;"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == [] and ("log_level", logging.ERROR) in seen
    assert logging.getLogger().level == logging.ERROR
    assert path.read_text().count("configuration reloaded") == 1  # the second is info


def test_an_unchanged_level_is_not_sent_and_a_refused_reload_keeps_the_level(seed):
    conf = seed / "racoon.conf"
    d = seed_daemon(seed)
    logsetup.setup(logging.INFO, foreground=True, logfile=str(seed / "pyike.log"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == [] and not [m for m in seen if m[0] == "log_level"]
    conf.write_text(conf.read_text().replace("log notify;", "log debug;\nfrobnicate;"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors and logging.getLogger().level == logging.INFO
    assert seen == []


def test_debug_from_the_command_line_outlives_a_reload(seed):
    conf = seed / "racoon.conf"
    d = seed_daemon(seed, verbose=1)
    logsetup.setup(logsetup.level_for("notify", 1), foreground=True,
                   logfile=str(seed / "pyike.log"))
    conf.write_text(conf.read_text().replace("log notify;", "log error;"))
    errors, seen = asyncio.run(reload_beside_fake_forwarding(d))
    assert errors == [] and logging.getLogger().level == logging.DEBUG
    assert not [m for m in seen if m[0] == "log_level"]


def test_the_forwarding_process_applies_a_level_it_is_sent():
    from pyike.dataplane import DataPlane

    plane = DataPlane.__new__(DataPlane)  # only its control dispatch, no sockets
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    plane._control(("log_level", logging.ERROR), 0.0)
    assert root.level == logging.ERROR
