"""What the forwarding core reports to the IKE side (ForwardingCore.next_event)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Acquire:
    """An outbound policy needs an SA for local -> remote (racoon's acquire); repeated at most
    once a second per tunnel or policy while packets keep coming.

    Transport mode (a GRE tunnel) needs nothing more: the SA carries GRE between the two ends.
    Tunnel mode carries the policy's selectors, which quick mode proposes as the client IDs
    (racoon takes them from the kernel's acquire the same way)."""

    local: str
    remote: str
    mode: str = "transport"  # "transport" | "tunnel"
    local_net: str | None = None  # tunnel mode: the policy's source network ...
    remote_net: str | None = None  # ... and destination network
    protocol: int = 0  # upper-layer protocol, 0 any (RFC 2407 §4.6.2)
    local_port: int = 0
    remote_port: int = 0


@dataclass(frozen=True)
class Expire:
    """An SA reached its soft (rekey) or hard (removed) lifetime."""

    spi: int
    direction: str  # "in" | "out"
    kind: str  # "soft" | "hard"
