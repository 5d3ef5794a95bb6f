"""What the forwarding core reports to the IKE side (ForwardingCore.next_event)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Acquire:
    """An outbound policy needs an SA for local -> remote (racoon's acquire); repeated at most
    once a second per tunnel while packets keep coming."""

    local: str
    remote: str


@dataclass(frozen=True)
class Expire:
    """An SA reached its soft (rekey) or hard (removed) lifetime."""

    spi: int
    direction: str  # "in" | "out"
    kind: str  # "soft" | "hard"
