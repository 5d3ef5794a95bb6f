"""The IKE process: an asyncio shell around the sans-I/O engine, and the composition root of
its parts, each owning one job:

- pyike.ikesockets: the UDP 500/4500 sockets and the ingress queue in front of the engine;
- pyike.fwdclient: the pipe to the forwarding process it forks (pyike.dataplane), which is
  fed SA installs and deletes so that IKE work never holds up a packet;
- pyike.events: each engine event as log lines, script hooks, feed records and SA installs;
- pyike.acquires, pyike.reload: acquires and expiries from the forwarding process, reloads;
- pyike.ops: what the control verbs (pyike.control) may do.

This module runs the engine (its datagrams out, its events, its timer), the control socket,
the signals and the start and the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from pyike import sdnotify
from pyike.acquires import Acquires
from pyike.admin import AdminServer
from pyike.droplog import DropLog
from pyike.events import EventHandler
from pyike.feed import EventFeed
from pyike.fwdclient import ForwardingClient
from pyike.ikesockets import IkeSockets
from pyike.live import (
    NO_LOCAL_ADDRESS,
    Live,
    device_spec,
    engine_config,
    log_warnings,
    setkey_files,
    tunnel_specs,
)
from pyike.ops import Operations
from pyike.reload import Reloader

log = logging.getLogger("pyike")

DROP_CHECK_S = 1.0  # how often the drop counters are looked at
TIMER_RETRY_S = 1.0  # after the engine's timer failed
HOOK_WAIT_S = 2.0  # at shutdown, how long running hooks and reloads may still take

# The engine's and this process's drop counters, for the first-occurrence log lines.
IKE_DROP_REASONS = {
    "malformed": "an IKE datagram that does not parse",
    "decrypt_failed": "an IKE message that does not decrypt (wrong key or corrupted)",
    "hash_mismatch": "an IKE message whose HASH does not check (wrong PSK or forged)",
    "unknown_sa": "an IKE message for an ISAKMP SA we do not have",
    "unexpected": "an IKE message that its exchange does not expect now",
    "crypto_errors": "an IKE message with an unusable cryptographic value",
    "half_open_refused": "a first IKE message while too many negotiations are half open",
    "internal_errors": "an IKE message the engine could not handle",
    "engine_exceptions": "an IKE datagram that made the engine fail",
    "shed_exchange": "an IKE message of a known exchange, dropped: too many queued",
    "shed_configured": "a first IKE message from a configured peer, dropped: too many queued",
    "shed_anonymous": "an IKE message of an unauthenticated exchange with an anonymous peer, "
                      "dropped: too many queued",
    "shed_other": "a first IKE message, dropped: too many queued (a flood?)",
    "ike_send_errors": "an IKE datagram the kernel refused to send",
}


class Daemon:
    def __init__(self, config, config_path: str, *, verbose: int = 0) -> None:
        from ikev1.engine import Engine  # imported here so `pyike -t` needs no engine

        self.live = Live(config, config_path, tunnel_specs(config))
        self.engine = Engine(engine_config(config, self.live.tunnels))
        self.started_wall = time.time()
        if not self.engine.config.local_addresses:
            log.warning("%s; negotiations wait for one", NO_LOCAL_ADDRESS)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_failing = False
        self.admin: AdminServer | None = None
        self.stopping: asyncio.Event | None = None
        self.exit_code = 0
        self.on_ready = lambda: None  # called once the control socket is up
        self.tasks: set[asyncio.Task] = set()  # hooks and reloads in flight
        self.engine_failures: set[str] = set()  # exception types already logged
        self.drops = DropLog(log, "IKE:", IKE_DROP_REASONS)
        self.drop_timer: asyncio.TimerHandle | None = None
        self.feed = EventFeed()  # what show-event and the other streaming verbs follow
        # the parts; the callbacks are late-bound, as the parts refer to each other
        self.forwarding = ForwardingClient(lambda *msg: self.acquires.acquire(*msg),
                                           lambda *msg: self.acquires.expire(*msg),
                                           self.service, self._forwarding_lost)
        self.sockets = IkeSockets(self.live, self.engine, self.service, self.engine_failed)
        self.events = EventHandler(self.live, self.feed, self.forwarding.send, self.spawn,
                                   lambda peer: self.acquires.negotiated(peer))
        self.acquires = Acquires(self.live, self.engine, self.events, self.feed)
        self.reloader = Reloader(self.live, self.engine, self.forwarding, self.events,
                                 self.service, verbose)
        self.ops = Operations(self)

    @property
    def config(self):
        """The configuration in force (a reload replaces it)."""
        return self.live.config

    # --- start / stop --------------------------------------------------------------------------

    def start_dataplane(self, close_fds: tuple[int, ...] = ()) -> None:
        """Fork the forwarding process (before any event loop exists) and wait for it.
        `close_fds`: ours that it must not inherit (the start-up status pipe)."""
        self.live.device = device_spec(self.config)
        self.forwarding.start(self.live.tunnels, setkey_files(self.config),
                              self.config.engine.natt_port, close_fds, self.live.device)
        log_warnings(self.config)
        for t in self.live.tunnels:
            log.info("%s: GRE %s->%s, %s peer %s, mtu %d", t.name, t.local, t.remote, t.address,
                     t.peer, t.mtu)
        if self.live.device is not None:
            log.info("%s: ESP tunnel mode, mtu %d", self.live.device.name,
                     self.live.device.mtu)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT or the forwarding process's end; whatever way this
        returns or raises, peers are told, the forwarding process (and its TUN devices) is
        stopped and every socket closed."""
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        try:
            self.sockets.open(loop)
            self.forwarding.attach(loop)
            path = self.config.adminsock  # None: `adminsock disabled`
            if path:
                cfg = self.config
                self.admin = AdminServer(path, cfg.adminsock_mode, self.handle_admin,
                                         owner=cfg.adminsock_owner, group=cfg.adminsock_group)
                await self.admin.start()
            loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload(), "reload"))
            loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
            loop.add_signal_handler(signal.SIGINT, self.stopping.set)
            log.info("pyike started (pid %d, forwarding pid %d)", os.getpid(),
                     self.forwarding.pid)
            self.on_ready()
            sdnotify.ready(self._status_line())
            self.service()
            self._check_drops()
            await self.stopping.wait()
        finally:
            await self.shutdown()
        return self.exit_code

    def spawn(self, coro, what: str) -> asyncio.Task:
        """A background task that is referenced until done and whose failure is logged."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("%s failed: %s: %s", what, type(exc).__name__, exc)

        task.add_done_callback(done)
        return task

    async def shutdown(self) -> None:
        sdnotify.stopping()
        log.info("pyike shutting down: deleting SAs")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        now = time.monotonic()
        with contextlib.suppress(Exception):
            self.engine.flush(now)
            self.service()
        for handle in (self.timer, self.drop_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self.drop_timer = None
        self.drops.summary(self.drop_counters())
        self.feed.close()
        if self.admin is not None:
            await self.admin.close()
        pending = list(self.tasks)
        if pending:  # hook scripts are bounded; a reload is quick
            await asyncio.wait(pending, timeout=HOOK_WAIT_S)
            for task in pending:
                task.cancel()
        self.forwarding.stop()
        self.sockets.close(loop)
        log.info("pyike stopped")

    def close(self) -> None:
        """Stop the forwarding process (removing its TUN devices) when `run` never did: the
        start-up failed after the fork."""
        self.forwarding.stop()

    def _forwarding_lost(self, unreachable: bool) -> None:
        """The pipe failed on a send, or the forwarding process ended (not a failure while we
        stop anyway): we stop, with 1."""
        if self.stopping is None:  # not running yet
            self.exit_code = 1
            return
        if unreachable or not self.stopping.is_set():
            if not unreachable:
                log.error("forwarding process exited")
            self.exit_code = 1
        self.stopping.set()

    # --- the engine ----------------------------------------------------------------------------

    def service(self) -> None:
        """After anything the engine was told: send, handle events, re-arm the timer."""
        for data, local, peer in self.engine.datagrams_to_send():
            self.sockets.send(data, local, peer)
        while (event := self.engine.next_event()) is not None:
            try:
                self.events.handle(event)
            except Exception:
                log.exception("handling %s failed", type(event).__name__)
        for data, local, peer in self.engine.datagrams_to_send():
            self.sockets.send(data, local, peer)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        when = self.engine.get_timer()
        if when is not None:
            loop = asyncio.get_running_loop()
            # a timer that keeps failing is retried at a pace, not in a busy loop
            soonest = loop.time() + (TIMER_RETRY_S if self.timer_failing else 0.0)
            self.timer = loop.call_at(max(when, soonest), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        try:
            self.engine.handle_timer(time.monotonic())
            self.timer_failing = False
        except Exception as exc:
            self.timer_failing = True
            self.engine_failed(exc, "in its timer")
        self.service()

    def engine_failed(self, exc: Exception, where: str) -> None:
        """The first failure of each kind with its traceback; later ones are counted."""
        kind = type(exc).__name__
        self.live.counters["engine_exceptions"] += 1
        if kind not in self.engine_failures:
            self.engine_failures.add(kind)
            log.error("engine failed %s (%s; further ones are counted only)", where, kind,
                      exc_info=exc)

    def drop_counters(self) -> dict[str, int]:
        counters = getattr(self.engine, "counters", {})
        return {**(counters if isinstance(counters, dict) else {}), **self.live.counters,
                **self.sockets.shed()}

    def _check_drops(self) -> None:
        """Every DROP_CHECK_S: log the first drop of each reason, and the periodic summary."""
        why = getattr(self.engine, "last_internal_error", None)
        self.drops.check(self.drop_counters(), time.monotonic(),
                         {"internal_errors": why} if why else None)
        self.drop_timer = asyncio.get_running_loop().call_later(DROP_CHECK_S, self._check_drops)

    # --- reload and control --------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """SIGHUP / reload-config: new configuration and SPD; SAs that still match stay. The
        service manager hears of the reload's start and end (refused or not)."""
        sdnotify.reloading()
        try:
            return await self.reloader.reload()
        finally:
            sdnotify.ready(self._status_line())

    def _status_line(self) -> str:
        """systemctl status's one line about us."""
        return (f"{len(self.live.tunnels)} tunnel(s), {len(self.events.pairs)} IPsec-SA "
                f"pair(s), configuration {self.live.config_path}")

    async def handle_admin(self, verb: str, args: list[str], want_json: bool) -> dict[str, Any]:
        from pyike.control import dispatch

        return await dispatch(self.ops, verb, args, want_json)
