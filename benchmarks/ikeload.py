"""An IKEv1 load generator built from pyike's engine: many concurrent initiators, one process.

Each initiator slot owns one source address (its own UDP socket on port 500) and one
ikev1.engine.Engine. A slot negotiates main mode (and, in `quick` mode, quick mode with PFS)
against the responder; when done it deletes what it built, so the responder's tables stay
small, and starts again with a fresh engine (new cookies). The run is bounded by a duration and
a handshake count; a negotiation that takes longer than NEGOTIATION_TIMEOUT_S counts as failed.

Prints one JSON object: completed, failed, elapsed seconds, latencies.

    python -m benchmarks.ikeload --responder 198.18.0.2 --addresses 198.18.0.10 \
        --concurrency 10 --duration 5 --mode main --psk KEY
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import selectors
import socket
import statistics
import time

NEGOTIATION_TIMEOUT_S = 10.0
# MODP-2048 (RFC 3526 group 14) for phase 1 and PFS by default: today's common minimum;
# `--group 2` gives the racoon article's MODP-1024.
DH_GROUP = 14
ISAKMP_PORT = 500  # RFC 2408 §2.5.2 (IANA)
IPPROTO_GRE = 47


def engine_config(local: str, responder: str, psk: bytes, pfs: bool, group: int = DH_GROUP):
    """One initiator: AES-128, SHA-1, pre-shared key, `group`; GRE transport SAs."""
    from ikev1.policy import EngineConfig, Phase1Proposal, Phase2Policy, RemotePolicy

    remote = RemotePolicy(
        remote=responder,
        proposals=(Phase1Proposal("aes", "sha1", group, key_length=128),),
        initial_contact=False,  # the slots share one identity space; no purge on the responder
    )
    sainfo = Phase2Policy(
        encryption=(("aes", 128),),
        authentication=("hmac_sha1",),
        pfs_group=group if pfs else None,
    )
    return EngineConfig(
        local_addresses=(local,), remotes=(remote,), sainfos=(sainfo,), psk={responder: psk}
    )


class Slot:
    """One initiator: a source address, its socket, and the engine of the current attempt."""

    def __init__(self, address: str, responder: str, psk: bytes, mode: str, group: int) -> None:
        from ikev1 import events

        self.events = events
        self.address = address
        self.responder = responder
        self.peer = (responder, ISAKMP_PORT)
        self.local = (address, ISAKMP_PORT)
        self.config = engine_config(address, responder, psk, pfs=mode == "quick", group=group)
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(self.local)
        self.sock.setblocking(False)
        self.engine = None
        self.started = 0.0
        self.completed = 0
        self.failed = 0
        self.latencies: list[float] = []

    def begin(self, now: float) -> None:
        from ikev1.engine import Engine

        self.engine = Engine(self.config)
        self.started = now
        src = ipaddress.ip_network(f"{self.address}/32")
        dst = ipaddress.ip_network(f"{self.responder}/32")
        from ikev1.policy import TrafficSelector

        self.engine.initiate(self.responder, now, TrafficSelector(src, IPPROTO_GRE),
                             TrafficSelector(dst, IPPROTO_GRE))
        self.flush()

    def flush(self) -> None:
        for data, _local, peer in self.engine.datagrams_to_send():
            try:
                self.sock.sendto(data, peer)
            except OSError:
                pass  # lost like on a wire; the engine retransmits

    def receive(self, now: float) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            self.engine.receive_datagram(data, self.local, peer, now)
        self.after_input(now)

    def tick(self, now: float) -> None:
        when = self.engine.get_timer()
        if when is not None and when <= now:
            self.engine.handle_timer(now)
        if now - self.started > NEGOTIATION_TIMEOUT_S:
            self.failed += 1
            self.begin(now)
            return
        self.after_input(now)

    def after_input(self, now: float) -> None:
        ev = self.events
        done = False
        while (event := self.engine.next_event()) is not None:
            if isinstance(event, ev.NegotiationFailed):
                self.failed += 1
                self.flush()
                self.begin(now)
                return
            if (self.mode == "main" and isinstance(event, ev.Phase1Up)) or (
                self.mode == "quick" and isinstance(event, ev.Phase2Up)
            ):
                done = True
        if done and self.mode == "main":
            # The engine queues quick mode right after phase 1; only phase 1 is measured here.
            self.engine.datagrams_to_send()
        self.flush()
        if done:
            self.completed += 1
            self.latencies.append(now - self.started)
            self.engine.flush(now)  # deletes (RFC 2408 §4.8) so the responder frees its state
            self.flush()
            self.begin(now)

    def next_deadline(self) -> float:
        when = self.engine.get_timer()
        limit = self.started + NEGOTIATION_TIMEOUT_S
        return limit if when is None else min(when, limit)


def run_load(responder: str, addresses: list[str], mode: str, psk: bytes, duration: float,
             max_handshakes: int, group: int = DH_GROUP) -> dict:
    """Drive len(addresses) concurrent initiators until duration or max_handshakes is reached."""
    slots = [Slot(a, responder, psk, mode, group) for a in addresses]
    sel = selectors.DefaultSelector()
    for slot in slots:
        sel.register(slot.sock, selectors.EVENT_READ, slot)
    start = time.monotonic()
    end = start + duration
    for slot in slots:
        slot.begin(start)
    now = start
    while now < end and sum(s.completed for s in slots) < max_handshakes:
        wait = max(0.0, min(min(s.next_deadline() for s in slots), end) - now)
        for key, _ in sel.select(min(wait, 0.05)):
            key.data.receive(time.monotonic())
        now = time.monotonic()
        for slot in slots:
            if slot.next_deadline() <= now:
                slot.tick(now)
    elapsed = time.monotonic() - start
    latencies = [x for s in slots for x in s.latencies]
    for slot in slots:
        slot.sock.close()
    completed = sum(s.completed for s in slots)
    return {
        "mode": mode,
        "concurrency": len(slots),
        "completed": completed,
        "failed": sum(s.failed for s in slots),
        "elapsed_s": elapsed,
        "rate": completed / elapsed if elapsed > 0 else 0.0,
        "latency_median_s": statistics.median(latencies) if latencies else None,
    }


def address_range(first: str, count: int) -> list[str]:
    base = ipaddress.ip_address(first)
    return [str(base + i) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ikeload", description=__doc__)
    parser.add_argument("--responder", required=True)
    parser.add_argument("--addresses", required=True, help="first source address")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--max-handshakes", type=int, default=100_000)
    parser.add_argument("--mode", choices=("main", "quick"), default="main")
    parser.add_argument("--psk-file", required=True, help="file holding the pre-shared key")
    parser.add_argument("--group", type=int, default=DH_GROUP, help="DH group (phase 1, PFS)")
    args = parser.parse_args(argv)
    with open(args.psk_file, "rb") as f:
        psk = f.read().strip()
    result = run_load(args.responder, address_range(args.addresses, args.concurrency), args.mode,
                      psk, args.duration, args.max_handshakes, args.group)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
