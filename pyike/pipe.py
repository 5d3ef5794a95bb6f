"""The message pipe between the IKE process and the forwarding process.

A SOCK_SEQPACKET socketpair keeps message boundaries, so each message is one pickled tuple
`(verb, *args)`. Both ends are ours (same program, forked), which is what makes pickle acceptable.
"""

from __future__ import annotations

import pickle
import socket
from typing import Any

MAX_MESSAGE = 4 * 1024 * 1024  # large enough for a `sad` dump of thousands of SAs


def make_pipe() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (a, b):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MAX_MESSAGE)
    return a, b


def send(sock: socket.socket, *message: Any) -> None:
    sock.send(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def recv(sock: socket.socket) -> tuple | None:
    """One message, or None when the other end has gone (EOF)."""
    data = sock.recv(MAX_MESSAGE)
    if not data:
        return None
    return pickle.loads(data)
