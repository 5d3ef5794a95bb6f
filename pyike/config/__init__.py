"""pyike's configuration: racoon.conf (with includes), psk.txt and setkey.conf files.

config = pyike.config.load("/etc/racoon/racoon.conf")   # raises ConfigErrors
problems = pyike.config.check("/etc/racoon/racoon.conf")  # [] when all is well
config, problems = pyike.config.load_all(path)            # both, from one reading
"""

from __future__ import annotations

from pyike.config.errors import ConfigError, ConfigErrors
from pyike.config.load import load_all
from pyike.config.model import DaemonConfig, GreTunnel, TunnelDevice


def load(path: str) -> DaemonConfig:
    """Read the configuration at `path` and every file it pulls in; raise ConfigErrors."""
    config, errors = load_all(path)
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def check(path: str) -> list[ConfigError]:
    """Every error in the configuration at `path` and the files it pulls in."""
    return load_all(path)[1]


__all__ = ["ConfigError", "ConfigErrors", "DaemonConfig", "GreTunnel", "TunnelDevice", "check",
           "load", "load_all"]
