"""Readiness, reload and stop reports to a service manager: sd_notify(3)'s datagram protocol.

With `Type=notify` (or `notify-reload`, systemd 253 and later) systemd sets $NOTIFY_SOCKET to
a unix datagram socket (a path, or `@name` in the abstract namespace) and reads newline-separated
`KEY=VALUE` fields from it. Without the variable every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pyike")


def notify(*fields: str) -> bool:
    """Send `fields` as one datagram; True if it went out. A failure is logged at debug and
    never stops the daemon (the manager then times the start or reload out itself)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):  # sd_notify(3): the abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):  # unset, or a vsock address we do not speak
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.debug("cannot notify the service manager: %s", exc)
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}")


def reloading() -> bool:
    """systemd.service(5): `notify-reload` wants the reload's start on CLOCK_MONOTONIC."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")
