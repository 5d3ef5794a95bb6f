"""An AdminServer on its own event loop in a thread, answering with a test's handler."""

from __future__ import annotations

import asyncio
import threading

import pytest


class Server:
    def __init__(self, path: str, handler=None) -> None:
        from pyike.admin import AdminServer

        self.path = path
        self.calls: list[tuple[str, list[str], bool]] = []
        self._handler = handler
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server = AdminServer(path, 0o600, self.handler)

    async def handler(self, verb, args, want_json):
        self.calls.append((verb, args, want_json))
        return await self._handler(verb, args, want_json)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def records(*items):
    """A stream of records, as a streaming verb returns them."""
    for item in items:
        yield item


def server_fixture(handler):
    """A pytest fixture: a Server answering with `handler` on a socket in tmp_path."""

    @pytest.fixture
    def srv(tmp_path):
        with Server(str(tmp_path / "pyike.sock"), handler) as s:
            yield s

    return srv
