"""The forwarding process: TUN <-> GRE <-> ESP <-> raw sockets, fed SA installs over a pipe.

It runs in its own process so that IKE work (a DH computation, a config reload) never stalls a
packet. The IKE process sends `install`, `remove`, `setkey`, `tunnels`, `flush`, `log_level`,
`query` and `stop` messages; this process answers queries and reports `acquire` (an outbound
policy needs an SA) and `expire` (an SA reached a soft or hard lifetime).

Outbound: TUN read -> gre.encap -> SPD `out` lookup (cached per tunnel) -> EspSA.seal -> raw
IPPROTO_ESP socket. Inbound: raw ESP socket -> SA by SPI -> open -> SPD `in` check -> gre.decap
-> TUN write. Plain GRE (raw protocol-47 socket) is accepted only where no `require` policy
covers it.
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

from pyike import pipe
from pyike.droplog import DropLog
from pyike.sadb import SadState, setkey_state
from pyike.specs import SaSpec, TunnelSpec
from pyike.tun import TunDevice
from spd.errors import SetkeyError

log = logging.getLogger("pyike.dataplane")

IPPROTO_ESP = 50  # RFC 4303 §2 (IANA protocol number)
IPPROTO_GRE = 47  # RFC 2784
IPPROTO_UDP = 17
NATT_PORT = 4500  # RFC 3948 §2: ESP in UDP shares the port IKE floated to
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2: IKE on port 4500, not ESP
QUEUE_WHILE_ACQUIRING = 8  # packets kept while an SA is negotiated (racoon/kernel keep one)
ACQUIRE_RETRY_S = 1.0  # the kernel repeats an acquire no more often than this
BATCH = 64  # packets read per readiness event before looking at the other descriptors
HOUSEKEEPING_S = 1.0  # lifetime checks


class Counters:
    __slots__ = (
        "tun_in", "esp_out", "esp_out_bytes", "esp_in", "esp_in_bytes", "gre_clear_out",
        "gre_clear_in", "no_sa_dropped", "queued", "acquires", "discarded", "seal_dropped",
        "open_dropped", "unknown_spi", "policy_dropped", "gre_clear_dropped", "malformed",
        "tun_out", "send_errors", "ctl_dropped", "recv_errors",
        "esp_out_other_icv",  # copies with the other ICV length, until the peer's first packet
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# What each drop counter counts, for the first-occurrence log lines.
DROP_REASONS = {
    "malformed": "a packet that is not IPv4/IPv6, too short, or bad GRE",
    "unknown_spi": "ESP with an SPI we have no SA for",
    "open_dropped": "ESP that failed its integrity check, the replay window or a lifetime",
    "policy_dropped": "decrypted ESP that no inbound policy or tunnel allows",
    "gre_clear_dropped": "plain GRE that a require policy covers",
    "no_sa_dropped": "an outbound packet while negotiating an SA (queue full)",
    "seal_dropped": "an outbound packet its SA refused to seal (lifetime or sequence number)",
    "discarded": "an outbound packet a discard policy covers",
    "send_errors": "a packet the kernel refused to send or the TUN device to take",
    "recv_errors": "a failed read from a raw socket",
    "ctl_dropped": "a message to the IKE process lost on a full pipe",
}


class Tunnel:
    """Runtime state of one GRE tunnel; the out-policy and out-SA are cached here."""

    __slots__ = ("spec", "tun", "fd", "out_action", "out_sa", "cache_gen", "queue",
                 "acquired_at", "in_require", "in_action", "out_use", "out_udp")

    def __init__(self, spec: TunnelSpec, tun: TunDevice | None) -> None:
        self.spec = spec
        self.tun = tun
        self.fd = tun.fileno() if tun is not None else -1
        self.out_action: str | None = None
        self.out_sa = None
        self.cache_gen = -1
        self.queue: list[bytes] = []
        self.acquired_at = -ACQUIRE_RETRY_S
        self.in_require = False
        self.out_use = False  # level `use`: without an SA the packet goes in clear
        self.out_udp: bytes | None = None  # UDP ports when the out SA is UDP-encapsulated
        self.in_action: str | None = None


class DataPlane:
    """The forwarding loop. `run()` returns when told to stop or when the IKE process is gone."""

    def __init__(self, ctl: socket.socket, tunnels: list[TunnelSpec], setkey_files: list,
                 *, create_tun: bool = True, natt_port: int = NATT_PORT) -> None:
        self.ctl = ctl
        self.state = SadState()
        self.counters = Counters()
        self.create_tun = create_tun
        self.sel: selectors.BaseSelector | None = None
        self.tunnels: list[Tunnel] = []
        self.by_fd: dict[int, Tunnel] = {}
        self.by_pair: dict[tuple[str, str], Tunnel] = {}  # (local, remote): the first tunnel
        self.by_key: dict[tuple[str, str, int | None], Tunnel] = {}  # ... and its GRE key
        self.apply_tunnels(tunnels)
        self.esp_sock = _raw_socket(IPPROTO_ESP)
        self.gre_sock = _raw_socket(IPPROTO_GRE)
        self.udp_sock = _raw_socket(IPPROTO_UDP)
        self.natt_port = natt_port
        self.apply_setkey(setkey_files, time.monotonic())
        self.drops = DropLog(log, "ESP/GRE:", DROP_REASONS)
        self._running = True

    # --- tunnels -----------------------------------------------------------------------------

    def apply_tunnels(self, specs: list[TunnelSpec]) -> None:
        """Make the TUN devices match `specs` (a reloaded configuration's `gre` blocks).

        A device whose name stays keeps its descriptor and is changed in place (address, peer,
        MTU); new devices, and those deleted under us, are made before any old one goes, so a
        device that cannot be made leaves the old set untouched. SAs are the SAD's and stay.
        """
        lost = [t for t in self.tunnels if t.fd < 0 and t.tun is not None]
        old = {t.spec.name: t for t in self.tunnels if t not in lost}
        made: list[Tunnel] = []
        try:
            for spec in specs:
                if spec.name not in old:
                    made.append(Tunnel(spec, self._make_tun(spec)))
        except BaseException:
            for t in made:
                if t.tun is not None:
                    t.tun.close()
            raise
        fresh = {t.spec.name: t for t in made}
        for t in lost:
            if t.spec.name in fresh:
                log.info("%s: TUN device made again", t.spec.name)
        tunnels = []
        for spec in specs:
            t = fresh.get(spec.name) or old[spec.name]
            if t.spec != spec:
                if t.tun is not None:
                    t.tun.reconfigure(spec.address, spec.peer, spec.mtu)
                if (t.spec.local, t.spec.remote, t.spec.key) != (spec.local, spec.remote,
                                                                 spec.key):
                    t.queue.clear()  # packets queued for the old outer pair
                t.spec = spec
            tunnels.append(t)
        kept = {spec.name for spec in specs}
        for t in lost + [t for name, t in old.items() if name not in kept]:
            self._forget_fd(t)
            if t.tun is not None:
                t.tun.close()
        self.tunnels = tunnels
        self.by_pair.clear()
        self.by_key.clear()
        for t in tunnels:
            self.by_pair.setdefault((t.spec.local, t.spec.remote), t)
            self.by_key[(t.spec.local, t.spec.remote, t.spec.key)] = t
        for t in made:
            if t.fd >= 0:
                self.by_fd[t.fd] = t
                if self.sel is not None:
                    os.set_blocking(t.fd, False)
                    self.sel.register(t.fd, selectors.EVENT_READ, t)
        self._refresh_policies()

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
        if t.fd < 0:
            return
        if self.sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(t.fd)
        self.by_fd.pop(t.fd, None)
        t.fd = -1

    # --- control -----------------------------------------------------------------------------

    def apply_setkey(self, setkey_files: list, now: float) -> None:
        """New SPD and hand-keyed SAs; if anything in the files is refused, nothing changes."""
        spd, manual = setkey_state(setkey_files, [t.spec.local for t in self.tunnels], now)
        self.state.replace_setkey(spd, manual)
        self._refresh_policies()

    def _refresh_policies(self) -> None:
        for t in self.tunnels:
            s = t.spec
            out = self.state.lookup_policy("out", s.local, s.remote, IPPROTO_GRE, s.key)
            t.out_action = out.action if out is not None else None
            t.out_use = out is not None and out.action == "ipsec" and all(
                r.level == "use" for r in out.rules)
            inp = self.state.lookup_policy("in", s.remote, s.local, IPPROTO_GRE, s.key)
            t.in_action = inp.action if inp is not None else None
            t.in_require = inp is not None and inp.action == "ipsec" and any(
                r.level in ("require", "unique") for r in inp.rules)
            t.cache_gen = -1

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
            self.state.install(specs, now)
            self._flush_queues(now)
        elif verb == "remove":
            self.state.remove(msg[1], msg[2])
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
            self.state.flush()
        elif verb == "log_level":  # a reloaded `log` statement
            logging.getLogger().setLevel(msg[1])
        elif verb == "setkey-run":  # pyike-setkey: answered with the SAs removed, or why not
            req_id, sk = msg[1], msg[2]
            try:
                changes = self.state.run_setkey(sk, [t.spec.local for t in self.tunnels], now)
            except SetkeyError as exc:
                self._tell("reply", req_id, {"error": str(exc)})
            else:
                self._refresh_policies()
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
            self.counters.ctl_dropped += 1

    def _answer(self, what: str):
        wall = time.time()
        mono = time.monotonic()
        if what == "counters":
            return {"counters": self.counters.as_dict(), "tunnels": [
                {"name": t.spec.name, "local": t.spec.local, "remote": t.spec.remote,
                 "address": t.spec.address, "peer": t.spec.peer, "mtu": t.spec.mtu,
                 "out_action": t.out_action, "queued": len(t.queue)} for t in self.tunnels]}
        return self.state.dump(what, wall, mono)

    # --- packet path -------------------------------------------------------------------------

    def _out_sa(self, t: Tunnel):
        if t.cache_gen != self.state.generation:
            t.out_sa = self.state.outbound(t.spec.local, t.spec.remote)
            t.out_udp = self.state.udp_ports_of(t.out_sa)
            t.cache_gen = self.state.generation
        return t.out_sa

    def _from_tun(self, t: Tunnel, now: float) -> None:
        c = self.counters
        fd = t.fd
        encap = self.state.gre_encap
        key = t.spec.key
        for _ in range(BATCH):
            try:
                pkt = os.read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the device went away: stop watching it, or we would spin
                self._tun_failed(t, exc)
                return
            c.tun_in += 1
            action = t.out_action
            g = encap(pkt, None, key)
            if type(g) is not bytes:  # neither IPv4 nor IPv6
                c.malformed += 1
                continue
            if action == "ipsec":
                sa = t.out_sa if t.cache_gen == self.state.generation else self._out_sa(t)
                if sa is None:
                    if t.out_use:  # setkey(8) `use`: negotiate, meanwhile send as is
                        self._request_sa(t, now)
                        self._send(self.gre_sock, g, t.spec.remote)
                        c.gre_clear_out += 1
                    else:
                        self._acquire(t, g, now)
                    continue
                self._send_esp(t, sa, g, now)
            elif action == "discard":
                c.discarded += 1
            else:  # `none`, or no policy at all: GRE in clear, as the kernel would
                self._send(self.gre_sock, g, t.spec.remote)
                c.gre_clear_out += 1

    def _tun_failed(self, t: Tunnel, exc: OSError) -> None:
        log.error("%s: reading the TUN device failed (%s); it carries no more traffic",
                  t.spec.name, exc.strerror or exc)
        self._forget_fd(t)

    def _send_esp(self, t: Tunnel, sa, g: bytes, now: float) -> None:
        out = sa.seal(g, IPPROTO_GRE, now)
        if type(out) is not bytes:
            self.counters.seal_dropped += 1
            t.cache_gen = -1  # the SA may have died (hard lifetime, sequence exhausted)
            return
        other = sa.alternate  # the same packet with the other ICV length (esp.sa), or None
        if t.out_udp is not None:  # RFC 3948 §2.1: UDP checksum zero over IPv4
            out = t.out_udp + (8 + len(out)).to_bytes(2, "big") + b"\x00\x00" + out
            if other is not None:
                other = t.out_udp + (8 + len(other)).to_bytes(2, "big") + b"\x00\x00" + other
            sock = self.udp_sock
        else:
            sock = self.esp_sock
        if self._send(sock, out, t.spec.remote):
            self.counters.esp_out += 1
            self.counters.esp_out_bytes += len(g)
        if other is not None and self._send(sock, other, t.spec.remote):
            self.counters.esp_out_other_icv += 1

    def _send(self, sock: socket.socket, data: bytes, dst: str) -> bool:
        try:
            sock.sendto(data, (dst, 0))
            return True
        except OSError:
            self.counters.send_errors += 1
            return False

    def _acquire(self, t: Tunnel, g: bytes, now: float) -> None:
        c = self.counters
        if len(t.queue) < QUEUE_WHILE_ACQUIRING:
            t.queue.append(g)
            c.queued += 1
        else:
            c.no_sa_dropped += 1
        self._request_sa(t, now)

    def _request_sa(self, t: Tunnel, now: float) -> None:
        """racoon's acquire, at most once a second per tunnel."""
        if now - t.acquired_at >= ACQUIRE_RETRY_S:
            t.acquired_at = now
            self.counters.acquires += 1
            self._tell("acquire", t.spec.local, t.spec.remote)

    def _flush_queues(self, now: float) -> None:
        for t in self.tunnels:
            if t.queue and t.out_action == "ipsec":
                sa = self._out_sa(t)
                if sa is not None:
                    queued, t.queue = t.queue, []
                    for g in queued:
                        self._send_esp(t, sa, g, now)

    def _received(self, sock: socket.socket, min_len: int, count_short: bool = True):
        """Up to a batch of IPv4 packets from a raw socket (IP header included)."""
        for _ in range(BATCH):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a pending socket error is reported once, then cleared
                self.counters.recv_errors += 1
                return
            if len(data) < min_len or data[0] >> 4 != 4:
                if count_short:
                    self.counters.malformed += 1
                continue
            yield data

    def _from_esp(self, now: float) -> None:
        for data in self._received(self.esp_sock, 28):
            self._esp_in(data, (data[0] & 15) * 4, now)

    def _from_udp(self, now: float) -> None:
        """ESP in UDP (RFC 3948): a raw UDP socket sees a copy of every local UDP datagram;
        those to the NAT-T port that do not start with the non-ESP marker are ESP."""
        port = self.natt_port
        for data in self._received(self.udp_sock, 28, count_short=False):
            ihl = (data[0] & 15) * 4
            if int.from_bytes(data[ihl + 2:ihl + 4], "big") != port:
                continue
            esp = ihl + 8
            if len(data) - esp < 8 or data[esp:esp + 4] == NON_ESP_MARKER:
                continue  # IKE, or a one-octet keepalive: the IKE process has its copy
            self._esp_in(data, esp, now)

    def _esp_in(self, data: bytes, offset: int, now: float) -> None:
        """One ESP packet at `offset` of an IPv4 packet: open, check, decapsulate, deliver."""
        c = self.counters
        sa = self.state.inbound(int.from_bytes(data[offset:offset + 4], "big"))
        if sa is None:
            c.unknown_spi += 1
            return
        res = sa.open(memoryview(data)[offset:], now)
        if type(res) is not tuple:
            c.open_dropped += 1
            return
        nh, payload = res
        src = socket.inet_ntoa(data[12:16])
        t = self.by_pair.get((socket.inet_ntoa(data[16:20]), src))
        if nh != IPPROTO_GRE or t is None or sa.src != src:
            c.policy_dropped += 1
            return
        c.esp_in += 1
        c.esp_in_bytes += len(payload)
        self._to_tun(t, payload, False)

    def _from_gre(self) -> None:
        for data in self._received(self.gre_sock, 24):
            ihl = (data[0] & 15) * 4
            src = socket.inet_ntoa(data[12:16])
            dst = socket.inet_ntoa(data[16:20])
            t = self.by_pair.get((dst, src))
            if t is not None:  # else not one of our tunnels: none of our business
                self._to_tun(t, memoryview(data)[ihl:], True)

    def _to_tun(self, t: Tunnel, gre_packet, clear: bool) -> None:
        """Decapsulate, pick the tunnel by GRE key, apply its `in` policy, write to its TUN."""
        c = self.counters
        pkt = self.state.gre_decap(bytes(gre_packet))
        if type(pkt) is not self.state.gre_packet_type:
            c.malformed += 1
            return
        if pkt.key != t.spec.key:
            t = self.by_key.get((t.spec.local, t.spec.remote, pkt.key))
            if t is None:
                c.malformed += 1
                return
        if t.in_action == "discard" or (clear and t.in_require):
            if clear:
                c.gre_clear_dropped += 1
            else:
                c.policy_dropped += 1
            return
        if clear:
            c.gre_clear_in += 1
        if t.fd < 0:
            return
        try:
            os.write(t.fd, pkt.payload)
            c.tun_out += 1
        except OSError:
            c.send_errors += 1

    # --- loop --------------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        for spi, direction, kind in self.state.expire(now):
            self._tell("expire", spi, direction, kind)
        self.drops.check(self.counters.as_dict(), now)

    def run(self) -> None:
        sel = self.sel = selectors.DefaultSelector()
        self.ctl.setblocking(False)
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        sel.register(self.esp_sock, selectors.EVENT_READ, "esp")
        sel.register(self.gre_sock, selectors.EVENT_READ, "gre")
        sel.register(self.udp_sock, selectors.EVENT_READ, "udp")
        for t in self.tunnels:
            if t.fd >= 0:
                os.set_blocking(t.fd, False)
                sel.register(t.fd, selectors.EVENT_READ, t)
        pipe.send(self.ctl, "ready")
        next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        try:
            while self._running:
                for key, _ in sel.select(HOUSEKEEPING_S):
                    now = time.monotonic()
                    what = key.data
                    if what == "esp":
                        self._from_esp(now)
                    elif what == "gre":
                        self._from_gre()
                    elif what == "udp":
                        self._from_udp(now)
                    elif what == "ctl":
                        self._handle_ctl(now)
                    else:
                        self._from_tun(what, now)
                now = time.monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_S
                    self._housekeeping(now)
        finally:
            self.drops.summary(self.counters.as_dict())
            sel.close()
            self.close()

    def close(self) -> None:
        for t in self.tunnels:
            if t.tun is not None:
                t.tun.close()
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
