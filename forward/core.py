"""The forwarding core: every decision the forwarding process makes about a packet, without I/O.

The shape of ikev1.engine. The shell hands in what it read and the time, and takes out what to
send where and what happened:

- in: `from_tunnel(tunnel, packet, now)`, an IP packet read from a GRE tunnel's TUN device;
  `from_device(packet, now)`, one read from the tunnel-mode device; `from_wire(packet, now)`, an
  IPv4 packet (header included) a raw socket received: ESP (protocol 50), ESP in UDP to the
  NAT-T port (RFC 3948), or plain GRE (47); `from_wire6(src, dst, proto, payload, now)`, the
  same over IPv6, whose raw sockets give the payload and the addresses apart;
- control: `install`, `install_inbound` (a responder's inbound SA before its pair) and
  `withdraw_inbound`, `remove`, `flush`, `apply_setkey`, `set_tunnels`, `set_device` (the IKE
  process's messages), `handle_timer(now)` once `get_timer()` is due (lifetimes);
- out: `esp_out`, `udp_out`, `gre_out` and `esp6_out`, `gre6_out`: lists of
  `(datagram, (address, 0))` for the raw IPv4 and IPv6 sockets (the kernel adds the IP header;
  a `udp_out` datagram starts with its UDP header); `tun_out`: `(tunnel or device, packet)` for
  the TUN devices; `next_event()`: Acquire, Expire; `counters`. The shell sends the lists in
  order and empties them (clear(), the lists stay).

GRE (ESP transport mode). Outbound: GRE encap -> the tunnel's `out` policy and SA (cached per
tunnel, renewed when the SAD's generation moves) -> seal -> ESP, or ESP in UDP when the SA says
so. Inbound: SA by SPI -> open -> the tunnel by outer addresses -> the SA's selectors (checked
once per SA and tunnel) -> GRE decap -> the tunnel by GRE key -> its `in` policy. Plain GRE is
accepted only where no `require` policy covers it.

ESP tunnel mode (RFC 4303 §3.1.2). Outbound: the inner packet's addresses, protocol (and ports
where a policy names ports) -> a Flow, made once per generation: the `out` policy, its esp/tunnel
rule's ends, the SA between them whose selectors cover the packet -> seal the whole packet (next
header 4 or 41) -> ESP to the rule's far end. Inbound: SA by SPI -> open -> next header 4/41 ->
outer addresses the SA's, inner packet within the SA's selectors and allowed by the `in` policy
(decided once per SA and inner address pair) -> the tunnel-mode device.

Hot path: per packet one call in, the SA's seal or open, the GRE codec, and list appends of
tuples the socket call needs anyway; everything else is looked up once per tunnel or flow.
"""

from __future__ import annotations

import ipaddress
from collections import deque

from esp.sa import EspDrop, EspSA
from esp.udp import encapsulate as udp_encapsulate
from esp.udp import is_esp
from forward.events import Acquire, Expire
from forward.specs import DeviceSpec, SaSpec, TunnelSpec
from forward.state import PORT_PROTOCOLS, SadState
from gre import IPPROTO_GRE, GrePacket
from gre import decap as gre_decap
from gre import headers_by_version as gre_headers
from spd.db import SPD
from spd.policy import PROTO_ANY

IPPROTO_ESP = 50  # RFC 4303 §2 (IANA protocol number)
IPPROTO_UDP = 17
IPPROTO_IPIP = 4  # tunnel mode: the next header of an inner IPv4 packet (RFC 4303 §3.1.2)
IPPROTO_IPV6 = 41  # ... and of an inner IPv6 packet
INNER_NEXT_HEADER = {4: IPPROTO_IPIP, 6: IPPROTO_IPV6}  # by IP version
NATT_PORT = 4500  # RFC 3948 §2: ESP in UDP shares the port IKE floated to
QUEUE_WHILE_ACQUIRING = 8  # packets kept while an SA is negotiated (racoon/kernel keep one)
ACQUIRE_RETRY_S = 1.0  # the kernel repeats an acquire no more often than this
HOUSEKEEPING_S = 1.0  # lifetime checks
MIN_WIRE = 28  # IPv4 header (RFC 791) and an ESP header (RFC 4303 §2), or UDP's and 20 more
FLOW_LIMIT = 4096  # tunnel-mode flows and inbound verdicts cached before the cache starts over


