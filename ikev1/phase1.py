"""Phase 1 with pre-shared keys: main mode (6 messages) and aggressive mode (3), both roles.

RFC 2409 §5 (exchanges, SKEYID, HASH_I/HASH_R), §5.4 (PSK), App. B (encryption and IVs).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from . import crypto, vendor
from .codec import (
    HashPayload,
    Header,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    VendorIdPayload,
    decode_payloads,
    encode_message,
)
from .constants import HEADER_LEN, Exchange, Flag, Notify, Proto, notify_name
from .events import Phase1Down, Phase1Up
from .ids import identity_matches, identity_payload, identity_text
from .policy import RemotePolicy
from .proposals import (
    Phase1Suite,
    parse_phase1_transform,
    phase1_sa,
    psk_proposals,
    select_phase1,
    shorter_lifetime,
)
from .sa import Address, Drop, Flight, Phase1SA

if TYPE_CHECKING:
    from .engine import Engine

MAX_HALF_OPEN = 512  # responder ISAKMP SAs not yet authenticated: what spoofed MM1s may hold

ZERO_COOKIE = bytes(8)
_EXCHANGE = {"main": Exchange.MAIN, "aggressive": Exchange.AGGRESSIVE}


class Fail(Exception):
    """Internal: the negotiation fails with `reason`, telling the peer `notify` if set."""

    def __init__(self, reason: str, notify: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify


def required(payloads: list, cls: type, what: str):
    for pl in payloads:
        if isinstance(pl, cls):
            return pl
    raise Fail(f"missing {what} payload", Notify.PAYLOAD_MALFORMED)


class Phase1Mixin:
    # --- starting --------------------------------------------------------------------

    def _start_phase1(self: Engine, peer_address: str, remote: RemotePolicy, now: float
                      ) -> Phase1SA | None:
        local = (self._local_for(peer_address), self.config.isakmp_port)
        peer = (peer_address, remote.port)
        if not psk_proposals(remote):
            self._acquires.pop(peer_address, None)
            self._fail(peer, 1, "no pre-shared key proposal")
            return None
        icookie = self._new_cookie()
        mode = remote.exchange_mode[0] if remote.exchange_mode else "main"
        p1 = Phase1SA(icookie, ZERO_COOKIE, local, peer, True, mode, remote, now,
                      Flight(local, peer))
        sa = phase1_sa(remote)
        if mode == "aggressive":  # one KE in message 1: only proposals of the first group
            mine = psk_proposals(remote)
            group = mine[0].dh_group
            keep = tuple(t for t, p in zip(sa.proposals[0].transforms, mine,
                                           strict=True) if p.dh_group == group)
            sa = SaPayload((sa.proposals[0].__class__(1, Proto.ISAKMP, b"", keep),))
            p1.dh, p1.gxi = crypto.dh_group(group).generate(self._rng)
            p1.ni_b = self._rng(remote.nonce_size)
            p1.id_local = identity_payload(remote.my_identifier, local[0])
            payloads = [sa, KePayload(p1.gxi), NoncePayload(p1.ni_b), p1.id_local]
            p1.state = "I_AM1"
        else:
            payloads = [sa]
            p1.state = "I_MM1"
        p1.sa_b = sa.encode_body()
        payloads += self._vendor_payloads(p1)
        self._p1[icookie] = p1
        hdr = Header(icookie, ZERO_COOKIE, 0, _EXCHANGE[mode], 0, 0)
        self._send(p1.flight, [encode_message(hdr, payloads)], now, expect_reply=True)
        return p1

    def _new_cookie(self: Engine) -> bytes:
        while True:
            cookie = self._rng(8)
            if cookie != ZERO_COOKIE and cookie not in self._p1:
                return cookie

    def _vendor_payloads(self: Engine, p1: Phase1SA) -> list:
        # RFC 3706 §5.1: we answer R-U-THERE
        return [VendorIdPayload(vendor.DPD), *self._natt_vendor_payloads(p1)]

    def _note_vendor_ids(self: Engine, p1: Phase1SA, payloads: list) -> None:
        for pl in payloads:
            if isinstance(pl, VendorIdPayload):
                name = vendor.vendor_name(pl.data) or pl.data.hex()
                if name not in p1.vendor_ids:
                    p1.vendor_ids.append(name)
                p1.peer_dpd = p1.peer_dpd or pl.data == vendor.DPD
        self._note_natt(p1, payloads)

    # --- receiving -------------------------------------------------------------------

    def _receive_phase1(self: Engine, hdr: Header, data: bytes, local: Address, peer: Address,
                        now: float) -> None:
        p1 = self._p1.get(hdr.icookie)
        if p1 is None:
            if hdr.rcookie != ZERO_COOKIE or hdr.message_id != 0:
                raise Drop("unknown_sa")
            self._respond_phase1(hdr, data, local, peer, now)
            return
        if p1.peer[0] != peer[0] or hdr.exchange != _EXCHANGE[p1.exchange]:
            raise Drop("unknown_sa")
        if self._is_duplicate(p1.flight, data):
            return
        if p1.initiator and p1.state in ("I_MM1", "I_AM1"):
            if hdr.rcookie == ZERO_COOKIE:  # RFC 2408 §3.1: a reply carries the responder's
                raise Drop("unexpected")  # cookie; this is our own first message sent back
        elif hdr.rcookie != p1.rcookie:
            raise Drop("unknown_sa")
        handler = {"I_MM1": self._i_mm2, "I_MM3": self._i_mm4, "I_MM5": self._i_mm6,
                   "R_MM2": self._r_mm3, "R_MM4": self._r_mm5, "I_AM1": self._i_am2,
                   "R_AM2": self._r_am3}.get(p1.state)
        if handler is None:
            raise Drop("unexpected")
        before = (p1.local, p1.peer)
        if local[1] == self.config.natt_port and p1.natt is not None:
            p1.local, p1.peer = local, peer  # the peer floated (RFC 3947 §4)
            p1.flight.local, p1.flight.peer = local, peer
        try:
            handler(p1, hdr, data, now)
        except Fail as fail:
            self._fail_phase1(p1, fail, hdr)
            return
        except Exception:
            p1.local, p1.peer = before
            p1.flight.local, p1.flight.peer = before
            raise
        p1.flight.last_in = data

    def _plain_payloads(self: Engine, hdr: Header, data: bytes) -> list:
        if hdr.flags & Flag.ENCRYPTION:
            raise Drop("unexpected")
        return decode_payloads(hdr.next_payload, data[HEADER_LEN:])

    def _fail_phase1(self: Engine, p1: Phase1SA, fail: Fail, hdr: Header | None) -> None:
        if fail.notify is not None and hdr is not None:
            self._send_plain_notify(hdr.icookie, hdr.rcookie, p1.local, p1.peer, fail.notify)
        self._p1.pop(p1.icookie, None)
        self._fail(p1.peer, 1, fail.reason)
        self._acquires.pop(p1.peer[0], None)

    def _respond_phase1(self: Engine, hdr: Header, data: bytes, local: Address, peer: Address,
                        now: float) -> None:
        remote = self._remote_for(peer[0])
        mode = "main" if hdr.exchange == Exchange.MAIN else "aggressive"
        if remote is None or mode not in remote.exchange_mode:
            raise Drop("unknown_sa")  # racoon: no remote block for this peer and mode
        half_open = sum(1 for p in self._p1.values() if not p.initiator and not p.established)
        if half_open >= MAX_HALF_OPEN:
            raise Drop("half_open_refused")  # the source address may be forged: hold no more
        payloads = self._plain_payloads(hdr, data)
        sa = next((pl for pl in payloads if isinstance(pl, SaPayload)), None)
        if sa is None:
            raise Drop("malformed")
        chosen = select_phase1(sa, remote)
        if chosen is None:
            self._send_plain_notify(hdr.icookie, ZERO_COOKIE, local, peer,
                                    Notify.NO_PROPOSAL_CHOSEN)
            self._fail(peer, 1, "NO-PROPOSAL-CHOSEN")
            return
        proposal, suite = chosen
        p1 = Phase1SA(hdr.icookie, self._new_cookie(), local, peer, False, mode, remote, now,
                      Flight(local, peer), suite=suite, sa_b=sa.body())
        self._note_vendor_ids(p1, payloads)
        reply_sa = SaPayload((proposal,), sa.doi, sa.situation)
        try:
            if mode == "main":
                p1.state = "R_MM2"
                out = [reply_sa, *self._vendor_payloads(p1)]
            else:
                out = self._r_am1(p1, payloads, reply_sa)
        except Fail as fail:
            self._fail(peer, 1, fail.reason)
            if fail.notify is not None:
                self._send_plain_notify(hdr.icookie, ZERO_COOKIE, local, peer, fail.notify)
            return
        self._p1[p1.icookie] = p1
        p1.flight.last_in = data
        reply = Header(p1.icookie, p1.rcookie, 0, hdr.exchange, 0, 0)
        # Main mode 2 goes again only when message 1 does: one datagram per datagram from an
        # unproven address. Aggressive mode 2 keeps its resends: they recover a lost message 3.
        self._send(p1.flight, [encode_message(reply, out)], now, expect_reply=True,
                   quiet=mode == "main")

    # --- main mode -------------------------------------------------------------------

    def _accept_chosen(self: Engine, p1: Phase1SA, payloads: list) -> Phase1Suite:
        """Initiator: the responder's SA must be exactly one of the transforms we offered."""
        sa = required(payloads, SaPayload, "SA")
        if len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
            raise Fail("BAD-PROPOSAL-SYNTAX", Notify.BAD_PROPOSAL_SYNTAX)
        suite = parse_phase1_transform(sa.proposals[0].transforms[0])
        offered = [parse_phase1_transform(t) for t in phase1_sa(p1.remote).proposals[0].transforms]
        match = [s for s in offered if s is not None and suite is not None and
                 (s.encryption, s.key_bits, s.hash, s.dh_group) ==
                 (suite.encryption, suite.key_bits, suite.hash, suite.dh_group)]
        if suite is None or not match:
            raise Fail("NO-PROPOSAL-CHOSEN", Notify.NO_PROPOSAL_CHOSEN)
        return Phase1Suite(suite.encryption, suite.key_bits, suite.hash, suite.dh_group,
                           shorter_lifetime(suite.lifetime_s, match[0].lifetime_s))

    def _i_mm2(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        payloads = self._plain_payloads(hdr, data)
        suite = self._accept_chosen(p1, payloads)
        dh, gxi = crypto.dh_group(suite.dh_group).generate(self._rng)
        ni = self._rng(p1.remote.nonce_size)
        p1.rcookie, p1.suite, p1.dh, p1.gxi, p1.ni_b = hdr.rcookie, suite, dh, gxi, ni
        self._note_vendor_ids(p1, payloads)
        p1.state = "I_MM3"
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        mm3 = [KePayload(gxi), NoncePayload(ni), *self._natd_payloads(p1)]
        self._send(p1.flight, [encode_message(out, mm3)], now, expect_reply=True)

    def _psk(self: Engine, p1: Phase1SA, identity: str | None = None) -> bytes:
        """racoon: the key of the peer's address in main mode, of its identifier otherwise."""
        if identity is not None and identity in self.config.psk:
            return self.config.psk[identity]
        key = self.config.psk.get(p1.peer[0])
        if key is None:
            raise Fail("no pre-shared key for peer", Notify.AUTHENTICATION_FAILED)
        return key

    def _derive(self: Engine, p1: Phase1SA, gx_peer: bytes, nonce_peer: bytes, psk: bytes
                ) -> None:
        """Compute g^xy and the phase-1 keys (RFC 2409 §5) once both halves are known."""
        assert p1.suite is not None and p1.dh is not None
        try:
            gxy = crypto.dh_group(p1.suite.dh_group).shared_secret(p1.dh, gx_peer)
        except crypto.DHError:
            raise Fail("INVALID-KEY-INFORMATION", Notify.INVALID_KEY_INFORMATION) from None
        if p1.initiator:
            p1.gxr, p1.nr_b = gx_peer, nonce_peer
        else:
            p1.gxi, p1.ni_b = gx_peer, nonce_peer
        p1.keys = crypto.phase1_keys_psk(p1.suite.hash, psk, p1.ni_b, p1.nr_b, gxy, p1.icookie,
                                         p1.rcookie, p1.suite.encryption, p1.suite.key_bits)
        p1.iv = crypto.phase1_iv(p1.suite.hash, p1.gxi, p1.gxr,
                                 crypto.block_size(p1.suite.encryption))
        p1.dh = None

    def _r_mm3(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        assert p1.suite is not None
        payloads = self._plain_payloads(hdr, data)
        ke, nonce = required(payloads, KePayload, "KE"), required(payloads, NoncePayload, "nonce")
        psk = self._psk(p1)
        p1.dh, p1.gxr = crypto.dh_group(p1.suite.dh_group).generate(self._rng)
        p1.nr_b = self._rng(p1.remote.nonce_size)
        self._derive(p1, ke.data, nonce.data, psk)
        self._check_natd(p1, payloads, p1.local, p1.peer)
        p1.state = "R_MM4"
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        mm4 = [KePayload(p1.gxr), NoncePayload(p1.nr_b), *self._natd_payloads(p1)]
        self._send(p1.flight, [encode_message(out, mm4)], now, expect_reply=True)

    def _i_mm4(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        assert p1.suite is not None
        payloads = self._plain_payloads(hdr, data)
        ke, nonce = required(payloads, KePayload, "KE"), required(payloads, NoncePayload, "nonce")
        self._derive(p1, ke.data, nonce.data, self._psk(p1))
        self._check_natd(p1, payloads, p1.local, p1.peer)
        p1.id_local = identity_payload(p1.remote.my_identifier, p1.local[0])
        auth = self._auth_hash(p1, initiator=True, id_b=p1.id_local.encode_body())
        if self._nat_detected(p1):
            self._float(p1, now)
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        dgram, p1.iv = self._encrypt(p1, out, self._mm5_payloads(p1, auth), p1.iv)
        p1.state = "I_MM5"
        self._send(p1.flight, [dgram], now, expect_reply=True)

    def _mm5_payloads(self: Engine, p1: Phase1SA, auth: bytes) -> list:
        """IDii, HASH_I, and on first contact INITIAL-CONTACT (RFC 2407 §4.6.3.3).

        strongSwan acts on it only here, before it moves the old ISAKMP SA's pairs to the new
        one; racoon only logs it here, so _establish sends it again in its own informational.
        """
        assert p1.id_local is not None
        payloads: list = [p1.id_local, HashPayload(auth)]
        if p1.remote.initial_contact and p1.peer[0] not in self._contacted:
            payloads.append(NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, p1.spi))
        return payloads

    def _auth_hash(self: Engine, p1: Phase1SA, *, initiator: bool, id_b: bytes) -> bytes:
        """HASH_I or HASH_R (RFC 2409 §5)."""
        assert p1.suite is not None and p1.keys is not None
        fn = crypto.hash_i if initiator else crypto.hash_r
        return fn(p1.suite.hash, p1.keys.skeyid, p1.gxi, p1.gxr, p1.icookie, p1.rcookie,
                  p1.sa_b, id_b)

    def _decrypt_auth(self: Engine, p1: Phase1SA, hdr: Header, data: bytes
                      ) -> tuple[list, bytes]:
        """Decrypt MM5/MM6 (or an encrypted AM3). Garbage means other keys: a wrong pre-shared
        key, or a forged message. Like racoon (isakmp.c keeps the phase-1 handler on a bad
        packet) it is dropped and the exchange goes on, so a forgery cannot end it; if no good
        message comes, the timeout names the cause."""
        try:
            payloads, _plain, next_iv = self._decrypt(p1, hdr, data, p1.iv)
        except Drop as drop:
            p1.auth_failed = p1.auth_failed or drop.counter == "decrypt_failed"
            raise
        return payloads, next_iv

    def _check_peer_auth(self: Engine, p1: Phase1SA, payloads: list) -> IdPayload:
        """HASH_I/HASH_R and the peer's identity; a wrong hash is dropped as _decrypt_auth says."""
        peer_id = required(payloads, IdPayload, "ID")
        received = required(payloads, HashPayload, "HASH")
        expected = self._auth_hash(p1, initiator=not p1.initiator, id_b=peer_id.encode_body())
        if not hmac.compare_digest(received.data, expected):
            p1.auth_failed = True
            raise Drop("hash_mismatch")
        wanted = p1.remote.peers_identifier
        if p1.remote.verify_identifier and wanted and not identity_matches(peer_id, wanted):
            raise Fail("INVALID-ID-INFORMATION", Notify.INVALID_ID_INFORMATION)
        return peer_id

    def _r_mm5(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        payloads, iv = self._decrypt_auth(p1, hdr, data)
        peer_id = self._check_peer_auth(p1, payloads)
        p1.iv, p1.id_peer = iv, peer_id
        p1.id_local = identity_payload(p1.remote.my_identifier, p1.local[0])
        auth = self._auth_hash(p1, initiator=False, id_b=p1.id_local.encode_body())
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        dgram, p1.iv = self._encrypt(p1, out, [p1.id_local, HashPayload(auth)], p1.iv)
        self._send(p1.flight, [dgram], now, expect_reply=False)
        self._establish(p1, now, payloads)

    def _i_mm6(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        payloads, iv = self._decrypt_auth(p1, hdr, data)
        p1.id_peer = self._check_peer_auth(p1, payloads)
        p1.iv = iv
        p1.flight.datagrams = []  # finished by receiving: duplicates are only counted
        self._establish(p1, now, payloads)

    # --- established -----------------------------------------------------------------

    def _establish(self: Engine, p1: Phase1SA, now: float, last_payloads: list) -> None:
        assert p1.suite is not None and p1.id_peer is not None
        p1.state = "established"
        p1.flight.resend_at = None
        p1.established_at = now
        p1.expires_at = now + p1.suite.lifetime_s
        p1.peer_identity = identity_text(p1.id_peer)
        p1.rekey_at = now + 0.9 * p1.suite.lifetime_s if self._rekeys(p1) else None
        if self._nat_detected(p1) and p1.keepalive_at is None:
            self._arm_keepalive(p1, now)
        if p1.peer_dpd and p1.remote.dpd.delay > 0:
            p1.dpd.seq_out = int.from_bytes(self._rng(4), "big") & 0x7FFFFFFF  # RFC 3706 §7
            p1.dpd.next_probe = now + p1.remote.dpd.delay
        self._emit(Phase1Up(p1.local, p1.peer, p1.icookie, p1.rcookie, p1.initiator,
                            p1.exchange, p1.suite.label, p1.suite.hash, p1.suite.dh_group,
                            p1.suite.lifetime_s, p1.peer_identity))
        if any(isinstance(pl, NotifyPayload) and pl.msg_type == Notify.INITIAL_CONTACT
               for pl in last_payloads):  # strongSwan sends it inside MM5
            self._initial_contact(p1, now)
        if p1.initiator and p1.remote.initial_contact and p1.peer[0] not in self._contacted:
            self._send_info(p1, [NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, p1.spi)])
        self._contacted.add(p1.peer[0])
        for local_sel, remote_sel, rekey_of, _since in self._acquires.pop(p1.peer[0], []):
            self._start_quick(p1, now, local_sel, remote_sel, rekey_of)

    def _rekeys(self: Engine, p1: Phase1SA) -> bool:
        """racoon `rekey`: force always; on only while DPD watches the peer."""
        if p1.remote.rekey == "force":
            return True
        return p1.remote.rekey == "on" and p1.peer_dpd and p1.remote.dpd.delay > 0

    def _p1_timers(self: Engine, p1: Phase1SA, now: float) -> None:
        if p1.icookie not in self._p1:
            return
        if self._flight_due(p1.flight, now) and not p1.established:
            reason = "authentication failed" if p1.auth_failed else "timeout"
            self._fail_phase1(p1, Fail(reason), None)
            return
        if not p1.established:
            return
        if p1.expires_at is not None and now >= p1.expires_at:
            self._drop_p1(p1, now, "expired", notify_peer=True)
            return
        if p1.rekey_at is not None and now >= p1.rekey_at:
            p1.rekey_at = None
            has_p2 = any(sa.peer[0] == p1.peer[0] for sa in self._p2.values())
            negotiating = any(o.peer[0] == p1.peer[0] and not o.established
                              for o in self._p1.values())
            # like quick mode, only the side that initiated renegotiates: no collision
            if has_p2 and not negotiating and p1.initiator and not p1.remote.passive:
                self._start_phase1(p1.peer[0], p1.remote, now)
        self._dpd_timers(p1, now)
        if p1.icookie in self._p1:  # DPD may just have purged it
            self._keepalive_timer(p1, now)

    def _drop_p1(self: Engine, p1: Phase1SA, now: float, reason: str, *, notify_peer: bool
                 ) -> None:
        if self._p1.pop(p1.icookie, None) is None:
            return
        if notify_peer and p1.established:
            self._send_delete_isakmp(p1)
        for key in [k for k, qx in self._quick.items() if qx.p1 is p1]:
            qx = self._quick.pop(key)
            if qx.forget_at is None:
                self._fail(p1.peer, 2, f"phase 1 {reason}")
        if p1.established:
            self._emit(Phase1Down(p1.peer, p1.icookie, p1.rcookie, reason))

    def _newest_p1(self: Engine, peer_address: str) -> Phase1SA | None:
        up = [p for p in self._p1.values() if p.established and p.peer[0] == peer_address]
        return max(up, key=lambda p: p.established_at or 0.0) if up else None

    def _notify_reason(self: Engine, code: int) -> str:
        return notify_name(code)
