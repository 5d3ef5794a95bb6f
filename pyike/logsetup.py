"""Where the log lines go, and in which layout.

- `-l FILE`: racoon's lines, `2026-01-12 21:43:15: INFO: ISAKMP-SA established ...`, in a file
  that is reopened when it is renamed or removed (logrotate without copytruncate).
- `-F` without `-l`: the same lines on stderr; under systemd (stderr is the journal) without
  the timestamp, which the journal adds, and with a `<N>` severity prefix the journal reads.
- detached without `-l`: syslog (`/dev/log`), facility daemon, tagged `pyike[PID]: `, no
  timestamp of ours (syslogd adds its own), as racoon logs. Without a syslog daemon the lines go
  to FALLBACK_LOGFILE, and one warning says so.

Nothing that logs may pass a key or a PSK; events are logged field by field, never by repr.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys

FORMAT = "%(asctime)s: %(levelname)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
SYSLOG_TAG = "pyike"
# racoon's syslog lines carry its level name but no timestamp; the pid tells the IKE process
# from the forwarding process
SYSLOG_FORMAT = SYSLOG_TAG + "[%(process)d]: %(levelname)s: %(message)s"
JOURNAL_FORMAT = "<%(syslog_severity)d>%(levelname)s: %(message)s"  # sd-daemon(3) prefixes
SYSLOG_ADDRESS = "/dev/log"
SYSLOG_FACILITY = logging.handlers.SysLogHandler.LOG_DAEMON  # racoon: openlog(..., LOG_DAEMON)
FALLBACK_LOGFILE = "/var/log/pyike.log"

# racoon.conf `log` levels (cfparse.y) -> Python levels
RACOON_LEVELS = {
    "error": logging.ERROR, "warning": logging.WARNING, "notify": logging.INFO,
    "info": logging.INFO, "debug": logging.DEBUG, "debug2": logging.DEBUG,
}


def level_for(config_level: str | None, verbose: int) -> int:
    """The root level: racoon.conf's `log`, or debug when -v or -d was given."""
    level = RACOON_LEVELS.get(str(config_level or "notify").lower(), logging.INFO)
    return logging.DEBUG if verbose else level


def syslog_severity(record: logging.LogRecord) -> int:
    """The syslog severity of a record (RFC 5424 §6.2.1), by the table SysLogHandler uses, so
    syslog and the journal agree."""
    handler = logging.handlers.SysLogHandler
    return handler.priority_names[handler.priority_map.get(record.levelname, "warning")]


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.syslog_severity = syslog_severity(record)
        return super().format(record)


def stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM to the `DEVICE:INODE` of the stream it connected to
    stderr (systemd.exec(5)); only then are the journal's timestamps ours."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


def syslog_handler(address: str = SYSLOG_ADDRESS) -> logging.Handler:
    """A handler sending `<PRI>pyike[PID]: LEVEL: message` datagrams; raises OSError when
    nothing listens at `address`."""
    # SysLogHandler itself ignores a failed connect and fails at each line instead
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
    handler = logging.handlers.SysLogHandler(address=address, facility=SYSLOG_FACILITY,
                                             socktype=socket.SOCK_DGRAM)
    handler.append_nul = False  # syslog(3) sends none; some syslogds would keep it
    handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    return handler


def file_handler(path: str) -> logging.Handler:
    """racoon's lines in `path`, reopened at the first line after the file was renamed or
    removed (logrotate without copytruncate), in both processes, with no signal needed."""
    handler = logging.handlers.WatchedFileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    return handler


def stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(_JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    return handler


def setup(level: int, *, foreground: bool, logfile: str | None,
          syslog_address: str = SYSLOG_ADDRESS, fallback: str = FALLBACK_LOGFILE) -> str | None:
    """Replace the root logger's handlers. Returns a warning (also logged once) when syslog was
    wanted but nothing listens at `syslog_address`, so the lines go to `fallback`, or to stderr
    if that cannot be opened either."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level)
    warning = None
    if logfile:
        handler = file_handler(logfile)
    elif foreground:
        handler = stderr_handler()
    else:
        try:
            handler = syslog_handler(syslog_address)
        except OSError as exc:
            try:
                handler = file_handler(fallback)
                where = fallback
            except OSError as file_exc:
                handler = stderr_handler()
                where = f"stderr ({fallback}: {file_exc.strerror or file_exc})"
            warning = f"no syslog at {syslog_address} ({exc.strerror or exc}): logging to {where}"
    root.addHandler(handler)
    if warning:
        logging.getLogger("pyike").warning("%s", warning)
    return warning



def level_name(level: int) -> str:
    """racoon's name for a root level, for the line a reload logs."""
    return next(name for name, lv in RACOON_LEVELS.items() if lv == level)


def set_level(level: int) -> bool:
    """A new root level (a reloaded `log` statement); True if it changed."""
    root = logging.getLogger()
    if root.level == level:
        return False
    root.setLevel(level)
    return True
