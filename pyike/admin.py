"""The control socket: a Unix stream socket (mode 0600 by default) speaking JSON lines.

Request: `{"verb": "show-sa", "args": ["esp"], "json": false}`; reply: `{"ok": true, "text":
"...", "data": ...}` or `{"ok": false, "error": "..."}`, one line each. A streaming verb
(`show-event`, `establish-sa -w`, the SA watch of `pyike-setkey -x`) answers `{"ok": true,
"stream": true}` and then one JSON line per record until its records end (the line
`{"end": true}`) or the client goes away, as racoon keeps an admin connection that polls events.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

log = logging.getLogger("pyike.admin")

MAX_REQUEST = 64 * 1024
DEFAULT_SOCKET = "/run/pyike/pyike.sock"

Handler = Callable[[str, list[str], bool], Awaitable[dict[str, Any]]]


class AdminServer:
    def __init__(self, path: str, mode: int, handler: Handler, *, owner: str | None = None,
                 group: str | None = None) -> None:
        self.path = path
        self.mode = mode
        self.owner = owner
        self.group = group
        self.handler = handler
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        old = os.umask(0o177)  # no window in which others could connect
        try:
            self._server = await asyncio.start_unix_server(self._client, path=self.path,
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)
        if self.owner is not None or self.group is not None:  # racoon's `adminsock P O G M`
            os.chown(self.path, user_id(self.owner), group_id(self.group))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _reply(writer, {"ok": False, "error": "request too long"})
                    return
                if not line:
                    return
                reply = await self._dispatch(line)
                records = reply.pop("stream", None)
                if records is not None:
                    reply["stream"] = True
                    await _reply(writer, reply)
                    await _pump(reader, writer, records)
                    return
                await _reply(writer, reply)
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            verb = req["verb"]
            args = [str(a) for a in req.get("args", [])]
            want_json = bool(req.get("json", False))
            if not isinstance(verb, str):
                raise TypeError("verb must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return await self.handler(verb, args, want_json)
        except Exception as exc:  # a failing verb must not take the daemon down
            log.exception("admin verb %s failed", verb)
            return {"ok": False, "error": f"{verb}: {exc}"}


def user_id(owner: str | None) -> int:
    """A user name or number as uid (-1: None); KeyError for an unknown name."""
    if owner is None:
        return -1
    return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid


def group_id(group: str | None) -> int:
    """A group name or number as gid (-1: None); KeyError for an unknown name."""
    if group is None:
        return -1
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    writer.write(json.dumps(reply, default=str).encode() + b"\n")
    await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                records: AsyncIterator[dict[str, Any]]) -> None:
    """Send `records` until they end or the client hangs up (EOF or anything it sends)."""
    gone = asyncio.ensure_future(reader.read(1))
    try:
        while True:
            nxt = asyncio.ensure_future(anext(records))
            await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return
            try:
                record = nxt.result()
            except StopAsyncIteration:
                await _reply(writer, {"end": True})
                return
            await _reply(writer, record)
    finally:
        gone.cancel()
        with contextlib.suppress(Exception):
            await records.aclose()


def request(path: str, verb: str, args: list[str] | None = None, want_json: bool = False,
            timeout: float = 30.0) -> dict[str, Any]:
    """One request/reply on the control socket (the client side, used by pyikectl and tests)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"verb": verb, "args": args or [], "json": want_json}).encode()
                  + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def stream(path: str, verb: str, args: list[str] | None = None,
           timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """The client side of a streaming verb: the reply, then each record as it comes, until
    the daemon ends the stream (`{"end": true}` is yielded last) or closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30.0)
        s.connect(path)
        s.sendall(json.dumps({"verb": verb, "args": args or [], "json": True}).encode() + b"\n")
        s.settimeout(timeout)
        with s.makefile("rb") as f:
            for line in f:
                yield json.loads(line)
