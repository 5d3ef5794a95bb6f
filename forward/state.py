"""The forwarding core's databases: the SPD (spd/), the SAD (esp/), and per SA what the SAD
does not hold: the UDP ports of ESP in UDP, the selectors of an inbound SA, and the policies a
responder generated for an SA (racoon's generate_policy).

Negotiated SAs survive a setkey reload, and so do generated policies; manual SAs (`add` lines)
are replaced by the new file's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from esp import dump as esp_dump
from esp import udp
from esp.sa import EspSA, Lifetime
from esp.sad import SAD
from forward.specs import SaSpec
from spd import dump as spd_dump
from spd.db import SPD
from spd.policy import PRIORITY_DEFAULT, PROTO_ANY, IPAddress, IPNetwork, IpsecRule, Policy

SOFT_FRACTION = 0.8  # racoon/the kernel: the soft lifetime is 80% of the hard one
# Upper-layer protocols whose first four bytes are the source and destination ports (TCP
# RFC 9293 §3.1, UDP RFC 768, SCTP RFC 9260 §3.1): the ones a port selector can name.
PORT_PROTOCOLS = frozenset({6, 17, 132})


def _lifetime(seconds: int, nbytes: int) -> Lifetime | None:
    if not seconds and not nbytes:
        return None
    return Lifetime(int(seconds * SOFT_FRACTION) if seconds else 0, seconds or 0,
                    int(nbytes * SOFT_FRACTION) if nbytes else 0, nbytes or 0)


@dataclass(frozen=True)
class Selector:
    """What an inbound SA may carry (RFC 4301 §4.4.2.1): the outer source and destination, the
    upper-layer protocol (0: any, RFC 2407 §4.6.2; -1: none, the two IDs disagree) and its ports
    (0: any)."""

    src: IPNetwork
    dst: IPNetwork
    protocol: int = 0
    sport: int = 0
    dport: int = 0

    def covers(self, src: str | bytes, dst: str | bytes, protocol: int, payload: bytes) -> bool:
        """src/dst as text or packed (as they sit in an IP header); `payload` starts with the
        upper-layer header (for its ports)."""
        if self.protocol and self.protocol != protocol:
            return False
        if ipaddress.ip_address(src) not in self.src or ipaddress.ip_address(dst) not in self.dst:
            return False
        if (self.sport or self.dport) and protocol in PORT_PROTOCOLS:
            if len(payload) < 4:
                return False
            sport, dport = int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:4], "big")
            return self.sport in (0, sport) and self.dport in (0, dport)
        return True


def _protocol(local_proto: int, remote_proto: int) -> int:
    """One upper-layer protocol from the two IDs' (0: any; -1: they disagree, nothing fits)."""
    if local_proto and remote_proto and local_proto != remote_proto:
        return -1
    return local_proto or remote_proto


def outbound_selector(spec: SaSpec) -> Selector | None:
    """What an outbound tunnel-mode SA carries (inner source and destination): the SAD group
    that keeps apart the SAs of several subnet pairs between the same two ends. None in
    transport mode, where one SA per pair of ends carries the GRE."""
    if spec.mode != "tunnel" or not spec.selectors:
        return None
    (local_net, local_proto, local_port), (remote_net, remote_proto, remote_port) = spec.selectors
    return Selector(ipaddress.ip_network(local_net, strict=False),
                    ipaddress.ip_network(remote_net, strict=False),
                    _protocol(local_proto, remote_proto), local_port, remote_port)


def inbound_selector(spec: SaSpec) -> Selector | None:
    """The Selector of an inbound SaSpec, None when it has none (a hand-keyed SA, as a PF_KEY
    SA without selectors: the kernel checks nothing either). In tunnel mode it applies to the
    inner packet, in transport mode to the packet itself."""
    if not spec.selectors:
        return None
    (local_net, local_proto, local_port), (remote_net, remote_proto, remote_port) = spec.selectors
    src = ipaddress.ip_network(remote_net, strict=False)
    dst = ipaddress.ip_network(local_net, strict=False)
    if spec.encap is not None and spec.mode == "transport":
        # Transport mode behind a NAT: a host ID is the address before translation (RFC 3947
        # §5.2, NAT-OA); the packets carry the SA's own, the outside address of the NAT.
        if src.num_addresses == 1:
            src = ipaddress.ip_network(spec.keys.src)
        if dst.num_addresses == 1:
            dst = ipaddress.ip_network(spec.keys.dst)
    return Selector(src, dst, _protocol(local_proto, remote_proto), remote_port, local_port)