def _link_scoped(packet: bytes) -> bool:
    """Whether `packet` never leaves its link: what the kernel itself sends on a device with
    IPv6 on (router solicitations, MLD reports) and no tunnel-mode policy can mean.
    IPv6: from a link-local address (fe80::/10, RFC 4291 §2.5.6) or to a multicast group of
    interface- or link-local scope (ff01::/16, ff02::/16, §2.7). IPv4: from 169.254.0.0/16
    (RFC 3927) or to 224.0.0.0/24 (RFC 5771 §4)."""
    if packet[0] >> 4 == 6:
        return (packet[8] == 0xFE and packet[9] & 0xC0 == 0x80
                or packet[24] == 0xFF and packet[25] & 0x0F in (1, 2))
    return packet[12:14] == b"\xa9\xfe" or packet[16:19] == b"\xe0\x00\x00"


class Counters:
    __slots__ = (
        "tun_in", "esp_out", "esp_out_bytes", "esp_in", "esp_in_bytes", "gre_clear_out",
        "gre_clear_in", "no_sa_dropped", "queued", "acquires", "discarded", "seal_dropped",
        "open_dropped", "unknown_spi", "policy_dropped", "gre_clear_dropped", "malformed",
        "tun_out", "send_errors", "ctl_dropped", "recv_errors",
        "esp_out_other_icv",  # copies with the other ICV length, until the peer's first packet
        "selector_dropped", "no_policy_dropped",
        "link_scope_dropped",  # the device's own link-scope packets (_link_scoped): not logged
        "tun_coalesced",  # TCP segments that went into a TUN device in another's write (gro)
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# What each drop counter counts, for the first-occurrence log lines. send_errors, recv_errors
# and ctl_dropped are the shell's: the core counts what it hands out, the shell what failed.
DROP_REASONS = {
    "malformed": "a packet that is not IPv4/IPv6, too short, or bad GRE",
    "unknown_spi": "ESP with an SPI we have no SA for",
    "open_dropped": "ESP that failed its integrity check, the replay window or a lifetime",
    "policy_dropped": "decrypted ESP that no inbound policy or tunnel allows",
    "selector_dropped": "decrypted ESP from or to addresses, or of a protocol, its SA does not "
                        "cover",
    "gre_clear_dropped": "plain GRE that a require policy covers",
    "no_policy_dropped": "a packet on the tunnel-mode device that no esp/tunnel policy covers",
    "no_sa_dropped": "an outbound packet while negotiating an SA (queue full)",
    "seal_dropped": "an outbound packet its SA refused to seal (lifetime or sequence number)",
    "discarded": "an outbound packet a discard policy covers",
    "send_errors": "a packet the kernel refused to send or the TUN device to take",
    "recv_errors": "a failed read from a raw socket",
    "ctl_dropped": "a message to the IKE process lost on a full pipe",
}


class Tunnel:
    """One GRE tunnel: its spec, and its out-policy, out-SA and in-policy looked up once.

    `handle` is the shell's (its TUN descriptor); the core never reads it.
    """

    __slots__ = ("spec", "key", "addr", "wire", "out_action", "out_use", "out_sa", "out_udp",
                 "cache_gen", "queue", "acquired_at", "accept_esp", "accept_clear", "in_sa",
                 "handle", "esp_queue", "gre_queue", "gre_heads")

    def __init__(self, spec: TunnelSpec) -> None:
        self.set_spec(spec)
        self.out_action: str | None = None
        self.out_use = False  # level `use`: without an SA the packet goes in clear
        self.out_sa: EspSA | None = None
        self.out_udp: bytes | None = None  # UDP ports when the out SA is UDP-encapsulated
        self.cache_gen = -1
        self.queue: list[bytes] = []
        self.acquired_at = -ACQUIRE_RETRY_S
        self.accept_esp = True  # what the `in` policy lets through: GRE that came in ESP ...
        self.accept_clear = True  # ... and plain GRE
        self.handle = -1
        # the core's send lists of the tunnel's address family (ForwardingCore.set_tunnels)
        self.esp_queue: list[tuple[bytes, tuple[str, int]]] = []
        self.gre_queue: list[tuple[bytes, tuple[str, int]]] = []

    def set_spec(self, spec: TunnelSpec) -> None:
        """The spec and what is derived from it (the policies are the core's to refresh)."""
        self.spec = spec
        self.key = spec.key
        self.gre_heads = gre_headers(spec.key)  # its GRE header by inner IP version
        self.addr = (spec.remote, 0)  # where its packets go, as sendto() takes it
        # the outer source and destination, packed, as an inbound IPv4 header holds them (bytes
        # 12-20) and from_wire6 is given them
        self.wire = _packed(spec.remote) + _packed(spec.local)
        self.in_sa: EspSA | None = None  # the last inbound SA whose selectors cover the pair


class Device:
    """The tunnel-mode TUN device: its spec, and the shell's descriptor as `handle`."""

    __slots__ = ("spec", "handle")

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.handle = -1


class Pending:
    """Tunnel mode: the packets of one `out` policy waiting for its SA, and its last acquire."""

    __slots__ = ("policy", "queue", "acquired_at")

    def __init__(self, policy) -> None:
        self.policy = policy
        self.queue: list[bytes] = []
        self.acquired_at = -ACQUIRE_RETRY_S


class Flow:
    """Tunnel mode, outbound: what the packets of one inner address pair and protocol (and
    ports, where a policy names ports) get, decided once per SAD/SPD generation. The attribute
    names are Tunnel's where _sealed() reads both."""

    __slots__ = ("cache_gen", "action", "sa", "addr", "out_udp", "esp_queue", "pending")

    def __init__(self, gen: int, action: str | None) -> None:
        self.cache_gen = gen
        self.action = action  # "ipsec", "discard", or None: no esp/tunnel policy covers it
        self.sa: EspSA | None = None
        self.addr = ("", 0)
        self.out_udp: bytes | None = None
        self.esp_queue: list[tuple[bytes, tuple[str, int]]] = []
        self.pending: Pending | None = None


def _packed(address: str) -> bytes:
    try:
        return ipaddress.ip_address(address).packed
    except ValueError:
        return b""


def _text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _inner(packet: bytes) -> tuple[bytes, int, int] | None:
    """An inner IP packet's packed source+destination, protocol and where its upper-layer
    header starts; None when it is neither a whole IPv4 nor a whole IPv6 header."""
    n = len(packet)
    version = packet[0] >> 4 if n else 0
    if version == 4 and n >= 20:
        return packet[12:20], packet[9], (packet[0] & 15) << 2
    if version == 6 and n >= 40:
        # the first next header: extension headers are not walked (a port policy then sees
        # no ports, as racoon's kernel sees the same packet's first header)
        return packet[8:40], packet[6], 40
    return None


class ForwardingCore:
    """The forwarding decisions for a set of GRE tunnels; see the module docstring."""

    def __init__(self, tunnels: list[TunnelSpec] = (), *, natt_port: int = NATT_PORT) -> None:
        self.state = SadState()
        self.counters = Counters()
        self.natt_port = natt_port
        self.tunnels: list[Tunnel] = []
        self.by_pair: dict[tuple[str, str], Tunnel] = {}  # (local, remote): the first tunnel
        self.by_key: dict[tuple[str, str, int | None], Tunnel] = {}  # ... and its GRE key
        self._by_wire: dict[bytes, Tunnel] = {}  # Tunnel.wire: the first tunnel of the pair
        self.esp_out: list[tuple[bytes, tuple[str, int]]] = []
        self.udp_out: list[tuple[bytes, tuple[str, int]]] = []
        self.gre_out: list[tuple[bytes, tuple[str, int]]] = []
        self.esp6_out: list[tuple[bytes, tuple[str, int]]] = []
        self.gre6_out: list[tuple[bytes, tuple[str, int]]] = []
        self.tun_out: list[tuple[Tunnel | Device, bytes]] = []
        self._events: deque[Acquire | Expire] = deque()
        self._timer = 0.0
        self._inbound = self.state.sad.inbound
        # tunnel mode
        self.device: Device | None = None
        self._flows: dict[bytes, Flow] = {}
        self._pending: dict[int, Pending] = {}  # by the out policy's spid
        self._verdicts: dict[tuple, str | None] = {}  # (SA, inner) -> drop counter or None
        self._verdict_gen = -1
        self._ports_matter = False  # a policy or SA names ports: flows are told apart by them
        self.set_tunnels(list(tunnels))

    # --- control -----------------------------------------------------------------------------

    def set_tunnels(self, specs: list[TunnelSpec]) -> None:
        """The tunnels of `specs`; one whose name stays is kept and changed in place, and loses
        what it queued only when its outer pair or GRE key changed."""
        old = {t.spec.name: t for t in self.tunnels}
        tunnels = []
        for spec in specs:
            t = old.get(spec.name)
            if t is None:
                t = Tunnel(spec)
            elif t.spec != spec:
                if (t.spec.local, t.spec.remote, t.spec.key) != (spec.local, spec.remote,
                                                                 spec.key):
                    t.queue.clear()  # packets queued for the old outer pair
                t.set_spec(spec)
            tunnels.append(t)
        self.tunnels = tunnels
        self.by_pair.clear()
        self.by_key.clear()
        self._by_wire.clear()
        for t in tunnels:
            v6 = len(t.wire) == 32
            t.esp_queue = self.esp6_out if v6 else self.esp_out
            t.gre_queue = self.gre6_out if v6 else self.gre_out
            self.by_pair.setdefault((t.spec.local, t.spec.remote), t)
            self._by_wire.setdefault(t.wire, t)
            self.by_key[(t.spec.local, t.spec.remote, t.spec.key)] = t
        self._refresh_policies()

    def set_device(self, spec: DeviceSpec | None) -> Device | None:
        """The tunnel-mode device (None: no tunnel mode); the same name keeps its Device."""
        if spec is None:
            self.device = None
        elif self.device is None or self.device.spec.name != spec.name:
            self.device = Device(spec)
        else:
            self.device.spec = spec
        return self.device

    def apply_setkey(self, spd: SPD, manual: list[EspSA]) -> None:
        """A new SPD and hand-keyed SAs (what pyike.sadb.setkey_state made of the files)."""
        self.state.replace_setkey(spd, manual)
        self._refresh_policies()

    def install(self, specs: tuple[SaSpec, ...], now: float) -> None:
        """The SAs of one negotiation, then what waited for them. An inbound SA installed
        early (install_inbound) is kept as it is."""
        self.state.install(specs, now)
        self._took(specs)
        for t in self.tunnels:
            if t.queue and t.out_action == "ipsec":
                sa = self._out_sa(t)
                if sa is not None:
                    queued, t.queue = t.queue, []
                    for g in queued:
                        self._sealed(t, sa, sa.seal(g, IPPROTO_GRE, now), len(g))
        for pending in self._pending.values():  # tunnel mode: whatever may now have its SA
            if pending.queue:
                queued, pending.queue = pending.queue, []
                for packet in queued:
                    self._route(packet, now)

    def install_inbound(self, spec: SaSpec, now: float) -> None:
        """A responder's inbound SA before its pair (quick mode's message 2 sent): the
        initiator's first packets under the pair open here instead of dropping as an unknown
        SPI. With generate_policy its `in` policy comes along, which a tunnel-mode packet
        is checked against; the `out` one waits for the pair, as the outbound SA does."""
        self.state.install_early(spec, now)
        self._took((spec,))

    def withdraw_inbound(self, spi: int) -> None:
        """The early inbound SA whose pair did not come (nothing if the pair took it)."""
        generated = len(self.state.generated)
        if self.state.withdraw(spi) and len(self.state.generated) != generated:
            self._refresh_policies()

    def _took(self, specs: tuple[SaSpec, ...]) -> None:
        """After SAs came: port selectors to honour from now on, generated policies."""
        self._ports_matter = self._ports_matter or any(
            port for spec in specs for _net, _proto, port in spec.selectors)
        if any(spec.generate_policy for spec in specs):
            self._refresh_policies()

    def remove(self, spi: int, direction: str | None = None) -> None:
        generated = len(self.state.generated)
        self.state.remove(spi, direction)
        if len(self.state.generated) != generated:
            self._refresh_policies()

    def state_changed(self) -> None:
        """The SPD or SAD was changed from outside (a live setkey run): policies again."""
        self._refresh_policies()

    def flush(self) -> None:
        self.state.flush()
        self._refresh_policies()

    def status(self) -> dict:
        """The counters and the tunnels, as `pyikectl status` shows them."""
        status = {"counters": self.counters.as_dict(), "tunnels": [
            {"name": t.spec.name, "local": t.spec.local, "remote": t.spec.remote,
             "address": t.spec.address, "peer": t.spec.peer, "mtu": t.spec.mtu,
             "out_action": t.out_action, "queued": len(t.queue)} for t in self.tunnels]}
        if self.device is not None:
            status["device"] = {
                "name": self.device.spec.name, "mtu": self.device.spec.mtu,
                "routes": [str(net) for net, _, _ in self.state.tunnel_routes()],
                "flows": len(self._flows),
                "queued": sum(len(p.queue) for p in self._pending.values())}
        return status

    def _refresh_policies(self) -> None:
        for t in self.tunnels:
            s = t.spec
            out = self.state.lookup_policy("out", s.local, s.remote, IPPROTO_GRE, s.key)
            t.out_action = out.action if out is not None else None
            t.out_use = out is not None and out.action == "ipsec" and all(
                r.level == "use" for r in out.rules)
            inp = self.state.lookup_policy("in", s.remote, s.local, IPPROTO_GRE, s.key)
            in_action = inp.action if inp is not None else None
            # as the kernel checks a policy's templates against the SAs a packet came through:
            # every rule not at level `use` must be what our SAs are, ESP in transport mode
            # between the tunnel's two ends
            t.accept_esp = in_action in (None, "none") or in_action == "ipsec" and all(
                r.level == "use" or (r.protocol == "esp" and r.mode == "transport"
                                     and r.src in (None, ipaddress.ip_address(s.remote))
                                     and r.dst in (None, ipaddress.ip_address(s.local)))
                for r in inp.rules)
            # Linux's PF_KEY makes every level but `use` required (af_key.c: optional only
            # for IPSEC_LEVEL_USE), `default` included
            t.accept_clear = in_action != "discard" and not (in_action == "ipsec" and any(
                r.level != "use" for r in inp.rules))
            t.cache_gen = -1
        # tunnel mode: flows are made again; a policy that went takes its waiting packets along
        policies = self.state.spd.policies()
        spids = {p.spid for p in policies}
        self._pending = {spid: p for spid, p in self._pending.items() if spid in spids}
        self._ports_matter = any(p.sport or p.dport for p in policies) or any(
            sel.sport or sel.dport for sel in self.state.selectors.values())
        self._flows.clear()

    # --- timers and events -------------------------------------------------------------------

    def get_timer(self) -> float:
        """When handle_timer() is next due (the clock of `now`)."""
        return self._timer

    def handle_timer(self, now: float) -> None:
        """Lifetimes: an Expire event for each SA past its soft or hard limit (hard: removed)."""
        for spi, direction, kind in self.state.expire(now):
            self._events.append(Expire(spi, direction, kind))
        self._timer = now + HOUSEKEEPING_S

    def next_event(self) -> Acquire | Expire | None:
        return self._events.popleft() if self._events else None

    # --- outbound ----------------------------------------------------------------------------

    def from_tunnel(self, t: Tunnel, packet: bytes, now: float) -> None:
        """An IP packet read from tunnel `t`'s TUN device."""
        c = self.counters
        c.tun_in += 1
        head = t.gre_heads[packet[0] >> 4] if packet else None
        if head is None:  # neither IPv4 nor IPv6
            c.malformed += 1
            return
        g = head + packet  # gre.encap(packet, None, t.key)
        action = t.out_action
        if action == "ipsec":
            sa = t.out_sa if t.cache_gen == self.state.generation else self._out_sa(t)
            if sa is not None:
                out = sa.seal(g, IPPROTO_GRE, now)
                if type(out) is bytes and t.out_udp is None and sa.alternate is None:
                    t.esp_queue.append((out, t.addr))  # the common case, without a call
                    c.esp_out += 1
                    c.esp_out_bytes += len(g)
                else:
                    self._sealed(t, sa, out, len(g))
            elif t.out_use:  # setkey(8) `use`: negotiate, meanwhile send as is
                self._request_sa(t, now)
                t.gre_queue.append((g, t.addr))
                c.gre_clear_out += 1
            else:
                if len(t.queue) < QUEUE_WHILE_ACQUIRING:
                    t.queue.append(g)
                    c.queued += 1
                else:
                    c.no_sa_dropped += 1
                self._request_sa(t, now)
        elif action == "discard":
            c.discarded += 1
        else:  # `none`, or no policy at all: GRE in clear, as the kernel would
            t.gre_queue.append((g, t.addr))
            c.gre_clear_out += 1

    def _out_sa(self, t: Tunnel) -> EspSA | None:
        if t.cache_gen != self.state.generation:
            t.out_sa = self.state.outbound(t.spec.local, t.spec.remote)
            t.out_udp = self.state.udp_ports_of(t.out_sa)
            t.cache_gen = self.state.generation
        return t.out_sa

    def _sealed(self, t: Tunnel | Flow, sa: EspSA, out: bytes | EspDrop, n: int) -> None:
        """What sa.seal() made of `n` bytes (GRE, or a whole packet in tunnel mode): queued as
        ESP or ESP in UDP, followed by its copy with the other ICV length; or counted when the
        SA refused."""
        c = self.counters
        if type(out) is not bytes:
            c.seal_dropped += 1
            t.cache_gen = -1  # the SA may have died (hard lifetime, sequence exhausted)
            return
        other = sa.alternate  # the same packet with the other ICV length (esp.sa), or None
        ports = t.out_udp
        if ports is None:
            queue = t.esp_queue
        else:
            queue = self.udp_out
            out = udp_encapsulate(ports, out)
            if other is not None:
                other = udp_encapsulate(ports, other)
        queue.append((out, t.addr))
        c.esp_out += 1
        c.esp_out_bytes += n
        if other is not None:  # after the primary: see esp.sa
            queue.append((other, t.addr))
            c.esp_out_other_icv += 1

    def _request_sa(self, t: Tunnel, now: float) -> None:
        """racoon's acquire, at most once a second per tunnel."""
        if now - t.acquired_at >= ACQUIRE_RETRY_S:
            t.acquired_at = now
            self.counters.acquires += 1
            self._events.append(Acquire(t.spec.local, t.spec.remote))

    def from_device(self, packet: bytes, now: float) -> None:
        """An IP packet read from the tunnel-mode device."""
        self.counters.tun_in += 1
        self._route(packet, now)

    def _route(self, packet: bytes, now: float) -> None:
        """Tunnel mode, outbound: the packet's flow, then sealed whole under its SA."""
        c = self.counters
        version = packet[0] >> 4 if packet else 0
        if version == 4 and len(packet) >= 20:
            key = packet[9:10] + packet[12:20]
        elif version == 6 and len(packet) >= 40:
            key = packet[6:7] + packet[8:40]
        else:
            c.malformed += 1
            return
        if self._ports_matter:
            inner = _inner(packet)
            if inner is not None and inner[1] in PORT_PROTOCOLS:
                key += packet[inner[2]:inner[2] + 4]
        flow = self._flows.get(key)
        if flow is None or flow.cache_gen != self.state.generation:
            flow = self._flow(key, packet)
        sa = flow.sa
        if sa is not None:
            out = sa.seal(packet, INNER_NEXT_HEADER[version], now)
            if type(out) is bytes and flow.out_udp is None and sa.alternate is None:
                flow.esp_queue.append((out, flow.addr))
                c.esp_out += 1
                c.esp_out_bytes += len(packet)
            else:
                self._sealed(flow, sa, out, len(packet))
        elif flow.action == "ipsec":
            pending = flow.pending
            assert pending is not None
            if len(pending.queue) < QUEUE_WHILE_ACQUIRING:
                pending.queue.append(packet)
                c.queued += 1
            else:
                c.no_sa_dropped += 1
            if now - pending.acquired_at >= ACQUIRE_RETRY_S:
                pending.acquired_at = now
                c.acquires += 1
                p = pending.policy
                rule = p.rules[0]
                self._events.append(Acquire(
                    str(rule.src), str(rule.dst), "tunnel", str(p.src), str(p.dst),
                    0 if p.proto == PROTO_ANY else p.proto, p.sport, p.dport))
        elif flow.action == "discard":
            c.discarded += 1
        elif _link_scoped(packet):
            c.link_scope_dropped += 1
        else:
            c.no_policy_dropped += 1

    def _flow(self, key: bytes, packet: bytes) -> Flow:
        """What the packets like `packet` get: see Flow. Kept under `key`."""
        inner = _inner(packet)
        assert inner is not None
        addresses, proto, at = inner
        half = len(addresses) // 2
        src, dst = addresses[:half], addresses[half:]
        upper = packet[at:at + 4] if proto in PORT_PROTOCOLS else b""
        sport = dport = 0
        if self._ports_matter and len(upper) == 4:
            sport, dport = int.from_bytes(upper[:2], "big"), int.from_bytes(upper[2:], "big")
        policy = self.state.spd.lookup("out", src, dst, proto, sport, dport)
        gen = self.state.generation
        if policy is None:
            flow = Flow(gen, None)
        elif policy.action == "discard":
            flow = Flow(gen, "discard")
        elif policy.action != "ipsec" or policy.rules[0].mode != "tunnel":
            flow = Flow(gen, None)  # `none` or a transport rule: not the device's to carry
        else:
            rule = policy.rules[0]
            flow = Flow(gen, "ipsec")
            local, remote = str(rule.src), str(rule.dst)
            flow.addr = (remote, 0)
            flow.esp_queue = self.esp6_out if rule.dst.version == 6 else self.esp_out
            flow.sa = self.state.tunnel_outbound(local, remote, src, dst, proto, upper)
            flow.out_udp = self.state.udp_ports_of(flow.sa)
            flow.pending = self._pending.get(policy.spid)
            if flow.pending is None:
                flow.pending = self._pending[policy.spid] = Pending(policy)
        if len(self._flows) >= FLOW_LIMIT:
            self._flows.clear()
        self._flows[key] = flow
        return flow

    # --- inbound -----------------------------------------------------------------------------

    def from_wire(self, packet: bytes, now: float) -> None:
        """An IPv4 packet, header included, from a raw ESP, UDP or GRE socket."""
        c = self.counters
        if len(packet) < MIN_WIRE or packet[0] >> 4 != 4:
            if len(packet) < 10 or packet[9] != IPPROTO_UDP:  # a raw UDP socket sees it all
                c.malformed += 1
            return
        at = (packet[0] & 15) << 2
        proto = packet[9]
        if proto == IPPROTO_UDP:
            if (int.from_bytes(packet[at + 2:at + 4], "big") != self.natt_port
                    or not is_esp(packet, at + 8)):
                return  # IKE, a keepalive, or another port: the IKE process has its copy
            at += 8
        elif proto != IPPROTO_ESP:
            if proto == IPPROTO_GRE:
                t = self._by_wire.get(packet[12:20])
                if t is not None:  # else not one of our tunnels: none of our business
                    self._deliver(t, packet[at:], True)
            return
        self._esp_in(packet[12:20], packet, at, now)

    def from_wire6(self, src: bytes, dst: bytes, proto: int, payload: bytes, now: float
                   ) -> None:
        """What a raw IPv6 ESP or GRE socket received: the packed outer addresses (the kernel
        keeps the IPv6 header: RFC 3542 §3), the protocol and the payload after the header."""
        if proto == IPPROTO_GRE:
            t = self._by_wire.get(src + dst)
            if t is not None:
                self._deliver(t, payload, True)
        elif len(payload) < MIN_WIRE - 20:
            self.counters.malformed += 1
        else:
            self._esp_in(src + dst, payload, 0, now)

    def _esp_in(self, outer: bytes, packet: bytes, at: int, now: float) -> None:
        """An ESP packet at `at` of `packet`; `outer` its packed outer source+destination."""
        c = self.counters
        sa = self._inbound(int.from_bytes(packet[at:at + 4], "big"))
        if sa is None:
            c.unknown_spi += 1
            return
        res = sa.open(packet[at:], now)
        if type(res) is not tuple:
            c.open_dropped += 1
            return
        nh, payload = res
        t = self._by_wire.get(outer)
        if t is None or sa is not t.in_sa or nh != IPPROTO_GRE:
            if sa.mode == "tunnel":  # the SA's mode, not the next header, decides
                self._tunnel_in(sa, outer, nh, payload)
                return
            t = self._check_in(sa, t, nh, outer, payload)
            if t is None:
                return
        c.esp_in += 1
        c.esp_in_bytes += len(payload)
        if (t.key is None and t.accept_esp and len(payload) >= 4
                and not (payload[0] or payload[1])):
            # GRE without flags (RFC 2784 §2: all of the first 16 bits zero) carries no key
            # and is the 4-byte header: what _deliver would make of it, without its calls
            self.tun_out.append((t, payload[4:]))
            c.tun_out += 1
            return
        self._deliver(t, payload, False)

    def _check_in(self, sa: EspSA, t: Tunnel | None, nh: int, outer: bytes, payload: bytes
                  ) -> Tunnel | None:
        """What opened under `sa` may pass when the packet's outer addresses are the SA's and
        they and its upper protocol fall within the SA's selectors (RFC 4301 §5.2 step 4; Linux
        counts XfrmInStateMismatch), and when it is GRE of one of our tunnels. Run once per SA
        and tunnel: the tunnel then remembers the SA."""
        half = len(outer) // 2
        src, dst = _text(outer[:half]), _text(outer[half:])
        selector = self.state.selectors.get(sa)
        if sa.src != src or sa.dst != dst or (
                selector is not None and not selector.covers(src, dst, nh, payload)):
            self.counters.selector_dropped += 1
            return None
        if nh != IPPROTO_GRE or t is None:
            self.counters.policy_dropped += 1
            return None
        t.in_sa = sa
        return t

    def _deliver(self, t: Tunnel, gre_packet: bytes, clear: bool) -> None:
        """Decapsulate, pick the tunnel by GRE key, apply its `in` policy, queue for its TUN."""
        c = self.counters
        pkt = gre_decap(gre_packet)
        if type(pkt) is not GrePacket:
            c.malformed += 1
            return
        if pkt.key != t.key:
            t = self.by_key.get((t.spec.local, t.spec.remote, pkt.key))
            if t is None:
                c.malformed += 1
                return
        if clear:
            if not t.accept_clear:
                c.gre_clear_dropped += 1
                return
            c.gre_clear_in += 1
        elif not t.accept_esp:
            c.policy_dropped += 1
            return
        self.tun_out.append((t, pkt.payload))
        c.tun_out += 1

    def _tunnel_in(self, sa: EspSA, outer: bytes, nh: int, inner: bytes) -> None:
        """Tunnel mode, inbound: the opened packet goes to the device when allowed (see
        _tunnel_verdict), decided once per SA, outer and inner addresses and protocol."""
        c = self.counters
        if nh not in (IPPROTO_IPIP, IPPROTO_IPV6):
            c.selector_dropped += 1  # a tunnel-mode SA carries whole IP packets only
            return
        parsed = _inner(inner)
        if parsed is None or INNER_NEXT_HEADER[inner[0] >> 4] != nh:
            c.malformed += 1
            return
        addresses, proto, at = parsed
        if self.state.generation != self._verdict_gen or len(self._verdicts) >= FLOW_LIMIT:
            self._verdicts.clear()
            self._verdict_gen = self.state.generation
        key = (sa, outer, addresses, proto,
               inner[at:at + 4] if self._ports_matter and proto in PORT_PROTOCOLS else b"")
        verdict = self._verdicts.get(key, "")
        if verdict == "":
            verdict = self._verdicts[key] = self._tunnel_verdict(
                sa, outer, addresses, proto, inner[at:at + 4])
        if verdict is not None:
            setattr(c, verdict, getattr(c, verdict) + 1)
            return
        c.esp_in += 1
        c.esp_in_bytes += len(inner)
        self.tun_out.append((self.device, inner))
        c.tun_out += 1

    def _tunnel_verdict(self, sa: EspSA, outer: bytes, addresses: bytes, proto: int,
                        upper: bytes) -> str | None:
        """None when an inner packet may pass, else the counter its drop goes to.

        As a kernel checks a tunnel-mode SA (RFC 4301 §5.2 steps 3-4): the outer addresses are
        the SA's, the inner packet is within the SA's selectors, and the `in` policy that
        covers it wants exactly this: esp/tunnel between these ends (or level use). No policy
        at all lets what the SA's selectors cover through, as Linux does."""
        if self.device is None:
            return "policy_dropped"
        half = len(outer) // 2
        if (_text(outer[:half]), _text(outer[half:])) != (sa.src, sa.dst):
            return "selector_dropped"
        half = len(addresses) // 2
        src, dst = addresses[:half], addresses[half:]
        selector = self.state.selectors.get(sa)
        if selector is not None and not selector.covers(src, dst, proto, upper):
            return "selector_dropped"
        sport = dport = 0
        if self._ports_matter and proto in PORT_PROTOCOLS and len(upper) == 4:
            sport, dport = int.from_bytes(upper[:2], "big"), int.from_bytes(upper[2:], "big")
        policy = self.state.spd.lookup("in", src, dst, proto, sport, dport)
        if policy is None:
            return None
        if policy.action != "ipsec" or not all(
                r.level == "use" or (r.protocol == "esp" and r.mode == "tunnel"
                                     and str(r.src) == sa.src and str(r.dst) == sa.dst)
                for r in policy.rules):
            return "policy_dropped"
        return None
