"""What `pyike.config.load()` returns: the daemon's whole configuration as frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ikev1.policy import EngineConfig
from pyike.config.errors import ConfigError

DEFAULT_ADMINSOCK = "/run/pyike/pyike.sock"
DEFAULT_ADMINSOCK_MODE = 0o600
DEFAULT_PIDFILE = "/run/pyike/pyike.pid"
RUN_DIR = "/run/pyike"  # where a relative `path pidfile` lands, as racoon uses /var/run


@dataclass(frozen=True)
class GreTunnel:
    """A `gre "NAME" { local A; remote B; address X peer Y; [mtu N;] [key K;] }` block."""

    name: str  # the TUN device to create
    local: str  # outer source address (ours)
    remote: str  # outer destination address (the peer)
    address: str  # the tunnel interface's own inner address
    peer: str  # the far end's inner address
    mtu: int | None = None  # None: outer path MTU minus GRE and ESP overhead
    key: int | None = None  # GRE key (RFC 2890 §2.1), None: no key field


@dataclass(frozen=True)
class TunnelDevice:
    """A `tunnel_device "NAME" [{ mtu N; }]` statement: the TUN device that carries the whole
    packets of ESP tunnel-mode policies (setkey's `esp/tunnel/A-B/...`)."""

    name: str  # the TUN device to create (or adopt)
    mtu: int | None = None  # None: left to the data plane


@dataclass(frozen=True)
class DaemonConfig:
    engine: EngineConfig
    sources: tuple[str, ...]  # every file read: racoon.conf, includes, psk.txt, setkey files
    listen_isakmp: tuple[tuple[str, int], ...] = ()  # empty: every local address, port 500
    listen_natt: tuple[tuple[str, int], ...] = ()
    adminsock: str | None = DEFAULT_ADMINSOCK  # None: `adminsock disabled`
    adminsock_mode: int = DEFAULT_ADMINSOCK_MODE
    adminsock_owner: str | None = None  # user name or uid, as written
    adminsock_group: str | None = None
    pidfile: str = DEFAULT_PIDFILE
    log_level: str = "notify"  # racoon's default
    # (path, spd.parse.SetkeyFile), in the order of the `setkey` statements. The second
    # item is None only when the spd package is not installed.
    setkey: tuple[tuple[str, Any], ...] = ()
    gre_tunnels: tuple[GreTunnel, ...] = ()
    tunnel_device: TunnelDevice | None = None  # None: no `tunnel_device` statement
    # remote label ("198.18.0.2", "anonymous", "198.18.0.2[4500]") -> event -> script path
    scripts: dict[str, dict[str, str]] = field(default_factory=dict)
    remote_names: dict[str, str] = field(default_factory=dict)  # `remote NAME`: its address
    psk_file: str = ""
    warnings: tuple[ConfigError, ...] = ()  # accepted statements that pyike does not act on
