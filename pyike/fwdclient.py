"""The IKE process's side of the pipe to the forwarding process (pyike.dataplane).

Sent: SA installs and removals (a responder's inbound SA also before its pair), setkey files,
tunnels, the log level, queries; each query or run carries an id the forwarding process answers
with `("reply", id, data)`. Received: acquires, lifetime expiries, replies and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from forward.events import Acquire
from forward.specs import DeviceSpec, TunnelSpec
from pyike import pipe

log = logging.getLogger("pyike")

DATAPLANE_START_S = 10.0
QUERY_TIMEOUT_S = 5.0
PIPE_SEND_TIMEOUT_S = 5.0
REAP_S = 5.0  # how long a stopping forwarding process may take before SIGKILL


class ForwardingClient:
    """`on_acquire(acquire)` (a forward.events.Acquire), `on_expire(spi, direction, kind)`: what
    the forwarding process reports; `after()`: once its messages are handled;
    `lost(unreachable)`: the pipe failed on a send (True) or the process ended (False)."""

    def __init__(self, on_acquire: Callable[[Acquire], Any],
                 on_expire: Callable[[int, str, str], None], after: Callable[[], None],
                 lost: Callable[[bool], None]) -> None:
        self.on_acquire = on_acquire
        self.on_expire = on_expire
        self.after = after
        self.lost = lost
        self.pid = 0
        self.sock: socket.socket | None = None
        self.replies: dict[int, asyncio.Future] = {}
        self.req_ids = itertools.count(1)

    def start(self, tunnels: list[TunnelSpec], setkey_files: list, natt_port: int,
              close_fds: tuple[int, ...] = (), device: DeviceSpec | None = None) -> None:
        """Fork the forwarding process (before any event loop exists) and wait for its
        `ready`. `close_fds`: ours that it must not inherit (the start-up status pipe)."""
        from pyike.dataplane import start as start_dataplane

        self.pid, self.sock = start_dataplane(tunnels, setkey_files, natt_port=natt_port,
                                              close_fds=close_fds, device=device)
        self.sock.settimeout(DATAPLANE_START_S)
        msg = pipe.recv(self.sock)
        if not msg or msg[0] != "ready":
            detail = msg[1] if msg and len(msg) > 1 else "exited"
            raise RuntimeError(f"forwarding process did not start: {detail}")
        self.sock.setblocking(False)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self.readable)

    def send(self, *message: Any) -> None:
        if self.sock is None:
            return
        try:
            self.sock.settimeout(PIPE_SEND_TIMEOUT_S)  # a full pipe drains in microseconds
            pipe.send(self.sock, *message)
        except OSError as exc:
            log.error("forwarding process unreachable: %s", exc)
            self.lost(True)
        finally:
            if self.sock is not None:
                self.sock.setblocking(False)

    def readable(self) -> None:
        while self.sock is not None:
            try:
                msg = pipe.recv(self.sock)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                msg = None
            if msg is None:
                self._ended()
                return
            verb = msg[0]
            if verb == "acquire":  # a forward.events.Acquire
                self.on_acquire(msg[1])
            elif verb == "expire":
                self.on_expire(msg[1], msg[2], msg[3])
            elif verb == "reply":
                fut = self.replies.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg[2])
            elif verb == "error":
                log.error("forwarding process: %s", msg[1])
        self.after()

    def _ended(self) -> None:
        """The pipe closed: the forwarding process is gone; no answer will come."""
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = None
        for fut in self.replies.values():
            if not fut.done():
                fut.set_exception(RuntimeError("forwarding process exited"))
        self.lost(False)

    async def query(self, what: str) -> Any:
        return await self.ask("query", what)

    async def ask(self, verb: str, *args: Any) -> Any:
        """A message the forwarding process answers with `("reply", id, data)`."""
        if self.sock is None:
            raise RuntimeError("forwarding process not running")
        req = next(self.req_ids)
        fut = asyncio.get_running_loop().create_future()
        self.replies[req] = fut
        self.send(verb, req, *args)
        try:
            return await asyncio.wait_for(fut, QUERY_TIMEOUT_S)
        finally:
            self.replies.pop(req, None)

    def stop(self) -> None:
        """Tell the forwarding process to stop (it removes the TUN devices it made) and reap
        it; the replies still awaited are cancelled."""
        if self.sock is None:  # it went on its own
            self._reap()
        else:
            with contextlib.suppress(Exception):  # registered only while the loop runs
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            with contextlib.suppress(OSError):
                pipe.send(self.sock, "stop")
            self.sock.close()
            self.sock = None
            self._reap()
        for fut in self.replies.values():
            if not fut.done():
                fut.cancel()

    def _reap(self) -> None:
        """Wait (bounded) for the forwarding process, which removes the TUN devices as it goes."""
        if self.pid <= 0:  # never started, or reaped already (0 would mean our group)
            return
        pid, self.pid = self.pid, 0
        deadline = time.monotonic() + REAP_S
        with contextlib.suppress(ChildProcessError):
            while time.monotonic() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
