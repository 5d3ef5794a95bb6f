"""A minimal I/O shell for ikev1.engine.Engine, for tests against real peers.

Run inside a network namespace as a subprocess:

    python -m tests.ikev1.udp_driver SPEC.json

SPEC is a JSON object (see `Spec`). The driver binds UDP 500 and 4500 on the local address, feeds
every datagram to the engine, sends what the engine wants sent, honours its timer and prints
each event as one JSON line on stdout. It stops when every event named in `until` was seen, on
NegotiationFailed (unless `keep_going`), or after `timeout` seconds; then it lingers `linger`
seconds so retransmissions and final messages still flow. The last line is
{"counters": ...}.

Safety: it only ever sends to addresses inside 198.18.0.0/15 (the test network).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ikev1.engine import Engine
from ikev1.policy import (
    DpdSettings,
    EngineConfig,
    Identity,
    Phase1Proposal,
    Phase2Policy,
    RemotePolicy,
    TrafficSelector,
)

TEST_NET = ipaddress.ip_network("198.18.0.0/15")


@dataclass
class Spec:
    local: str
    peer: str
    psk: str
    psk_ids: list[str] = field(default_factory=list)  # identifiers that also map to the PSK
    role: str = "initiator"  # "initiator" | "responder"
    encryption: str = "aes"
    key_length: int | None = 128
    hash: str = "sha1"
    dh_group: int = 14
    exchange_mode: list[str] = field(default_factory=lambda: ["main"])
    my_identifier: list[str] | None = None  # [kind, value]
    quick: bool = True  # initiator: acquire for the GRE selectors (False: phase 1 is the goal)
    esp_encryption: list[list[Any]] = field(default_factory=lambda: [["aes", 128]])
    esp_authentication: list[str] = field(default_factory=lambda: ["hmac_sha1"])
    pfs_group: int | None = None
    dpd_delay: int = 0  # RFC 3706 as racoon's dpd_delay; 0 disables DPD
    dpd_retry: int = 5
    dpd_maxfail: int = 5
    flush_after: float | None = None  # seconds after `until` is met: engine.flush() (deletes)
    until: list[str] = field(default_factory=lambda: ["Phase1Up"])
    keep_going: bool = False
    timeout: float = 30.0
    linger: float = 1.0
    port: int = 500
    natt: str = "off"  # racoon's nat_traversal: "on" | "off" | "force"
    peer_selector: str | None = None  # the peer's GRE selector address (default: `peer`)
    natt_port: int = 4500


def gre_selector(address: str) -> TrafficSelector:
    """The GRE transport policy's selector: address/32, protocol 47, any port."""
    return TrafficSelector(ipaddress.ip_network(f"{address}/32"), 47, 0)


def build_config(spec: Spec) -> EngineConfig:
    proposal = Phase1Proposal(
        encryption=spec.encryption,
        hash=spec.hash,
        dh_group=spec.dh_group,
        key_length=spec.key_length,
    )
    my_id = Identity(*spec.my_identifier) if spec.my_identifier else None
    remote = RemotePolicy(
        remote=spec.peer,
        proposals=(proposal,),
        exchange_mode=tuple(spec.exchange_mode),
        my_identifier=my_id,
        dpd=DpdSettings(delay=spec.dpd_delay, retry=spec.dpd_retry, maxfail=spec.dpd_maxfail),
        nat_traversal=spec.natt,
    )
    sainfo = Phase2Policy(
        local_id=gre_selector(spec.local),
        remote_id=gre_selector(spec.peer_selector or spec.peer),
        encryption=tuple((name, bits) for name, bits in spec.esp_encryption),
        authentication=tuple(spec.esp_authentication),
        pfs_group=spec.pfs_group,
    )
    return EngineConfig(
        local_addresses=(spec.local,),
        remotes=(remote,),
        sainfos=(sainfo,),
        psk={key: spec.psk.encode() for key in (spec.peer, *spec.psk_ids)},
        isakmp_port=spec.port,
        natt_port=spec.natt_port,
    )


def event_json(event: object) -> str:
    """An event as one JSON line: bytes as hex, nested dataclasses as objects."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.hex()
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    fields = plain(dataclasses.asdict(event))  # type: ignore[call-overload]
    return json.dumps({"event": type(event).__name__, **fields})


def _send_all(engine: Engine, socks: dict[int, socket.socket], stats: dict[str, int]) -> None:
    """Send each datagram from the socket of its local port (500, or 4500 after a float)."""
    for data, local, peer in engine.datagrams_to_send():
        if ipaddress.ip_address(peer[0]) not in TEST_NET or local[1] not in socks:
            stats["refused_destination"] += 1
            continue
        socks[local[1]].sendto(data, peer)
        stats["sent"] += 1


def run(spec: Spec, out=sys.stdout) -> int:
    engine = Engine(build_config(spec))
    stats = {"sent": 0, "received": 0, "refused_destination": 0}
    socks: dict[int, socket.socket] = {}
    for port in (spec.port, spec.natt_port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.local, port))
        socks[port] = sock
    print(json.dumps({"ready": True}), file=out, flush=True)

    start = time.monotonic()
    deadline = start + spec.timeout
    if spec.role == "initiator":
        if spec.quick:
            engine.initiate(spec.peer, start, gre_selector(spec.local),
                            gre_selector(spec.peer_selector or spec.peer))
        else:
            engine.initiate(spec.peer, start)
    seen: set[str] = set()
    failed = False
    flush_at: float | None = None
    while True:
        now = time.monotonic()
        if flush_at is not None and now >= flush_at:
            print(json.dumps({"action": "flush"}), file=out, flush=True)
            engine.flush(now)
            flush_at = None
        _send_all(engine, socks, stats)
        while (event := engine.next_event()) is not None:
            name = type(event).__name__
            seen.add(name)
            # Without `quick` only phase 1 matters: the acquire's own quick mode may fail.
            fatal = name == "NegotiationFailed" and (spec.quick or event.phase == 1)
            failed |= fatal and not spec.keep_going
            print(event_json(event), file=out, flush=True)
        done = failed or set(spec.until) <= seen
        if done and spec.flush_after is not None and not failed:
            flush_at, spec.flush_after = now + spec.flush_after, None
            deadline = max(deadline, flush_at + spec.linger)
        elif done and flush_at is None and deadline > now + spec.linger:
            deadline = now + spec.linger  # linger so the last flights still go out
        if now >= deadline:
            break
        timer = engine.get_timer()
        wake = deadline if flush_at is None else min(deadline, flush_at)
        wait = wake - now if timer is None else min(wake, timer) - now
        readable, _, _ = select.select(list(socks.values()), [], [], max(wait, 0.0))
        now = time.monotonic()
        for sock in readable:
            data, peer = sock.recvfrom(65535)
            stats["received"] += 1
            engine.receive_datagram(data, sock.getsockname(), peer, now)
        timer = engine.get_timer()
        if timer is not None and timer <= now:
            engine.handle_timer(now)
    for sock in socks.values():
        sock.close()
    print(json.dumps({"counters": {**engine.counters, **stats}}), file=out, flush=True)
    return 0 if set(spec.until) <= seen else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        spec = Spec(**json.load(f))
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
