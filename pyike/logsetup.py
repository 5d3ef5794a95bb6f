"""racoon-like log lines: `2026-01-12 21:43:15: INFO: ISAKMP-SA established ...`.

Nothing that logs may pass a key or a PSK; events are logged field by field, never by repr.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s: %(levelname)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"

# racoon.conf `log` levels (cfparse.y) -> Python levels
RACOON_LEVELS = {
    "error": logging.ERROR, "warning": logging.WARNING, "notify": logging.INFO,
    "info": logging.INFO, "debug": logging.DEBUG, "debug2": logging.DEBUG,
}


def level_for(config_level: str | None, verbose: int) -> int:
    level = RACOON_LEVELS.get(str(config_level or "notify").lower(), logging.INFO)
    return logging.DEBUG if verbose else level


def setup(level: int, *, foreground: bool, logfile: str | None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if logfile:
        handler: logging.Handler = logging.FileHandler(logfile)
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    else:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root.addHandler(handler)
    root.setLevel(level)
