"""Where the logs go: syslog datagrams as racoon sends them (facility daemon, a program tag, no
second timestamp), the fallback when no syslog daemon listens, and the journal's layout."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

import pytest

from pyike import logsetup
from tests.daemon.conftest import log_in_child

DAEMON = 3  # syslog facility `daemon` (RFC 5424 §6.2.1)
SEVERITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


pytestmark = pytest.mark.usefixtures("root_logger")


@pytest.fixture
def fake_syslog(tmp_path):
    """A unix datagram socket where /dev/log would be."""
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_syslog_datagrams_are_racoons_layout_under_facility_daemon(fake_syslog):
    path, sock = fake_syslog
    assert logsetup.setup(logging.DEBUG, foreground=False, logfile=None,
                          syslog_address=path) is None
    log = logging.getLogger("pyike")
    pid = os.getpid()
    sent = [(log.error, "error", "ERROR", "reload refused: x"),
            (log.warning, "warning", "WARNING", "DPD: remote 198.18.0.2[500] seems to be dead"),
            (log.info, "info", "INFO", "ISAKMP-SA established 198.18.0.1[500]-198.18.0.2[500]"),
            (log.debug, "debug", "DEBUG", "92 bytes message received")]
    for emit, _severity, _name, text in sent:
        emit("%s", text)
    for _emit, severity, name, text in sent:
        pri = DAEMON * 8 + SEVERITY[severity]
        assert sock.recv(2048) == f"<{pri}>pyike[{pid}]: {name}: {text}".encode()


def test_syslog_tag_carries_the_pid_of_the_process_that_logs(fake_syslog):
    """The forwarding process is forked after set-up; its lines name its own pid."""
    path, sock = fake_syslog
    logsetup.setup(logging.INFO, foreground=False, logfile=None, syslog_address=path)
    child = log_in_child("pyike.dataplane", "from the child")
    assert sock.recv(2048) == f"<30>pyike[{child}]: INFO: from the child".encode()


def test_level_filters_syslog_too(fake_syslog):
    path, sock = fake_syslog
    logsetup.setup(logsetup.level_for("warning", 0), foreground=False, logfile=None,
                   syslog_address=path)
    logging.getLogger("pyike").info("not sent")
    logging.getLogger("pyike").warning("sent")
    assert sock.recv(2048).endswith(b": WARNING: sent")


def test_without_syslog_the_fallback_file_gets_the_lines_and_one_warning(tmp_path):
    fallback = tmp_path / "pyike.log"
    warning = logsetup.setup(logging.INFO, foreground=False, logfile=None,
                             syslog_address=str(tmp_path / "no-such-socket"),
                             fallback=str(fallback))
    assert warning is not None and str(fallback) in warning and "no-such-socket" in warning
    for n in range(3):
        logging.getLogger("pyike").info("line %d", n)
    lines = fallback.read_text().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith(f"WARNING: {warning}") and TIMESTAMP.match(lines[0])
    assert [line.split(": ", 1)[1] for line in lines[1:]] == [
        f"INFO: line {n}" for n in range(3)]


def test_without_syslog_or_fallback_file_stderr_gets_them(tmp_path, capsys):
    warning = logsetup.setup(logging.INFO, foreground=False, logfile=None,
                             syslog_address=str(tmp_path / "no-such-socket"),
                             fallback=str(tmp_path / "no-such-dir" / "pyike.log"))
    assert warning is not None and "stderr" in warning
    logging.getLogger("pyike").info("still seen")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no-such-socket" in err[0] and err[1].endswith("INFO: still seen")


def test_log_file_and_plain_stderr_keep_the_timestamp(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logfile = tmp_path / "pyike.log"
    logsetup.setup(logging.INFO, foreground=True, logfile=str(logfile))
    logging.getLogger("pyike").info("to the file")
    assert TIMESTAMP.match(logfile.read_text()) and capsys.readouterr().err == ""
    logsetup.setup(logging.INFO, foreground=True, logfile=None)
    logging.getLogger("pyike").info("to stderr")
    err = capsys.readouterr().err
    assert TIMESTAMP.match(err) and err.endswith(": INFO: to stderr\n")


def test_stderr_that_is_the_journal_gets_severity_prefixes_and_no_timestamp(tmp_path,
                                                                            monkeypatch):
    stream = open(tmp_path / "journal", "w")  # noqa: SIM115 - closed below
    try:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logsetup.setup(logging.INFO, foreground=True, logfile=None)
        logging.getLogger("pyike").error("bad")
        logging.getLogger("pyike").info("good")
        stream.flush()
        assert (tmp_path / "journal").read_text() == "<3>ERROR: bad\n<6>INFO: good\n"
        # another stream's numbers (stderr redirected by the unit's user) are not the journal
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not logsetup.stderr_is_journal()
    finally:
        stream.close()