def generated_policy(spec: SaSpec) -> Policy:
    """The policy racoon's generate_policy makes for one direction of a negotiated SA: its
    selectors, action ipsec, one esp rule of the SA's mode between its ends, level require."""
    (local_net, local_proto, local_port), (remote_net, remote_proto, remote_port) = spec.selectors
    local = ipaddress.ip_network(local_net, strict=False)
    remote = ipaddress.ip_network(remote_net, strict=False)
    proto = _protocol(local_proto, remote_proto) or PROTO_ANY
    tunnel = spec.mode == "tunnel"
    rule = IpsecRule("esp", spec.mode, ipaddress.ip_address(spec.keys.src) if tunnel else None,
                     ipaddress.ip_address(spec.keys.dst) if tunnel else None, "require")
    if spec.direction == "out":
        return Policy(local, remote, local_port, remote_port, proto, "out", PRIORITY_DEFAULT,
                      "ipsec", (rule,))
    return Policy(remote, local, remote_port, local_port, proto, "in", PRIORITY_DEFAULT,
                  "ipsec", (rule,))


class SadState:
    """SPD + SAD, and a generation number that changes with the SAD."""

    def __init__(self) -> None:
        self.spd = SPD()
        self.sad = SAD()
        self.manual: list[EspSA] = []
        self.udp_ports: dict[EspSA, bytes] = {}  # outbound SA -> UDP source+destination port
        self.selectors: dict[EspSA, Selector] = {}  # inbound SA -> what it may carry
        # generate_policy: the policies made for negotiated SAs, by selector, and which SAs
        # hold each; a policy goes with the last of them
        self.generated: dict[tuple, Policy] = {}
        self.generated_for: dict[EspSA, tuple] = {}
        # a responder's inbound SAs live before their pair (ikev1 InboundReady), by SPI, with
        # the spec each came with: the pair's install takes the SA as it is
        self.early: dict[int, tuple[EspSA, SaSpec]] = {}
        self.generation = 0

    def replace_setkey(self, spd: SPD, manual: list[EspSA]) -> None:
        """Install what `pyike.sadb.setkey_state()` made: its SPD, and its hand-keyed SAs in
        place of the old ones; negotiated SAs stay."""
        self.spd = spd
        for key, policy in list(self.generated.items()):  # a configured policy of it wins
            if spd.get_by_selector(key) is None:
                self.generated[key] = spd.add(policy)
            else:
                del self.generated[key]
        for sa in self.manual:
            self.sad.remove(sa)
        self.manual.clear()
        self.generation += 1
        for sa in manual:
            self.add(sa)

    def add(self, sa: EspSA, *, manual: bool = True, group: Selector | None = None) -> None:
        self.sad.add(sa, group)
        if manual:
            self.manual.append(sa)
        self.generation += 1

    def install(self, specs: Iterable[SaSpec], now: float) -> list[EspSA]:
        """The SAs of one negotiation (an inbound and an outbound one), paired so that a
        two-length ICV (esp.sa) is settled by the peer's first packet. An inbound SA live
        since install_early() with the same spec stays the same object: what it opened, its
        replay window and its lifetime go on."""
        sas = []
        for spec in specs:
            held = self.early.pop(spec.keys.spi, None) if spec.direction == "in" else None
            if held is not None and held[1] == spec:
                sas.append(held[0])
                continue
            if held is not None:  # not the SA the pair names: it goes
                self.discard(held[0])
            sas.append(self._negotiated(spec, now))
        inbound = [sa for sa in sas if sa.direction == "in"]
        outbound = [sa for sa in sas if sa.direction == "out"]
        if len(inbound) == 1 and len(outbound) == 1:
            inbound[0].pair_with(outbound[0])
        return sas

    def install_early(self, spec: SaSpec, now: float) -> EspSA:
        """A responder's inbound SA before its pair (quick mode's message 2 sent): it opens
        what the initiator sends under the pair at once, until install() takes it or
        withdraw() removes it. One of the same SPI already held is replaced."""
        if spec.direction != "in":
            raise ValueError("only an inbound SA is installed before its pair")
        self.withdraw(spec.keys.spi)
        sa = self._negotiated(spec, now)
        self.early[spec.keys.spi] = (sa, spec)
        return sa

    def withdraw(self, spi: int) -> bool:
        """The inbound SA of install_early() whose pair did not come; False when there is none
        (the pair took it, or it expired or was flushed). A paired SA is never touched."""
        held = self.early.pop(spi, None)
        if held is None:
            return False
        self.discard(held[0])
        return True

    def _negotiated(self, spec: SaSpec, now: float) -> EspSA:
        """One direction of a negotiated SA, made and in the SAD, with what it needs beside."""
        k = spec.keys
        sa = EspSA(k.spi, k.src, k.dst, k.enc_alg, k.enc_key, k.auth_alg, k.auth_key,
                   direction=spec.direction,
                   lifetime=_lifetime(spec.lifetime_s, spec.lifetime_bytes), now=now,
                   mode=spec.mode)
        group = None
        if spec.direction == "out":
            if spec.encap is not None:
                self.udp_ports[sa] = udp.ports(*spec.encap)
            group = outbound_selector(spec)
        else:
            selector = inbound_selector(spec)
            if selector is not None:
                self.selectors[sa] = selector
        if spec.generate_policy and spec.selectors:
            self._generate(sa, generated_policy(spec))
        self.add(sa, manual=False, group=group)
        return sa

    def udp_ports_of(self, sa: EspSA | None) -> bytes | None:
        """The UDP ports of a UDP-encapsulated outbound SA (RFC 3948), None for plain ESP."""
        return None if sa is None else self.udp_ports.get(sa)

    def _generate(self, sa: EspSA, policy: Policy) -> None:
        """generate_policy: install `policy` for `sa` unless the SPD has one of its selector
        (a configured policy, or one made for an earlier SA of the same selectors)."""
        key = policy.selector()
        self.generated_for[sa] = key
        if key in self.generated or self.spd.get_by_selector(key) is not None:
            return
        self.generated[key] = self.spd.add(policy)

    def _forget(self, sa: EspSA) -> None:
        if self.early.get(sa.spi, (None,))[0] is sa:
            del self.early[sa.spi]
        self.udp_ports.pop(sa, None)
        self.selectors.pop(sa, None)
        key = self.generated_for.pop(sa, None)
        if key is not None and key not in self.generated_for.values():
            policy = self.generated.pop(key, None)
            if policy is not None and self.spd.get(policy.spid) == policy:
                self.spd.remove(policy.spid)

    def discard(self, sa: EspSA) -> None:
        """One SA, by identity (a live setkey `flush` or `delete`: pyike.sadb.run_setkey)."""
        self.sad.remove(sa)
        self._forget(sa)
        if sa in self.manual:
            self.manual.remove(sa)
        self.generation += 1

    def remove(self, spi: int, direction: str | None = None) -> None:
        for sa in self.sad.remove(spi, direction):
            self._forget(sa)
            if sa in self.manual:
                self.manual.remove(sa)
        self.generation += 1

    def flush(self) -> None:
        self.sad.flush()
        self.udp_ports.clear()
        self.selectors.clear()
        for policy in self.generated.values():
            if self.spd.get(policy.spid) == policy:
                self.spd.remove(policy.spid)
        self.generated.clear()
        self.generated_for.clear()
        self.early.clear()
        self.manual.clear()
        self.generation += 1

    def configured_policies(self, direction: str) -> list[Policy]:
        """The SPD's policies of `direction`, in lookup order, but those generate_policy made:
        what setkey files and commands put there."""
        return [p for p in self.spd.policies(direction) if p.selector() not in self.generated]

    def lookup_policy(self, direction: str, src: str, dst: str, proto: int, key: int | None):
        return self.spd.lookup(direction, src, dst, proto, 0, 0, key)

    def outbound(self, src: str, dst: str) -> EspSA | None:
        return self.sad.outbound(src, dst)

    def tunnel_outbound(self, src: str, dst: str, inner_src: bytes, inner_dst: bytes,
                        proto: int, upper: bytes) -> EspSA | None:
        """The tunnel-mode SA from `src` to `dst` whose selectors cover the inner packet (its
        addresses packed, `upper` its upper-layer header); the narrowest when several do."""
        best = None
        for selector, sa in self.sad.groups(src, dst):
            if selector.covers(inner_src, inner_dst, proto, upper):
                width = selector.src.num_addresses * selector.dst.num_addresses
                if best is None or width < best[0]:
                    best = (width, sa)
        return None if best is None else best[1]

    def tunnel_routes(self) -> list[tuple[IPNetwork, IPNetwork, IPAddress]]:
        """(remote network, local network, far tunnel end) of each outbound tunnel-mode
        policy: what the tunnel-mode device is routed for, whose addresses are ours to send
        from, and the address that must never be routed into it."""
        return [(p.dst, p.src, p.rules[0].dst) for p in self.spd.policies("out")
                if p.action == "ipsec" and p.rules and p.rules[0].mode == "tunnel"]

    def inbound(self, spi: int) -> EspSA | None:
        return self.sad.inbound(spi)

    def expire(self, now: float) -> list[tuple[int, str, str]]:
        """(spi, direction, "soft"|"hard") for SAs past a lifetime; hard ones are removed."""
        out = []
        for sa, kind in self.sad.expire(now):
            out.append((sa.spi, sa.direction, kind))
            if kind == "hard":
                self.sad.remove(sa)
                self._forget(sa)
                self.generation += 1
        return out

    def dump(self, what: str, wall: float, mono: float):
        if what == "sad":
            return esp_dump.format_sad(self.sad, wall, now=mono)
        if what == "sad_json":
            return esp_dump.sad_json(self.sad, wall, now=mono)
        if what == "spd":
            return spd_dump.format_spd(self.spd, wall)
        if what == "spd_json":
            return spd_dump.spd_json(self.spd)
        raise ValueError(f"unknown query {what!r}")
