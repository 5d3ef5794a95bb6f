"""The forwarding process: the I/O shell around forward.core.ForwardingCore.

It runs in its own process so that IKE work (a DH computation, a config reload) never stalls a
packet. It owns the TUN devices (the `gre` blocks' and the tunnel-mode device with its routes),
the raw ESP, UDP and GRE sockets of both address families, the control pipe and the selector,
and decides nothing: what it reads goes into the core, what the core queues goes out.

The IKE process sends `install`, `install-inbound` and `withdraw` (a responder's inbound SA
before its pair, and its removal when the pair does not come), `remove`, `setkey`, `tunnels`,
`device`, `flush`, `log_level`, `query` and `stop` messages; this process answers queries and
reports the core's events: `acquire` (an outbound policy needs an SA) and `expire` (an SA
reached a soft or hard lifetime).

The tunnel-mode device is routed for the remote network of every outbound esp/tunnel policy
(with a preferred source address of ours inside the policy's local network, where we have
one); the routes follow the SPD as setkey files, generated policies and SAs change it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from functools import partial

from forward.core import (
    DROP_REASONS,
    IPPROTO_ESP,
    IPPROTO_UDP,
    NATT_PORT,
    Device,
    ForwardingCore,
    Tunnel,
)
from forward.events import Acquire
from forward.gro import TUN_READ_SIZE, VNET_HEADER_LEN, coalesce
from forward.specs import DeviceSpec, SaSpec, TunnelSpec
from gre import IPPROTO_GRE
from pyike import pipe, sockfilter
from pyike.droplog import DropLog
from pyike.sadb import run_setkey, setkey_state
from pyike.tun import TunDevice, host_interfaces
from spd.errors import SetkeyError

log = logging.getLogger("pyike.dataplane")

BATCH = 64  # packets read per readiness event before looking at the other descriptors
# RFC 3542 §6.1: struct in6_pktinfo, the destination address of a packet a raw IPv6 socket read
PKTINFO_SPACE = socket.CMSG_SPACE(20)


class DataPlane:
    """The forwarding loop. `run()` returns when told to stop or when the IKE process is gone."""

    def __init__(self, ctl: socket.socket, tunnels: list[TunnelSpec], setkey_files: list,
                 *, create_tun: bool = True, natt_port: int = NATT_PORT,
                 device: DeviceSpec | None = None) -> None:
        self.ctl = ctl
        self.core = ForwardingCore(natt_port=natt_port)
        self.create_tun = create_tun
        # the descriptors watched once run() starts, each with what reads it: reader(now)
        self.poller: select.epoll | None = None
        self.readers: dict[int, Callable[[float], None]] = {}
        self.devices: dict[str, TunDevice | None] = {}  # by tunnel name
        self.failed: set[str] = set()  # tunnels whose device failed: made again at a reload
        self.by_fd: dict[int, Tunnel] = {}
        self.tunnel_tun: TunDevice | None = None  # the tunnel-mode device
        self.routes: dict[str, str | None] = {}  # routed into it: network -> preferred source
        self.routes_refused: set[str] = set()  # networks holding a far end: said once
        self.apply_tunnels(tunnels)
        self.apply_device(device)
        self.esp_sock = _raw_socket(IPPROTO_ESP)
        self.gre_sock = _raw_socket(IPPROTO_GRE)
        self.udp_sock = _raw_socket(IPPROTO_UDP)
        # Only ESP in UDP to the NAT-T port wakes this process, not IKE or other UDP.
        sockfilter.attach(self.udp_sock, sockfilter.esp_in_udp_program(natt_port),
                          "raw UDP socket")
        self.esp6_sock = _raw_socket6(IPPROTO_ESP)
        self.gre6_sock = _raw_socket6(IPPROTO_GRE)
        core = self.core  # each socket with the core's list for it, paired once for _send_out
        self._outputs = ((self.esp_sock, core.esp_out), (self.udp_sock, core.udp_out),
                         (self.gre_sock, core.gre_out), (self.esp6_sock, core.esp6_out),
                         (self.gre6_sock, core.gre6_out))
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
                    if self.poller is not None:
                        self._poll(t.handle, partial(self._from_tun, t))

    def apply_device(self, spec: DeviceSpec | None) -> None:
        """The tunnel-mode device of `spec` (a reload's `tunnel_device`): made, changed in
        place (MTU), or closed; a new one is made before the old one goes."""
        old = self.core.device
        if spec is not None and old is not None and old.spec.name == spec.name:
            if self.tunnel_tun is not None and spec.mtu != old.spec.mtu:
                self.tunnel_tun.reconfigure(None, None, spec.mtu)
            self.core.set_device(spec)
            return
        tun = None
        if spec is not None and self.create_tun:
            try:
                tun = TunDevice(spec.name, None, None, spec.mtu)
            except Exception as exc:
                raise RuntimeError(f"{spec.name}: cannot create the TUN device: {exc}") from exc
        if old is not None:
            self._watch(old, False)
            if self.tunnel_tun is not None:
                self.tunnel_tun.close()
        self.tunnel_tun, self.routes = tun, {}
        device = self.core.set_device(spec)
        if device is not None and tun is not None:
            device.handle = tun.fileno()
            self._watch(device, True)
        self._sync_routes()

    def _watch(self, what: Device, on: bool) -> None:
        if what.handle < 0 or self.poller is None:
            return
        if on:
            self._poll(what.handle, partial(self._from_device, what))
        else:
            self._unpoll(what.handle)

    def _poll(self, fd: int, reader: Callable[[float], None]) -> None:
        """From now on reader(now) runs whenever `fd` is readable (non-blocking from here)."""
        os.set_blocking(fd, False)
        self.readers[fd] = reader
        self.poller.register(fd, select.EPOLLIN)

    def _unpoll(self, fd: int) -> None:
        if self.readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # already closed: epoll forgot it
                self.poller.unregister(fd)

    def _sync_routes(self) -> None:
        """Route the remote networks of the outbound tunnel-mode policies into the device.

        Never one that holds the tunnel's far end (the ESP itself would loop into the device)
        or overlaps a network of ours (a peer's generated policy, or a slip in setkey.conf,
        would take our own LAN's traffic away from it): those are logged once and left out."""
        if self.tunnel_tun is None:
            return
        wanted: dict[str, str | None] = {}
        ours = None
        for remote, local, far_end in self.core.state.tunnel_routes():
            if str(remote) in wanted:
                continue
            if ours is None:
                ours = host_interfaces()
            why = ("it holds the tunnel's far end" if far_end in remote else
                   next((f"it overlaps our {iface}" for iface in ours
                         if iface.network.version == remote.version
                         and iface.network.overlaps(remote)), None))
            if why is not None:
                if str(remote) not in self.routes_refused:
                    self.routes_refused.add(str(remote))
                    log.warning("%s: not routing %s into the device: %s", self.tunnel_tun.name,
                                remote, why)
                continue
            wanted[str(remote)] = next((str(i.ip) for i in ours if i.ip in local), None)
        if wanted != self.routes:
            self.tunnel_tun.set_routes(wanted, self.routes)

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
        if self.poller is not None:
            self._unpoll(t.handle)
        self.by_fd.pop(t.handle, None)
        t.handle = -1

    # --- control -----------------------------------------------------------------------------

    def apply_setkey(self, setkey_files: list, now: float) -> None:
        """New SPD and hand-keyed SAs; if anything in the files is refused, nothing changes."""
        spd, manual = setkey_state(setkey_files, [t.spec.local for t in self.core.tunnels], now)
        self.core.apply_setkey(spd, manual)
        self._sync_routes()

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
            if any(spec.generate_policy for spec in specs):
                self._sync_routes()
        elif verb == "install-inbound":  # a responder's inbound SA, before its pair
            self.core.install_inbound(msg[1], now)
        elif verb == "withdraw":  # that SA, when its pair did not come
            self.core.withdraw_inbound(msg[1])
        elif verb == "remove":
            self.core.remove(msg[1], msg[2])
            self._sync_routes()  # a generated policy may have gone with the SA
        elif verb in ("tunnels", "device"):  # answered: the IKE process refuses a reload that
            req_id, specs = msg[1], msg[2]  # fails here
            try:
                (self.apply_tunnels if verb == "tunnels" else self.apply_device)(specs)
            except Exception as exc:
                self._tell("reply", req_id, f"{type(exc).__name__}: {exc}")
            else:
                self._tell("reply", req_id, None)
        elif verb == "setkey":
            self.apply_setkey(msg[1], now)
        elif verb == "flush":
            self.core.flush()
            self._sync_routes()
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
                self._sync_routes()
                # the IKE process's responder takes its tunnel policies from these
                changes["policies"] = self.core.state.configured_policies("out")
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
                pkt = os.read(fd, TUN_READ_SIZE)[VNET_HEADER_LEN:]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the device went away: stop watching it, or we would spin
                log.error("%s: reading the TUN device failed (%s); it carries no more traffic",
                          t.spec.name, exc.strerror or exc)
                self._forget_fd(t)
                self.failed.add(t.spec.name)
                return
            from_tunnel(t, pkt, now)

    def _from_device(self, device: Device, now: float) -> None:
        """Up to a batch of packets from the tunnel-mode device."""
        from_device = self.core.from_device
        fd = device.handle
        for _ in range(BATCH):
            try:
                pkt = os.read(fd, TUN_READ_SIZE)[VNET_HEADER_LEN:]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("%s: reading the TUN device failed (%s); it carries no more traffic",
                          device.spec.name, exc.strerror or exc)
                self._watch(device, False)
                device.handle = -1
                return
            from_device(pkt, now)

    def _from_socket6(self, sock: socket.socket, now: float) -> None:
        """Up to a batch of payloads from a raw IPv6 socket, with their outer addresses: the
        source from recvmsg, the destination from IPV6_PKTINFO (RFC 3542 §6)."""
        from_wire6 = self.core.from_wire6
        recvmsg = sock.recvmsg
        proto = sock.proto
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, addr = recvmsg(65535, PKTINFO_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.core.counters.recv_errors += 1
                return
            dst = next((cdata[:16] for level, kind, cdata in ancillary
                        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO), None)
            if dst is None:
                self.core.counters.malformed += 1
                continue
            from_wire6(socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0]), dst, proto,
                       data, now)

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
        for sock, queue in self._outputs:
            if queue:
                if sock is None:  # no IPv6 here: counted, as the kernel would refuse them
                    core.counters.send_errors += len(queue)
                    queue.clear()
                    continue
                sendto = sock.sendto
                for data, addr in queue:
                    try:
                        sendto(data, addr)
                    except OSError:
                        core.counters.send_errors += 1
                queue.clear()
        if core.tun_out:
            writev = os.writev
            writes = coalesce(core.tun_out)
            core.counters.tun_coalesced += len(core.tun_out) - len(writes)
            for t, header, data in writes:
                if t.handle >= 0:
                    try:
                        writev(t.handle, (header, data))
                    except OSError:
                        core.counters.send_errors += 1
            core.tun_out.clear()
        while (event := core.next_event()) is not None:
            if isinstance(event, Acquire):
                self._tell("acquire", event)
            else:
                self._tell("expire", event.spi, event.direction, event.kind)

    # --- loop --------------------------------------------------------------------------------

    def run(self) -> None:
        core = self.core
        # epoll itself rather than selectors: its select() costs twice epoll.poll() per
        # wakeup, and the reader by descriptor spares a chain of type tests per event
        poller = self.poller = select.epoll()
        self.ctl.setblocking(False)
        self._poll(self.ctl.fileno(), self._handle_ctl)
        for sock in (self.esp_sock, self.gre_sock, self.udp_sock):
            self._poll(sock.fileno(), partial(self._from_socket, sock))
        for sock in (self.esp6_sock, self.gre6_sock):
            if sock is not None:
                self._poll(sock.fileno(), partial(self._from_socket6, sock))
        for t in core.tunnels:
            if t.handle >= 0:
                self._poll(t.handle, partial(self._from_tun, t))
        if core.device is not None:
            self._watch(core.device, True)
        pipe.send(self.ctl, "ready")
        readers = self.readers
        monotonic = time.monotonic
        send_out = self._send_out
        try:
            while self._running:
                timeout = core.get_timer() - monotonic()
                for fd, _events in poller.poll(max(0.0, timeout)):
                    reader = readers.get(fd)
                    if reader is not None:  # else unwatched by an earlier reader of this round
                        reader(monotonic())
                        send_out()
                now = time.monotonic()
                if now >= core.get_timer():
                    core.handle_timer(now)
                    self._send_out()
                    self.drops.check(core.counters.as_dict(), now)
        finally:
            self.drops.summary(core.counters.as_dict())
            poller.close()
            self.close()

    def close(self) -> None:
        for tun in (*self.devices.values(), self.tunnel_tun):
            if tun is not None:
                tun.close()
        for sock in (self.esp_sock, self.gre_sock, self.udp_sock, self.esp6_sock,
                     self.gre6_sock):
            if sock is not None:
                sock.close()


def _raw_socket(proto: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    return sock


def _raw_socket6(proto: int) -> socket.socket | None:
    """A raw IPv6 socket telling each packet's destination (RFC 3542 §6.1); None when this
    host has no IPv6 (logged: IPv6 outer addresses then carry nothing)."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    except OSError as exc:
        log.warning("no raw IPv6 socket for protocol %d (%s): IPv6 outer addresses carry "
                    "nothing", proto, exc.strerror or exc)
        return None
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    return sock


def start(tunnels: list[TunnelSpec], setkey_files: list, *, natt_port: int = NATT_PORT,
          close_fds: tuple[int, ...] = (), device: DeviceSpec | None = None
          ) -> tuple[int, socket.socket]:
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
            DataPlane(theirs, tunnels, setkey_files, natt_port=natt_port, device=device).run()
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
