"""Which message is legal in which state, and where it leads: the one table per exchange.

In the spirit of h11's `_state.py`: the exchange modules hold the handlers (what a message
means), this module holds the transitions (when a message may arrive at all). The engine looks a
state up here before it reads a message; a state with no entry takes no message of that
exchange, and a handler that succeeds moves its exchange to the entry's next state, never to a
state of its own choosing. Initiator and responder states are distinct members, so a peer's
half-open exchange towards us is never mistaken for ours towards it.

Roles and messages are RFC 2409 §5 (main and aggressive mode), §5.5 (quick mode) and RFC 2408
§3.1 (the commit bit's CONNECTED).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Phase1State(StrEnum):
    """An ISAKMP SA: named by the last message we sent (racoon's numbering in the shell)."""

    I_MM1 = "I_MM1"  # initiator, main mode 1 sent, waiting for 2
    I_MM3 = "I_MM3"
    I_MM5 = "I_MM5"
    R_MM2 = "R_MM2"  # responder, main mode 2 sent, waiting for 3: the peer is still unproven
    R_MM4 = "R_MM4"
    I_AM1 = "I_AM1"
    R_AM2 = "R_AM2"
    ESTABLISHED = "established"  # authenticated both ways; quick mode and informational


class QuickState(StrEnum):
    I_QM1 = "I_QM1"  # initiator, message 1 sent
    R_QM2 = "R_QM2"  # responder, message 2 sent
    I_QM4 = "I_QM4"  # initiator, message 3 sent with the commit bit: waiting for CONNECTED
    DONE = "done"  # installed; kept a while to answer a repeated last message


class Step(NamedTuple):
    handler: str  # the method of the engine that reads the message
    next: Phase1State | QuickState  # where a message the handler accepts leads
    alt: QuickState | None = None  # where it leads instead when the handler says wait


# phase 1, by (exchange, state): main mode (RFC 2409 §5, six messages) and aggressive mode
# (three). The responder's first message is not here: it creates the exchange (phase1
# _respond_phase1), and an exchange in progress never takes a first message. Every state here
# precedes the peer's HASH, so whatever arrives in it may be forged: a message that fails
# leaves the exchange as it was (phase1 _receive_phase1).
PHASE1_STEPS: dict[tuple[str, Phase1State], Step] = {
    ("main", Phase1State.I_MM1): Step("_i_mm2", Phase1State.I_MM3),
    ("main", Phase1State.R_MM2): Step("_r_mm3", Phase1State.R_MM4),
    ("main", Phase1State.I_MM3): Step("_i_mm4", Phase1State.I_MM5),
    ("main", Phase1State.R_MM4): Step("_r_mm5", Phase1State.ESTABLISHED),
    ("main", Phase1State.I_MM5): Step("_i_mm6", Phase1State.ESTABLISHED),
    ("aggressive", Phase1State.I_AM1): Step("_i_am2", Phase1State.ESTABLISHED),
    ("aggressive", Phase1State.R_AM2): Step("_r_am3", Phase1State.ESTABLISHED),
}

# quick mode, by state; a first message creates the responder's exchange (_r_qm1). A finished
# exchange takes nothing new: a repeat of the last message is answered from the flight.
QUICK_STEPS: dict[QuickState, Step] = {
    # with the commit bit set by the responder, message 3 waits for CONNECTED in I_QM4
    QuickState.I_QM1: Step("_i_qm2", QuickState.DONE, alt=QuickState.I_QM4),
    QuickState.R_QM2: Step("_r_qm3", QuickState.DONE),
    QuickState.I_QM4: Step("_i_qm4", QuickState.DONE),
}

# Informational exchanges have no states: under HASH(1) of an established ISAKMP SA a notify or
# delete may act (informational.py); in clear nothing acts. An error notify during phase 1 is
# kept as the reason a later timeout reports; a cleartext INITIAL-CONTACT or delete is dropped
# (racoon honours INITIAL-CONTACT only under an established ISAKMP SA).
