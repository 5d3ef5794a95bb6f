"""The forwarding process: the I/O shell around forward.core.ForwardingCore.

It runs in its own process so that IKE work (a DH computation, a config reload) never stalls a
packet. It owns the TUN devices, the raw ESP, UDP and GRE sockets, the control pipe and the
selector, and decides nothing: what it reads goes into the core, what the core queues goes out.

The IKE process sends `install`, `remove`, `setkey`, `tunnels`, `flush`, `log_level`, `query`
and `stop` messages; this process answers queries and reports the core's events: `acquire` (an
outbound policy needs an SA) and `expire` (an SA reached a soft or hard lifetime).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import socket
import time

from forward.core import DROP_REASONS, IPPROTO_ESP, IPPROTO_UDP, NATT_PORT, ForwardingCore, Tunnel
from forward.events import Acquire
from forward.specs import SaSpec, TunnelSpec
from gre import IPPROTO_GRE
from pyike import pipe
from pyike.droplog import DropLog
from pyike.sadb import run_setkey, setkey_state
from pyike.tun import TunDevice
from spd.errors import SetkeyError

log = logging.getLogger("pyike.dataplane")

BATCH = 64  # packets read per readiness event before looking at the other descriptors


class DataPlane:
    """The forwarding loop. `run()` returns when told to stop or when the IKE process is gone."""

    def __init__(self, ctl: socket.socket, tunnels: list[TunnelSpec], setkey_files: list,
                 *, create_tun: bool = True, natt_port: int = NATT_PORT) -> None:
        self.ctl = ctl
        self.core = ForwardingCore(natt_port=natt_port)
        self.create_tun = create_tun
        self.sel: selectors.BaseSelector | None = None
        self.devices: dict[str, TunDevice | None] = {}  # by tunnel name
        self.failed: set[str] = set()  # tunnels whose device failed: made again at a reload
        self.by_fd: dict[int, Tunnel] = {}
        self.apply_tunnels(tunnels)
        self.esp_sock = _raw_socket(IPPROTO_ESP)
        self.gre_sock = _raw_socket(IPPROTO_GRE)
        self.udp_sock = _raw_socket(IPPROTO_UDP)
        self.apply_setkey(setkey_files, time.monotonic())
        self.drops = DropLog(log, "ESP/GRE:", DROP_REASONS)
        self._running = True

    # --- tunnels -----------------------------------------------------------------------------

    def apply_tunnels(self, specs: list[TunnelSpec]) -> None:
        """Make the TUN devices match `specs` (a reloaded configuration's `gre` blocks).

        A device whose name stays keeps its descriptor and is changed in place (address, peer,
        MTU); new devices, and those that failed under us, are made before any old one goes, so
        a device that cannot be made leaves the old set untouched. SAs are the SAD's and stay.
        """
        old = {t.spec.name: t for t in self.core.tunnels}
        made: dict[str, TunDevice | None] = {}
        try:
            for spec in specs:
                if spec.name not in old or spec.name in self.failed:
                    made[spec.name] = self._make_tun(spec)
        except BaseException:
            for tun in made.values():
                if tun is not None:
                    tun.close()
            raise
        for name in self.failed & made.keys():
            log.info("%s: TUN device made again", name)
        for spec in specs:
            t = old.get(spec.name)
            tun = self.devices.get(spec.name)
            if t is not None and spec.name not in made and t.spec != spec and tun is not None:
                tun.reconfigure(spec.address, spec.peer, spec.mtu)
        kept = {spec.name for spec in specs}
        for name, t in old.items():
            if name not in kept or name in made:
                self._forget_fd(t)
                tun = self.devices.pop(name, None)
                if tun is not None:
                    tun.close()
        self.failed -= made.keys() | (old.keys() - kept)
        self.core.set_tunnels(specs)
        for t in self.core.tunnels:
            if t.spec.name in made:
                tun = self.devices[t.spec.name] = made[t.spec.name]
                if tun is not None:
                    t.handle = tun.fileno()
                    self.by_fd[t.handle] = t
                    if self.sel is not None:
                        os.set_blocking(t.handle, False)
                        self.sel.register(t.handle, selectors.EVENT_READ, t)

    def _make_tun(self, spec: TunnelSpec) -> TunDevice | None:
        if not self.create_tun:
            return None
        try:
            tun = TunDevice(spec.name, spec.address, spec.peer, spec.mtu)
        except Exception as exc:
            raise RuntimeError(f"{spec.name}: cannot create the TUN device: {exc}") from exc
        if tun.adopted:
            log.info("%s: the existing TUN device adopted; it stays when pyike stops", spec.name)
        return tun

    def _forget_fd(self, t: Tunnel) -> None:
        """Stop watching a tunnel's descriptor (before it closes, or after it failed)."""
        if t.handle < 0:
            return
        if self.sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(t.handle)
        self.by_fd.pop(t.handle, None)
        t.handle = -1

    # --- control -----------------------------------------------------------------------------

    def apply_setkey(self, setkey_files: list, now: float) -> None:
        """New SPD and hand-keyed SAs; if anything in the files is refused, nothing changes."""
        spd, manual = setkey_state(setkey_files, [t.spec.local for t in self.core.tunnels], now)
        self.core.apply_setkey(spd, manual)

    def _handle_ctl(self, now: float) -> None:
        """Every pending control message, before any more packets: an SA pair, say, must be
        complete before traffic can see half of it."""
        while self._running:
            try:
                msg = pipe.recv(self.ctl)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionResetError:
                msg = None
            if msg is None:  # the IKE process is gone: forwarding without it would be unkeyed
                self._running = False
                return
            try:
                self._control(msg, now)
            except Exception as exc:  # a refused SA or setkey file must not stop forwarding
                log.error("forwarding process: %s refused: %s", msg[0], exc)
                self._tell("error", f"{msg[0]}: {type(exc).__name__}: {exc}")
                if msg[0] == "query":
                    self._tell("reply", msg[1], None)

    def _control(self, msg: tuple, now: float) -> None:
        verb = msg[0]
        if verb == "install":  # the SAs of one negotiation, inbound first
            specs: tuple[SaSpec, ...] = msg[1]
            self.core.install(specs, now)
        elif verb == "remove":
            self.core.remove(msg[1], msg[2])
        elif verb == "tunnels":  # answered: the IKE process refuses a reload that fails here
            req_id, specs = msg[1], msg[2]
            try:
                self.apply_tunnels(specs)
            except Exception as exc:
                self._tell("reply", req_id, f"{type(exc).__name__}: {exc}")
            else:
                self._tell("reply", req_id, None)
        elif verb == "setkey":
            self.apply_setkey(msg[1], now)
        elif verb == "flush":
            self.core.flush()
        elif verb == "log_level":  # a reloaded `log` statement
            logging.getLogger().setLevel(msg[1])
        elif verb == "setkey-run":  # pyike-setkey: answered with the SAs removed, or why not
            req_id, sk = msg[1], msg[2]
            try:
                changes = run_setkey(self.core.state, sk,
                                     [t.spec.local for t in self.core.tunnels], now)
            except SetkeyError as exc:
                self._tell("reply", req_id, {"error": str(exc)})
            else:
                self.core.state_changed()
                self._tell("reply", req_id, changes)
        elif verb == "query":
            req_id, what = msg[1], msg[2]
            self._tell("reply", req_id, self._answer(what))
        elif verb == "stop":
            self._running = False

    def _tell(self, *message) -> None:
        """A message to the IKE process; never blocks forwarding (a full pipe loses it, and
        acquires and expiries are repeated or re-derived anyway)."""
        try:
            pipe.send(self.ctl, *message)
        except (BlockingIOError, InterruptedError):
            self.core.counters.ctl_dropped += 1

    def _answer(self, what: str):
        if what == "counters":
            return self.core.status()
        return self.core.state.dump(what, time.time(), time.monotonic())

    # --- I/O ---------------------------------------------------------------------------------

    def _from_tun(self, t: Tunnel, now: float) -> None:
        fd = t.handle
        from_tunnel = self.core.from_tunnel
        for _ in range(BATCH):
            try:
                pkt = os.read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the device went away: stop watching it, or we would spin
                log.error("%s: reading the TUN device failed (%s); it carries no more traffic",
                          t.spec.name, exc.strerror or exc)
                self._forget_fd(t)
                self.failed.add(t.spec.name)
                return
            from_tunnel(t, pkt, now)

    def _from_socket(self, sock: socket.socket, now: float) -> None:
        """Up to a batch of IPv4 packets (IP header included) from a raw socket."""
        from_wire = self.core.from_wire
        recv = sock.recv
        for _ in range(BATCH):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a pending socket error is reported once, then cleared
                self.core.counters.recv_errors += 1
                return
            from_wire(data, now)

    def _send_out(self) -> None:
        """What the core queued: datagrams, TUN writes, then events for the IKE process."""
        core = self.core
        for sock, queue in ((self.esp_sock, core.esp_out), (self.udp_sock, core.udp_out),
                            (self.gre_sock, core.gre_out)):
            if queue:
                sendto = sock.sendto
                for data, addr in queue:
                    try:
                        sendto(data, addr)
                    except OSError:
                        core.counters.send_errors += 1
                queue.clear()
        if core.tun_out:
            write = os.write
            for t, data in core.tun_out:
                if t.handle >= 0:
                    try:
                        write(t.handle, data)
                    except OSError:
                        core.counters.send_errors += 1
            core.tun_out.clear()
        while (event := core.next_event()) is not None:
            if isinstance(event, Acquire):
                self._tell("acquire", event.local, event.remote)
            else:
                self._tell("expire", event.spi, event.direction, event.kind)

    # --- loop --------------------------------------------------------------------------------

    def run(self) -> None:
        core = self.core
        sel = self.sel = selectors.DefaultSelector()
        self.ctl.setblocking(False)
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        for sock in (self.esp_sock, self.gre_sock, self.udp_sock):
            sel.register(sock, selectors.EVENT_READ, sock)
        for t in core.tunnels:
            if t.handle >= 0:
                os.set_blocking(t.handle, False)
                sel.register(t.handle, selectors.EVENT_READ, t)
        pipe.send(self.ctl, "ready")
        try:
            while self._running:
                timeout = core.get_timer() - time.monotonic()
                for key, _ in sel.select(max(0.0, timeout)):
                    now = time.monotonic()
                    what = key.data
                    if type(what) is Tunnel:
                        self._from_tun(what, now)
                    elif what == "ctl":
                        self._handle_ctl(now)
                    else:
                        self._from_socket(what, now)
                    self._send_out()
                now = time.monotonic()
                if now >= core.get_timer():
                    core.handle_timer(now)
                    self._send_out()
                    self.drops.check(core.counters.as_dict(), now)
        finally:
            self.drops.summary(core.counters.as_dict())
            sel.close()
            self.close()

    def close(self) -> None:
        for tun in self.devices.values():
            if tun is not None:
                tun.close()
        for sock in (self.esp_sock, self.gre_sock, self.udp_sock):
            sock.close()


def _raw_socket(proto: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    return sock


def start(tunnels: list[TunnelSpec], setkey_files: list, *, natt_port: int = NATT_PORT,
          close_fds: tuple[int, ...] = ()) -> tuple[int, socket.socket]:
    """Fork the forwarding process; returns its pid and our end of the pipe. `close_fds` are
    descriptors of the caller's that the forwarding process must not keep open.

    Forking (rather than spawning) keeps the configuration objects without re-parsing; the
    child closes our end so that it sees EOF — and exits, removing the TUN devices — when the
    IKE process dies for any reason, even SIGKILL.
    """
    ours, theirs = pipe.make_pipe()
    pid = os.fork()
    if pid == 0:  # the forwarding process
        code = 0
        try:
            ours.close()
            for fd in close_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            # The IKE process owns the signals; this one stops on EOF or `stop`. A SIGTERM to
            # the whole process group (as service managers send) must not end forwarding
            # before the IKE process has sent its deletes and asked it to stop.
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            DataPlane(theirs, tunnels, setkey_files, natt_port=natt_port).run()
        except BaseException as exc:  # report, then leave without running the parent's cleanup
            code = 1
            try:
                pipe.send(theirs, "error", f"{type(exc).__name__}: {exc}")
            except OSError:
                pass
            if not isinstance(exc, OSError) or exc.errno != errno.EPIPE:
                log.error("forwarding process failed: %s", exc)
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours
