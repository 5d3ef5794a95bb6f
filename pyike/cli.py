"""pyike: the daemon's command line, with racoon's flags.

    pyike -f CONF [-F] [-v] [-d] [-l LOGFILE] [-t]
    pyike --version | -V

-t checks CONF and every file it pulls in, running every check the daemon runs at start (the
setkey files are applied to an empty SPD and SAD by the forwarding process's own function, with
no socket or device opened), and prints `OK` or `FILE:LINE: message` lines.
Without -F the daemon detaches, writes its pid file, and the command returns once it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from pyike import logsetup
from pyike.version import version

if TYPE_CHECKING:
    from pyike.config.errors import ConfigError

log = logging.getLogger("pyike")

DEFAULT_CONF = "/etc/racoon/racoon.conf"
DEFAULT_PIDFILE = "/run/pyike/pyike.pid"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyike", description="IKEv1 daemon with a GRE/ESP data plane")
    p.add_argument("-f", dest="conf", default=DEFAULT_CONF, help="racoon.conf to use")
    p.add_argument("-F", dest="foreground", action="store_true", help="stay in the foreground")
    p.add_argument("-v", dest="verbose", action="count", default=0, help="more verbose logs")
    p.add_argument("-d", dest="debug", action="count", default=0, help="debug logs")
    p.add_argument("-l", dest="logfile", help="log to this file")
    p.add_argument("-t", dest="test", action="store_true", help="check the configuration, exit")
    p.add_argument("-V", "--version", action="version", version=f"pyike {version()}",
                   help="print the version, exit")  # racoon -V prints its version too
    return p


def format_error(err: ConfigError) -> str:
    return f"{err.where}: {err.message}"


def format_warning(warning: ConfigError) -> str:
    return f"{warning.where}: warning: {warning.message}"


def check(path: str) -> int:
    """`pyike -t`: warnings on stderr, then `OK` (exit 0) or each error (exit 1). The checks are
    those of the start (`run` loads the configuration the same way), so a configuration that
    passes here is not refused at start for what it says."""
    from pyike import config

    cfg, errors = config.load_all(path)
    if errors:
        for err in errors:
            print(format_error(err))
        return 1
    for warning in cfg.warnings:
        print(format_warning(warning), file=sys.stderr)
    print("OK")
    return 0


def _load(path: str):
    """The configuration, read once; None (after printing every error) when it has errors."""
    from pyike import config

    cfg, errors = config.load_all(path)
    for err in errors:
        print(format_error(err), file=sys.stderr)
    return None if errors else cfg


def _detach() -> int | None:
    """Double fork. Returns the readiness pipe's write end in the daemon; never returns in the
    caller, which exits with the daemon's start-up status."""
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        status = os.read(r, 512)
        if status != b"ok":
            msg = status.decode(errors="replace") or "daemon exited during start-up"
            print(f"pyike: {msg}", file=sys.stderr)
            os._exit(1)
        os._exit(0)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")  # hold no directory busy; every path we keep is absolute
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return w


def _write_pidfile(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def run(opts: argparse.Namespace) -> int:
    opts.conf = os.path.abspath(opts.conf)  # reloads happen after the daemon left its cwd
    if opts.logfile:
        opts.logfile = os.path.abspath(opts.logfile)
    cfg = _load(opts.conf)
    if cfg is None:
        return 1
    level = logsetup.level_for(getattr(cfg, "log_level", None), opts.verbose + opts.debug)
    try:  # before detaching, so that the command can still say what is wrong with the logs
        warning = logsetup.setup(level, foreground=opts.foreground, logfile=opts.logfile)
    except OSError as exc:
        print(f"pyike: cannot log to {opts.logfile}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if warning:
        print(f"pyike: warning: {warning}", file=sys.stderr)
    ready_fd = None if opts.foreground else _detach()
    pidfile = getattr(cfg, "pidfile", None) or DEFAULT_PIDFILE

    from pyike.daemon import Daemon

    def ready() -> None:
        if ready_fd is not None:
            os.write(ready_fd, b"ok")
            os.close(ready_fd)

    def remove_pidfile() -> None:
        if not opts.foreground:
            with contextlib.suppress(OSError):
                os.unlink(pidfile)

    daemon = None
    try:
        daemon = Daemon(cfg, opts.conf, verbose=opts.verbose + opts.debug)
        # the forwarding process must not hold the start-up pipe open after we report
        daemon.start_dataplane(close_fds=() if ready_fd is None else (ready_fd,))
        if not opts.foreground:
            _write_pidfile(pidfile)
        daemon.on_ready = ready
        code = asyncio.run(daemon.run())
    except Exception as exc:
        if daemon is not None:
            daemon.close()  # the forwarding process and its TUN devices, if still there
        remove_pidfile()  # before the waiting command hears of the failure
        log.error("cannot run: %s", exc, exc_info=opts.verbose + opts.debug > 0)
        if ready_fd is not None:
            os.write(ready_fd, str(exc).encode()[:500])
        else:
            print(f"pyike: {exc}", file=sys.stderr)
        return 1
    remove_pidfile()
    return code


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.test:
        return check(opts.conf)
    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
