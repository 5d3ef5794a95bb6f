"""What the IKE process tells the forwarding core: tunnels and the tunnel-mode device at start,
SAs as they come."""

from __future__ import annotations

from dataclasses import dataclass, field

from ikev1.events import EspKeys


@dataclass(frozen=True)
class TunnelSpec:
    """What the forwarding process needs of a `gre` block."""

    name: str
    local: str
    remote: str
    address: str
    peer: str
    mtu: int
    key: int | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """The TUN device of ESP tunnel mode (the `tunnel_device` statement): what the SPD's tunnel
    policies carry comes in and goes out there. The MTU is the statement's, or one derived from
    the outer MTU (pyike.live.device_spec)."""

    name: str
    mtu: int


@dataclass(frozen=True)
class SaSpec:
    """One direction of a negotiated SA, as the IKE process installs it."""

    keys: EspKeys = field(repr=False)  # keys never reach a log line by accident
    direction: str  # "in" | "out"
    lifetime_s: int = 0
    lifetime_bytes: int = 0
    peer: tuple[str, int] | None = None
    # (local, remote), each (network, protocol, port) as quick mode negotiated them
    # (ikev1.events.Phase2Up); () for none. The core drops what opens under an inbound SA and
    # falls outside them.
    selectors: tuple = field(default=())
    encap: tuple[int, int] | None = None  # (our port, peer's port): ESP in UDP, RFC 3948
    mode: str = "transport"  # "transport" (GRE) | "tunnel" (RFC 4303 §3.1.2)
    # racoon's generate_policy on a responder: the policy pair comes from the selectors and
    # leaves with the last SA negotiated for them
    generate_policy: bool = False
