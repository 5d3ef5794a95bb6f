"""Informational exchanges (RFC 2409 §5.7): notifies and deletes under HASH(1), INITIAL-CONTACT,
and dead peer detection (RFC 3706)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import crypto
from .codec import (
    DeletePayload,
    HashPayload,
    Header,
    NotifyPayload,
    chain_after_first,
    decode_payloads,
    encode_message,
    encode_payloads,
)
from .constants import HEADER_LEN, Exchange, Flag, Notify, Proto, notify_name
from .events import PeerDead
from .sa import Address, Drop, Phase1SA, Phase2SA
from .states import QuickState

if TYPE_CHECKING:
    from .engine import Engine

_ERROR_LIMIT = 8192  # RFC 2408 §3.14.1: types below are errors, 16384 and up status


class InformationalMixin:
    # --- sending ---------------------------------------------------------------------

    def _send_info(self: Engine, p1: Phase1SA, payloads: list) -> None:
        """HDR*, HASH(1), N/D with a fresh message ID and its own IV (RFC 2409 §5.7)."""
        assert p1.suite is not None and p1.keys is not None
        msgid = self._new_msgid(p1)
        _, tail = encode_payloads(payloads)
        h = crypto.info_hash(p1.suite.hash, p1.keys.skeyid_a, msgid, tail)
        hdr = Header(p1.icookie, p1.rcookie, 0, Exchange.INFORMATIONAL, 0, msgid)
        dgram, _ = self._encrypt(p1, hdr, [HashPayload(h), *payloads], self._qm_iv(p1, msgid))
        for piece in self._pieces(dgram, self._frag_id(p1, [dgram])):
            self._put(piece, p1.local, p1.peer)

    def _send_plain_notify(self: Engine, icookie: bytes, rcookie: bytes, local: Address,
                           peer: Address, code: int) -> None:
        """An unprotected error notify, for failures before the keys agree."""
        notify = NotifyPayload(code, Proto.ISAKMP, icookie + rcookie)
        hdr = Header(icookie, rcookie, 0, Exchange.INFORMATIONAL, 0, 0)
        self._put(encode_message(hdr, [notify]), local, peer)

    def _send_delete_esp(self: Engine, sa: Phase2SA, now: float) -> None:
        """RFC 2408 §3.15: we name the SPI we chose, i.e. the SA the peer sends on."""
        p1 = self._newest_p1(sa.peer[0])
        if p1 is not None:
            self._send_info(p1, [DeletePayload(Proto.ESP, (sa.spi_in.to_bytes(4, "big"),))])

    def _send_delete_isakmp(self: Engine, p1: Phase1SA) -> None:
        self._send_info(p1, [DeletePayload(Proto.ISAKMP, (p1.spi,))])

    # --- receiving -------------------------------------------------------------------

    def _receive_informational(self: Engine, p1: Phase1SA, hdr: Header, data: bytes,
                               now: float) -> None:
        if not hdr.flags & Flag.ENCRYPTION:
            self._plain_informational(p1, hdr, data)
            return
        if not p1.established:
            raise Drop("unexpected")
        assert p1.suite is not None and p1.keys is not None
        payloads, plain, _ = self._decrypt(p1, hdr, data, self._qm_iv(p1, hdr.message_id))
        tail = chain_after_first(plain, len(payloads))
        self._check_hash(p1, payloads,
                         crypto.info_hash(p1.suite.hash, p1.keys.skeyid_a, hdr.message_id, tail))
        self._claim_msgid(p1, hdr.message_id)  # never a second ACK or INITIAL-CONTACT purge
        self.counters["notifies_received"] += 1
        for pl in payloads[1:]:
            if isinstance(pl, NotifyPayload):
                self._on_notify(p1, pl, now)
            elif isinstance(pl, DeletePayload):
                self._on_delete(p1, pl, now)

    def _plain_informational(self: Engine, p1: Phase1SA, hdr: Header, data: bytes) -> None:
        """An unprotected notify changes nothing: anyone could have sent it (racoon only logs
        it). During phase 1 an error notify is kept as the reason a timeout reports."""
        if p1.established:
            raise Drop("unexpected")
        payloads = decode_payloads(hdr.next_payload, data[HEADER_LEN:])
        for pl in payloads:
            if isinstance(pl, NotifyPayload) and pl.msg_type < _ERROR_LIMIT:
                self.counters["notifies_received"] += 1
                p1.problem = f"timeout after {notify_name(pl.msg_type)} in clear"
                return
        raise Drop("unexpected")

    def _on_notify(self: Engine, p1: Phase1SA, pl: NotifyPayload, now: float) -> None:
        if pl.msg_type == Notify.R_U_THERE and len(pl.data) == 4:
            ack = NotifyPayload(Notify.R_U_THERE_ACK, Proto.ISAKMP, p1.spi, pl.data)
            self._send_info(p1, [ack])  # RFC 3706 §5: echo the sequence number
        elif pl.msg_type == Notify.R_U_THERE_ACK and len(pl.data) == 4:
            (seq,) = struct.unpack("!I", pl.data)
            if seq == p1.dpd.waiting_seq and pl.spi == p1.spi:
                p1.dpd.waiting_seq = p1.dpd.ack_deadline = None
                p1.dpd.fails = 0
                p1.dpd.next_probe = now + p1.remote.dpd.delay
        elif pl.msg_type == Notify.INITIAL_CONTACT:
            # only from the peer's newest ISAKMP SA, once: a replay under an older one (its
            # message IDs are remembered for a while only) purges nothing
            if self._newest_p1(p1.peer[0]) is p1 and not p1.contact_honoured:
                self._initial_contact(p1, now)
        elif pl.msg_type < _ERROR_LIMIT:
            self._quick_error(p1, pl)

    def _quick_error(self: Engine, p1: Phase1SA, pl: NotifyPayload) -> None:
        """A peer's error about our quick mode: the one with that SPI when it names an ESP SPI
        (one we do not know ends nothing), else every pending one (racoon names the ISAKMP SA,
        strongSwan sends SPI 0 when it read none)."""
        pending = [qx for qx in p1.quicks.values()
                   if qx.initiator and qx.state is QuickState.I_QM1]
        spi = int.from_bytes(pl.spi, "big") if len(pl.spi) == 4 else 0
        if pl.protocol == Proto.ESP and spi:  # SPI 0 is none (RFC 4303 §2.1)
            pending = [qx for qx in pending if qx.spi_in == spi]
        for qx in pending:
            self._remove_quick(qx)
            self._fail(p1.peer, 2, notify_name(pl.msg_type))

    def _on_delete(self: Engine, p1: Phase1SA, pl: DeletePayload, now: float) -> None:
        if pl.protocol == Proto.ISAKMP:
            for spi in pl.spis:
                # RFC 2408 §3.15: both cookies name it
                target = self._by_cookies.get((spi[:8], spi[8:])) if len(spi) == 16 else None
                if target is not None and target.peer[0] == p1.peer[0]:
                    purge = self._rekeys(target)
                    self._drop_p1(target, now, "peer-deleted", notify_peer=False)
                    if purge:
                        self._purge_orphans(target, now)
        elif pl.protocol == Proto.ESP:
            values = {int.from_bytes(spi, "big") for spi in pl.spis}
            for sa in self._peer_p2(p1.peer[0]):
                if values & {sa.spi_out, sa.spi_in}:
                    self._delete_p2(sa, now, "peer-deleted", notify_peer=False)

    def _purge_orphans(self: Engine, deleted: Phase1SA, now: float) -> None:
        """A peer that deletes an ISAKMP SA while it rekeys (racoon's `rekey`, DPD on) has
        purged the IPsec SAs with us unless another ISAKMP SA with us is still up, and sends no
        delete for them (racoon's isakmp_inf.c and purge_remote(); `racoonctl delete-sa` does
        the same): drop them too, so that packets wait for a new pair instead of being sealed
        into SAs the peer no longer has, and negotiate that pair now. A peer that dropped only
        its ISAKMP SA (`flush-sa isakmp`) and kept its pair then moves to the new one too,
        instead of sealing into the pair we dropped until its traffic makes it negotiate."""
        peer = deleted.peer[0]
        if self._peer_p1(peer):
            return  # racoon keeps every established IPsec SA while an ISAKMP SA remains
        for sa in self._peer_p2(peer):
            self._delete_p2(sa, now, "peer-deleted-isakmp", notify_peer=False)
            if not deleted.remote.passive:  # the deleting peer will not: no collision
                self._acquire(peer, now, *sa.ids, sa.suite.mode, None)

    def _initial_contact(self: Engine, p1: Phase1SA, now: float) -> None:
        """The peer has restarted: every other SA with it is stale (RFC 2407 §4.6.3.3)."""
        p1.contact_honoured = True
        for other in self._peer_p1(p1.peer[0]):
            if other is not p1:
                self._drop_p1(other, now, "initial-contact", notify_peer=False)
        for sa in self._peer_p2(p1.peer[0]):
            if sa.owner is not p1:
                self._delete_p2(sa, now, "initial-contact", notify_peer=False)

    # --- dead peer detection ---------------------------------------------------------

    def _dpd_timers(self: Engine, p1: Phase1SA, now: float) -> None:
        dpd = p1.dpd
        if dpd.next_probe is not None and now >= dpd.next_probe:
            dpd.next_probe = None
            self._probe(p1, now)
        elif dpd.ack_deadline is not None and now >= dpd.ack_deadline:
            dpd.fails += 1
            if dpd.fails >= p1.remote.dpd.maxfail:
                self._peer_dead(p1.peer, now)
            else:
                self._probe(p1, now)

    def _probe(self: Engine, p1: Phase1SA, now: float) -> None:
        p1.dpd.seq_out = (p1.dpd.seq_out + 1) & 0xFFFFFFFF
        p1.dpd.waiting_seq = p1.dpd.seq_out
        p1.dpd.ack_deadline = now + p1.remote.dpd.retry
        data = struct.pack("!I", p1.dpd.seq_out)
        self._send_info(p1, [NotifyPayload(Notify.R_U_THERE, Proto.ISAKMP, p1.spi, data)])

    def _peer_dead(self: Engine, peer: Address, now: float) -> None:
        """RFC 3706 §5.5: purge everything with the peer, then say so."""
        for sa in self._peer_p2(peer[0]):
            self._delete_p2(sa, now, "dead", notify_peer=False)
        for p1 in self._peer_p1(peer[0]):
            self._drop_p1(p1, now, "dead", notify_peer=False)
        initiating = self._initiating_with(peer[0])
        if initiating is not None:
            self._drop_p1(initiating, now, "dead", notify_peer=False)
        self._drop_acquires(peer[0])
        self._emit(PeerDead(peer))
