"""The IKE process: an asyncio shell around the sans-I/O engine.

It owns the UDP 500/4500 sockets, the engine's timers, the control socket, the script hooks and
the signals; it forks the forwarding process (pyike.dataplane) and feeds it SA installs and
deletes over a pipe, so that IKE work never holds up a packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import os
import signal
import socket
import struct
import time
from typing import Any

from esp.udp import is_esp as esp_in_udp
from forward.specs import SaSpec, TunnelSpec
from ikev1 import events as ev
from ikev1.ingress import READ_LIMIT, TURN, IngressQueue
from ikev1.policy import TrafficSelector
from pyike import logsetup, pipe, sdnotify
from pyike.admin import AdminServer
from pyike.droplog import DropLog
from pyike.feed import EventFeed, engine_event, sa_change
from pyike.hooks import run_hook
from pyike.tun import host_addresses, inner_mtu, outer_mtu_towards

log = logging.getLogger("pyike")

IPPROTO_GRE = 47
ACQUIRE_GUARD_S = 30.0  # an acquire for a pair already being negotiated is ignored this long
DATAPLANE_START_S = 10.0
QUERY_TIMEOUT_S = 5.0
PIPE_SEND_TIMEOUT_S = 5.0
DROP_CHECK_S = 1.0  # how often the drop counters are looked at
TIMER_RETRY_S = 1.0  # after the engine's timer failed
HOOK_WAIT_S = 2.0  # at shutdown, how long running hooks and reloads may still take
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def tunnel_specs(config) -> list[TunnelSpec]:
    """TunnelSpecs for the `gre` blocks; the default MTU leaves room for GRE and ESP."""
    specs = []
    for g in getattr(config, "gre_tunnels", ()):
        key = getattr(g, "key", None)
        mtu = getattr(g, "mtu", None) or inner_mtu(
            outer_mtu_towards(str(g.remote)), ipv6=ipaddress.ip_address(str(g.remote)).version == 6,
            gre_key=key is not None)
        specs.append(TunnelSpec(g.name, str(g.local), str(g.remote), str(g.address), str(g.peer),
                                int(mtu), key))
    return specs


def setkey_files(config) -> list:
    return [sf for _path, sf in getattr(config, "setkey", ())]


def engine_config(config, tunnels: list[TunnelSpec]):
    """The engine's configuration; without `listen` addresses the engine is told ours (the GRE
    tunnels' local ends first), as racoon takes them from the interfaces. The list stays empty
    only when the host has no global address yet: the daemon then refuses to initiate."""
    engine = config.engine
    if engine.local_addresses:
        return engine
    known = [t.local for t in tunnels] + host_addresses()
    return dataclasses.replace(engine, local_addresses=tuple(dict.fromkeys(known)))


NO_LOCAL_ADDRESS = ("no local address known: no `listen isakmp` line, no `gre` block and no "
                    "global address on any interface")


def _spd_of(config):
    """The SPD the configuration's setkey files make; raises what the forwarding process would
    refuse in them (pyike.sadb.setkey_state, which loading the configuration also runs)."""
    from pyike.sadb import setkey_state

    local = [str(g.local) for g in getattr(config, "gre_tunnels", ())]
    return setkey_state(setkey_files(config), local, time.monotonic())[0]


def _listen_addresses(config) -> list[tuple[str, int]]:
    """(address, port) pairs to bind for IKE. Without `isakmp` lines racoon listens on every
    address, on the NAT-T port too when a remote may use NAT traversal."""
    # one socket per address and port: racoon's `isakmp_natt ADDR;` is ADDR[500] again
    out = list(dict.fromkeys(
        (str(a), int(p)) for a, p in tuple(config.listen_isakmp) + tuple(config.listen_natt)))
    if not out:
        engine = config.engine
        out = [("0.0.0.0", engine.isakmp_port)]
        if any(r.nat_traversal != "off" for r in engine.remotes):
            out.append(("0.0.0.0", engine.natt_port))
    return out


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
    "shed_other": "a first IKE message, dropped: too many queued (a flood?)",
    "ike_send_errors": "an IKE datagram the kernel refused to send",
}


def _log_warnings(config) -> None:
    """Statements accepted without effect, once per reading of the configuration."""
    for w in getattr(config, "warnings", ()):
        log.warning("%s:%d: %s", w.file, w.line, w.message)


class Daemon:
    def __init__(self, config, config_path: str, *, verbose: int = 0) -> None:
        from ikev1.engine import Engine  # imported here so `pyike -t` needs no engine

        self.config = config
        self.config_path = config_path
        self.verbose = verbose  # -v/-d: debug logs whatever a reloaded `log` says
        self.tunnels = tunnel_specs(config)
        self.engine = Engine(engine_config(config, self.tunnels))
        self.started_wall = time.time()
        if not self.engine.config.local_addresses:
            log.warning("%s; negotiations wait for one", NO_LOCAL_ADDRESS)
        self.dp_pid = 0
        self.dp: socket.socket | None = None
        self.socks: dict[tuple[str, int], socket.socket] = {}
        self.pairs: dict[int, ev.Phase2Up] = {}  # inbound SPI -> the SA pair
        self.out_to_in: dict[int, int] = {}
        self.acquiring: dict[tuple[str, str], float] = {}
        self.replies: dict[int, asyncio.Future] = {}
        self.req_ids = itertools.count(1)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_failing = False
        self.admin: AdminServer | None = None
        self.stopping: asyncio.Event | None = None
        self.exit_code = 0
        self.on_ready = lambda: None  # called once the control socket is up
        self.tasks: set[asyncio.Task] = set()  # hooks and reloads in flight
        self.engine_failures: set[str] = set()  # exception types already logged
        self.counters = {"ike_in": 0, "ike_out": 0, "ike_send_errors": 0, "acquires": 0,
                         "phase1_up": 0, "phase2_up": 0, "negotiation_failed": 0, "dead_peers": 0,
                         "engine_exceptions": 0}
        self.drops = DropLog(log, "IKE:", IKE_DROP_REASONS)
        self.ingress = IngressQueue(self.engine.ingress_priority)
        self.ingress_resume = False  # a turn of the engine is scheduled
        self.drop_timer: asyncio.TimerHandle | None = None
        self.feed = EventFeed()  # what show-event and the other streaming verbs follow

    # --- start / stop --------------------------------------------------------------------------

    def start_dataplane(self, close_fds: tuple[int, ...] = ()) -> None:
        """Fork the forwarding process (before any event loop exists) and wait for it.
        `close_fds`: ours that it must not inherit (the start-up status pipe)."""
        from pyike.dataplane import start as start_dataplane

        self.dp_pid, self.dp = start_dataplane(self.tunnels, setkey_files(self.config),
                                               natt_port=self.config.engine.natt_port,
                                               close_fds=close_fds)
        self.dp.settimeout(DATAPLANE_START_S)
        msg = pipe.recv(self.dp)
        if not msg or msg[0] != "ready":
            detail = msg[1] if msg and len(msg) > 1 else "exited"
            raise RuntimeError(f"forwarding process did not start: {detail}")
        self.dp.setblocking(False)
        _log_warnings(self.config)
        for t in self.tunnels:
            log.info("%s: GRE %s->%s, %s peer %s, mtu %d", t.name, t.local, t.remote, t.address,
                     t.peer, t.mtu)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT or the forwarding process's end; whatever way this
        returns or raises, peers are told, the forwarding process (and its TUN devices) is
        stopped and every socket closed."""
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        try:
            self._open_ike_sockets(loop)
            loop.add_reader(self.dp.fileno(), self._from_dataplane)
            path = self.config.adminsock  # None: `adminsock disabled`
            if path:
                cfg = self.config
                self.admin = AdminServer(path, cfg.adminsock_mode, self.handle_admin,
                                         owner=cfg.adminsock_owner, group=cfg.adminsock_group)
                await self.admin.start()
            loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload(), "reload"))
            loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
            loop.add_signal_handler(signal.SIGINT, self.stopping.set)
            log.info("pyike started (pid %d, forwarding pid %d)", os.getpid(), self.dp_pid)
            self.on_ready()
            sdnotify.ready(self._status_line())
            self._service()
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
            self._service()
        for handle in (self.timer, self.drop_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self.drop_timer = None
        self.drops.summary(self._drop_counters())
        self.feed.close()
        if self.admin is not None:
            await self.admin.close()
        pending = list(self.tasks)
        if pending:  # hook scripts are bounded; a reload is quick
            await asyncio.wait(pending, timeout=HOOK_WAIT_S)
            for task in pending:
                task.cancel()
        self._stop_dataplane()
        for fut in self.replies.values():
            if not fut.done():
                fut.cancel()
        for sock in self.socks.values():
            loop.remove_reader(sock.fileno())
            sock.close()
        self.socks.clear()
        log.info("pyike stopped")

    def close(self) -> None:
        """Stop the forwarding process (removing its TUN devices) when `run` never did: the
        start-up failed after the fork."""
        self._stop_dataplane()

    def _stop_dataplane(self) -> None:
        if self.dp is None:  # it went on its own
            self._reap_dataplane()
            return
        with contextlib.suppress(Exception):  # registered only while the loop runs
            asyncio.get_running_loop().remove_reader(self.dp.fileno())
        with contextlib.suppress(OSError):
            pipe.send(self.dp, "stop")
        self.dp.close()
        self.dp = None
        self._reap_dataplane()

    def _reap_dataplane(self) -> None:
        """Wait (bounded) for the forwarding process, which removes the TUN devices as it goes."""
        if self.dp_pid <= 0:  # never started, or reaped already (0 would mean our group)
            return
        pid, self.dp_pid = self.dp_pid, 0
        deadline = time.monotonic() + 5.0
        with contextlib.suppress(ChildProcessError):
            while time.monotonic() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    return
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    # --- IKE sockets ---------------------------------------------------------------------------

    def _open_ike_sockets(self, loop: asyncio.AbstractEventLoop) -> None:
        for addr, port in _listen_addresses(self.config):
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                sock.bind((addr, port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self.socks[(addr, port)] = sock
            loop.add_reader(sock.fileno(), self._from_ike, sock, port)
            log.info("listening on %s[%d]", addr, port)

    def _from_ike(self, sock: socket.socket, port: int) -> None:
        self._read_ike(sock, port)
        self._work_ingress()

    def _read_ike(self, sock: socket.socket, port: int) -> None:
        """What the socket holds, up to READ_LIMIT datagrams, into the ingress queue: read at
        the rate a flood arrives, so a real peer's message never waits behind it in the kernel."""
        for _ in range(READ_LIMIT):
            try:
                data, anc, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("IKE socket error: %s", exc)
                break
            local = (sock.getsockname()[0], port)
            for level, kind, cdata in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(cdata) >= 12:
                    local = (socket.inet_ntoa(cdata[8:12]), port)  # ipi_addr: the destination
            if port == self.config.engine.natt_port and esp_in_udp(data):
                continue  # the forwarding process has its copy
            self.counters["ike_in"] += 1
            if log.isEnabledFor(logging.DEBUG):  # racoon's debug log shows each datagram
                log.debug("%d bytes message received from %s[%d] to %s[%d]", len(data), peer[0],
                          peer[1], local[0], local[1])
            self.ingress.push(data, local, (peer[0], peer[1]))

    def _work_ingress(self) -> None:
        """The engine's turn: up to TURN datagrams, most urgent first; then the sockets again."""
        for _ in range(TURN):
            item = self.ingress.pop()
            if item is None:
                break
            data, local, peer = item
            try:
                self.engine.receive_datagram(data, local, peer, time.monotonic())
            except Exception as exc:  # the engine should never raise; one bad datagram must not
                # stop us, nor a stream of them flood the log
                self._engine_failed(exc, f"on a datagram from {peer[0]}[{peer[1]}]")
        self._service()
        if self.ingress and not self.ingress_resume:
            self.ingress_resume = True
            asyncio.get_running_loop().call_soon(self._resume_ingress)

    def _resume_ingress(self) -> None:
        self.ingress_resume = False
        for (_addr, port), sock in list(self.socks.items()):
            self._read_ike(sock, port)
        self._work_ingress()

    def _engine_failed(self, exc: Exception, where: str) -> None:
        """The first failure of each kind with its traceback; later ones are counted."""
        kind = type(exc).__name__
        self.counters["engine_exceptions"] += 1
        if kind not in self.engine_failures:
            self.engine_failures.add(kind)
            log.error("engine failed %s (%s; further ones are counted only)", where, kind,
                      exc_info=exc)

    def _drop_counters(self) -> dict[str, int]:
        counters = getattr(self.engine, "counters", {})
        shed = {f"shed_{name}": n for name, n in self.ingress.shed.items()}
        return {**(counters if isinstance(counters, dict) else {}), **self.counters, **shed}

    def _check_drops(self) -> None:
        """Every DROP_CHECK_S: log the first drop of each reason, and the periodic summary."""
        why = getattr(self.engine, "last_internal_error", None)
        self.drops.check(self._drop_counters(), time.monotonic(),
                         {"internal_errors": why} if why else None)
        self.drop_timer = asyncio.get_running_loop().call_later(DROP_CHECK_S, self._check_drops)

    def _send_ike(self, data: bytes, local: tuple[str, int], peer: tuple[str, int]) -> None:
        sock = self.socks.get((local[0], local[1]))
        try:
            if sock is not None:
                sock.sendto(data, (peer[0], peer[1]))
            else:  # a wildcard socket: choose the source address with IP_PKTINFO
                sock = next((s for (a, p), s in self.socks.items() if p == local[1]), None) \
                    or next(iter(self.socks.values()))
                info = struct.pack("=I4s4s", 0, socket.inet_aton(local[0]),
                                   socket.inet_aton("0.0.0.0"))
                sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)],
                              0, (peer[0], peer[1]))
            self.counters["ike_out"] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%d bytes from %s[%d] to %s[%d]", len(data), local[0], local[1],
                          peer[0], peer[1])
        except OSError as exc:
            self.counters["ike_send_errors"] += 1
            log.debug("sending to %s[%d] failed: %s", peer[0], peer[1], exc)

    # --- the engine ----------------------------------------------------------------------------

    def _service(self) -> None:
        """After anything the engine was told: send, handle events, re-arm the timer."""
        for data, local, peer in self.engine.datagrams_to_send():
            self._send_ike(data, local, peer)
        while (event := self.engine.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("handling %s failed", type(event).__name__)
        for data, local, peer in self.engine.datagrams_to_send():
            self._send_ike(data, local, peer)
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
            self._engine_failed(exc, "in its timer")
        self._service()

    def _on_event(self, e: Any) -> None:
        if len(self.feed):
            pair = self.pairs.get(e.spi_in) if isinstance(e, ev.SaExpired | ev.SaDeleted) else None
            for record in engine_event(e, self._phase1_end, pair):
                self.feed.publish(record)
        if isinstance(e, ev.Phase1Up):
            self.counters["phase1_up"] += 1
            log.info("ISAKMP-SA established %s[%d]-%s[%d] spi:%s:%s", e.local[0], e.local[1],
                     e.peer[0], e.peer[1], e.icookie.hex(), e.rcookie.hex())
            self._hook("phase1_up", e.local, e.peer, e.peer_identity)
        elif isinstance(e, ev.Phase1Down):
            engine = self.config.engine
            port = e.peer[1] if e.peer[1] == engine.isakmp_port else engine.natt_port
            log.info("ISAKMP-SA %s %s[%d]-%s[%d] spi:%s:%s (%s)",
                     "expired" if e.reason == "expired" else "deleted",
                     self._local_for(e.peer[0]) or "?", port, e.peer[0], e.peer[1],
                     e.icookie.hex(), e.rcookie.hex(), e.reason)
            self._hook("phase1_down", None, e.peer, "")
        elif isinstance(e, ev.Phase2Up):
            self._install(e)
        elif isinstance(e, ev.SaExpired | ev.SaDeleted):
            pair = self.pairs.get(e.spi_in)
            self._uninstall(e.spi_in, e.spi_out)
            what = "expired" if isinstance(e, ev.SaExpired) else "deleted"
            why = "" if isinstance(e, ev.SaExpired) else f" ({e.reason})"
            if pair is None:
                log.info("IPsec-SA %s: ESP spi=%d(0x%08x)%s", what, e.spi_in, e.spi_in, why)
            for keys in (pair.inbound, pair.outbound) if pair else ():
                log.info("IPsec-SA %s: ESP/%s %s[0]->%s[0] spi=%d(0x%08x)%s", what,
                         pair.mode.capitalize(), keys.src, keys.dst, keys.spi, keys.spi, why)
        elif isinstance(e, ev.PeerDead):
            self.counters["dead_peers"] += 1
            log.warning("DPD: remote %s[%d] seems to be dead", e.peer[0], e.peer[1])
            self._clear_acquire(e.peer[0])
            self._hook("phase1_dead", None, e.peer, "")
        elif isinstance(e, ev.NegotiationFailed):
            self.counters["negotiation_failed"] += 1
            log.warning("phase %d negotiation with %s[%d] failed: %s", e.phase, e.peer[0],
                        e.peer[1], e.reason)
            self._clear_acquire(e.peer[0])
        elif isinstance(e, ev.Refused):  # unproven input: the engine folds these per reason
            more = f" ({e.folded} more since the last such line)" if e.folded else ""
            log.warning("refused from %s[%d], maybe forged: %s%s", e.peer[0], e.peer[1],
                        e.reason, more)

    def _install(self, e: ev.Phase2Up) -> None:
        self.counters["phase2_up"] += 1
        if e.mode != "transport":  # GRE rides in transport mode; a tunnel-mode SA is not ours
            log.warning("IPsec-SA with %s[%d] is %s mode: not forwarded", e.peer[0], e.peer[1],
                        e.mode)
            return
        encap = e.encap_ports if e.encapsulation == "udp" else None
        kb = e.lifetime_kb or 0
        specs = tuple(SaSpec(keys, direction, e.lifetime_s, kb * 1024, e.peer,
                             (e.local_selector, e.remote_selector), encap)
                      for keys, direction in ((e.inbound, "in"), (e.outbound, "out")))
        self._to_dataplane("install", specs)  # one message: forwarding never sees half a pair
        ports = {e.inbound.spi: encap[::-1], e.outbound.spi: encap} if encap else {}
        for keys in (e.inbound, e.outbound):
            sport, dport = ports.get(keys.spi, (0, 0))
            log.info("IPsec-SA established: ESP/%s %s[%d]->%s[%d] spi=%d(0x%08x)",
                     e.mode.capitalize(), keys.src, sport, keys.dst, dport, keys.spi, keys.spi)
        self.pairs[e.inbound.spi] = e
        self.out_to_in[e.outbound.spi] = e.inbound.spi
        if len(self.feed):
            for keys, direction in ((e.inbound, "in"), (e.outbound, "out")):
                self.feed.publish(sa_change("add", keys.spi, keys.src, keys.dst, direction,
                                            enc=keys.enc_alg, auth=keys.auth_alg))
        self._clear_acquire(e.peer[0])

    def _uninstall(self, spi_in: int, spi_out: int) -> None:
        pair = self.pairs.pop(spi_in, None)
        self.out_to_in.pop(spi_out, None)
        if pair is not None and len(self.feed):
            for keys, direction in ((pair.inbound, "in"), (pair.outbound, "out")):
                self.feed.publish(sa_change("delete", keys.spi, keys.src, keys.dst, direction,
                                            state="dead"))
        self._to_dataplane("remove", spi_in, "in")
        self._to_dataplane("remove", spi_out, "out")

    def _clear_acquire(self, peer: str) -> None:
        for pair in [p for p in self.acquiring if p[1] == peer]:
            del self.acquiring[pair]

    def _hook(self, event: str, local, peer, peer_id: str) -> None:
        path = self._script_for(event, peer[0] if peer else None)
        if path:
            env = {"REMOTE_ADDR": peer[0], "REMOTE_PORT": str(peer[1]), "REMOTE_ID": peer_id}
            if local:
                env.update(LOCAL_ADDR=local[0], LOCAL_PORT=str(local[1]))
            else:
                env.update(LOCAL_ADDR=self._local_for(peer[0]), LOCAL_PORT="500")
            self.spawn(run_hook(path, event, env), f"script {path} ({event})")

    def _script_for(self, event: str, peer: str | None) -> str | None:
        """The `script` of the peer's remote block (by address, else `anonymous`)."""
        scripts = self.config.scripts or {}
        for label, hooks in scripts.items():
            if peer is not None and label.split("[", 1)[0] == peer and event in hooks:
                return hooks[event]
        return scripts.get("anonymous", {}).get(event)

    def _phase1_end(self, peer: str) -> tuple[str, int] | None:
        """Our IKE end towards `peer`, for events that name only the peer's."""
        local = self._local_for(peer)
        return (local, self.config.engine.isakmp_port) if local else None

    def _local_for(self, peer: str) -> str:
        for t in self.tunnels:
            if t.remote == peer:
                return t.local
        return ""

    # --- the forwarding process ----------------------------------------------------------------

    def _to_dataplane(self, *message: Any) -> None:
        if self.dp is None:
            return
        try:
            self.dp.settimeout(PIPE_SEND_TIMEOUT_S)  # a full pipe drains in microseconds
            pipe.send(self.dp, *message)
        except OSError as exc:
            log.error("forwarding process unreachable: %s", exc)
            self.exit_code = 1
            if self.stopping is not None:
                self.stopping.set()
        finally:
            if self.dp is not None:
                self.dp.setblocking(False)

    def _from_dataplane(self) -> None:
        while self.dp is not None:
            try:
                msg = pipe.recv(self.dp)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                msg = None
            if msg is None:
                if not self.stopping.is_set():  # not a failure while we stop anyway
                    log.error("forwarding process exited")
                    self.exit_code = 1
                asyncio.get_running_loop().remove_reader(self.dp.fileno())
                self.dp.close()
                self.dp = None
                for fut in self.replies.values():  # no answer will come
                    if not fut.done():
                        fut.set_exception(RuntimeError("forwarding process exited"))
                self.stopping.set()
                return
            verb = msg[0]
            if verb == "acquire":
                self._acquire(msg[1], msg[2])
            elif verb == "expire":
                self._expire(msg[1], msg[2], msg[3])
            elif verb == "reply":
                fut = self.replies.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg[2])
            elif verb == "error":
                log.error("forwarding process: %s", msg[1])
        self._service()

    def _acquire(self, local: str, remote: str) -> bool:
        """racoon's acquire; False when no negotiation could start (logged once per guard)."""
        now = time.monotonic()
        if now - self.acquiring.get((local, remote), -ACQUIRE_GUARD_S) < ACQUIRE_GUARD_S:
            return True  # already under way
        self.acquiring[(local, remote)] = now
        self.counters["acquires"] += 1
        if not self._have_local_address(now):
            log.warning("cannot negotiate with %s: %s", remote, NO_LOCAL_ADDRESS)
            return False
        bits = 32 if ":" not in local else 128
        log.info("initiate new phase 2 negotiation: %s[0]<=>%s[0]", local, remote)
        try:
            self.engine.initiate(
                remote, now,
                local_selector=TrafficSelector(ipaddress.ip_network(f"{local}/{bits}"),
                                               IPPROTO_GRE, 0),
                remote_selector=TrafficSelector(ipaddress.ip_network(f"{remote}/{bits}"),
                                                IPPROTO_GRE, 0))
        except Exception as exc:
            log.warning("cannot negotiate with %s: %s", remote, exc)
            return False
        return True

    def _have_local_address(self, now: float) -> bool:
        """The engine needs our address to start phase 1; one may have appeared since."""
        if self.engine.config.local_addresses:
            return True
        cfg = engine_config(self.config, self.tunnels)
        if not cfg.local_addresses:
            return False
        self.engine.reconfigure(cfg, now)
        log.info("local addresses: %s", " ".join(cfg.local_addresses))
        return True

    def _expire(self, spi: int, direction: str, kind: str) -> None:
        spi_in = self.out_to_in.get(spi) if direction == "out" else spi
        pair = self.pairs.get(spi_in)
        if len(self.feed):
            keys = None if pair is None else (pair.outbound if direction == "out" else pair.inbound)
            self.feed.publish(sa_change("expire", spi, keys.src if keys else "",
                                        keys.dst if keys else "", direction,
                                        state="dead" if kind == "hard" else "dying"))
        if pair is None:
            return  # a manual SA, or one the engine already removed
        now = time.monotonic()
        if kind == "hard":
            self.engine.sa_hard_expired(spi_in, now)
        elif pair.lifetime_kb:  # time lifetimes are the engine's own; bytes only we can see
            self.engine.sa_soft_expired(spi_in, now)

    async def query(self, what: str) -> Any:
        return await self._ask("query", what)

    async def _ask(self, verb: str, *args: Any) -> Any:
        """A message the forwarding process answers with `("reply", id, data)`."""
        if self.dp is None:
            raise RuntimeError("forwarding process not running")
        req = next(self.req_ids)
        fut = asyncio.get_running_loop().create_future()
        self.replies[req] = fut
        self._to_dataplane(verb, req, *args)
        try:
            return await asyncio.wait_for(fut, QUERY_TIMEOUT_S)
        finally:
            self.replies.pop(req, None)

    # --- reload --------------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """SIGHUP / reload-config: new configuration and SPD; SAs that still match stay. The
        service manager hears of the reload's start and end (refused or not)."""
        sdnotify.reloading()
        try:
            return await self._reload()
        finally:
            sdnotify.ready(self._status_line())

    def _status_line(self) -> str:
        """systemctl status's one line about us."""
        return (f"{len(self.tunnels)} tunnel(s), {len(self.pairs)} IPsec-SA pair(s), "
                f"configuration {self.config_path}")

    async def _reload(self) -> list[str]:
        from pyike import config as config_mod

        try:
            new = config_mod.load(self.config_path)
            spd = _spd_of(new)
        except Exception as exc:
            errors = [str(e) for e in getattr(exc, "errors", [exc])]
            for line in errors:
                log.error("reload refused: %s", line)
            return errors
        # always sent: the forwarding process also remakes a device deleted under it
        error = await self._retunnel(tunnel_specs(new))
        if error:
            log.error("reload refused: gre blocks: %s", error)
            return [f"gre blocks: {error}"]
        self.config = new
        self._apply_log_level(new)
        _log_warnings(new)
        # live SAs keep the terms they agreed
        self.engine.reconfigure(engine_config(new, self.tunnels), time.monotonic())
        self._to_dataplane("setkey", setkey_files(new))
        self._prune_unmatched(spd)
        log.info("configuration reloaded from %s", self.config_path)
        self._service()
        return []

    def _apply_log_level(self, config) -> None:
        """A changed `log` statement, in both processes (the line goes out at the old level)."""
        level = logsetup.level_for(config.log_level, self.verbose)
        if logging.getLogger().level != level:
            log.info("log level %s", logsetup.level_name(level))
        if logsetup.set_level(level):
            self._to_dataplane("log_level", level)

    async def _retunnel(self, tunnels: list[TunnelSpec]) -> str | None:
        """Have the forwarding process apply changed `gre` blocks; None, or why it could not."""
        try:
            error = await self._ask("tunnels", tunnels)
        except (RuntimeError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        if error:
            return error
        old = {t.name: t for t in self.tunnels}
        new = {t.name: t for t in tunnels}
        for name in old.keys() - new.keys():
            log.info("%s: removed", name)
        for t in tunnels:
            if old.get(t.name) != t:
                log.info("%s: GRE %s->%s, %s peer %s, mtu %d (%s)", t.name, t.local, t.remote,
                         t.address, t.peer, t.mtu, "changed" if t.name in old else "created")
        self.tunnels = tunnels
        return None

    def _prune_unmatched(self, spd) -> None:
        """Delete negotiated SAs that no `out` ipsec policy of the new SPD covers any more."""
        now = time.monotonic()
        for spi_in, pair in list(self.pairs.items()):
            p = spd.lookup("out", pair.outbound.src, pair.outbound.dst, IPPROTO_GRE, 0, 0, None)
            if p is None or p.action != "ipsec":
                log.info("policy for %s->%s gone: deleting its SAs", pair.outbound.src,
                         pair.outbound.dst)
                self.engine.delete_phase2(spi_in, now)

    # --- control socket ------------------------------------------------------------------------

    async def handle_admin(self, verb: str, args: list[str], want_json: bool) -> dict[str, Any]:
        from pyike.control import dispatch

        return await dispatch(self, verb, args, want_json)
