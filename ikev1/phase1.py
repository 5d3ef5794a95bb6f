"""Phase 1 with pre-shared keys: main mode (6 messages) and aggressive mode (3), both roles.

RFC 2409 §5 (exchanges, SKEYID, HASH_I/HASH_R), §5.4 (PSK), App. B (encryption and IVs).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import crypto, fragment, vendor
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
    encode_payloads,
)
from .constants import HEADER_LEN, Exchange, Flag, Notify, Proto
from .events import Phase1Up
from .ids import identity_matches, identity_payload, identity_text
from .policy import PSK_WILDCARD, RemotePolicy
from .proposals import (
    Phase1Suite,
    parse_phase1_transform,
    phase1_sa,
    psk_proposals,
    select_phase1,
    shorter_lifetime,
)
from .sa import Address, Drop, Flight, Phase1SA
from .states import PHASE1_STEPS, Phase1State

if TYPE_CHECKING:
    from .engine import Engine

ZERO_COOKIE = bytes(8)
NO_LOCAL_ADDRESS = "no local address of the peer's address family"
_EXCHANGE = {"main": Exchange.MAIN, "aggressive": Exchange.AGGRESSIVE}
_AUTH_DROPS = ("decrypt_failed", "hash_mismatch")  # other keys: a wrong PSK, or a forgery


MM2_CACHE_SIZE = 256  # main mode 2 answers kept, by message-1 body and remote section


@dataclass(frozen=True)
class MainMode2:
    """Main mode 2 for one message-1 body and remote section, all of it but the cookies."""

    suite: Phase1Suite
    sa_b: bytes  # the initiator's SA payload body (RFC 2409 §5 SAi_b)
    vendor_ids: tuple[str, ...]
    peer_dpd: bool
    natt: str | None
    peer_frag: bool
    first_payload: int
    body: bytes


class Fail(Exception):
    """Internal: the message is unacceptable for `reason` (telling the peer `notify` if set).

    Only a message the peer authenticated (its HASH checked) may end the exchange; before that
    anyone may have sent it, so it is dropped and `reason` kept for the timeout."""

    def __init__(self, reason: str, notify: int | None = None, *,
                 authenticated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify
        self.authenticated = authenticated


def required(payloads: list, cls: type, what: str):
    for pl in payloads:
        if isinstance(pl, cls):
            return pl
    raise Fail(f"missing {what} payload", Notify.PAYLOAD_MALFORMED)


class Phase1Mixin:
    # --- starting --------------------------------------------------------------------

    def _start_phase1(self: Engine, peer_address: str, remote: RemotePolicy, now: float
                      ) -> Phase1SA | None:
        local_address = self._local_for(peer_address)
        peer = (peer_address, remote.port)
        if local_address is None:
            self._drop_acquires(peer_address)
            self._fail(peer, 1, NO_LOCAL_ADDRESS)
            return None
        local = (local_address, self.config.isakmp_port)
        if not psk_proposals(remote):
            self._drop_acquires(peer_address)
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
            p1.state = Phase1State.I_AM1
        else:
            payloads = [sa]
            p1.state = Phase1State.I_MM1
        p1.sa_b = sa.encode_body()
        payloads += self._vendor_payloads(p1)
        self._add_initiator_p1(p1)
        hdr = Header(icookie, ZERO_COOKIE, 0, _EXCHANGE[mode], 0, 0)
        self._send(p1.flight, [encode_message(hdr, payloads)], now, under=p1, expect_reply=True)
        self._schedule(p1)
        return p1

    def _new_cookie(self: Engine) -> bytes:
        while True:
            cookie = self._rng(8)
            if cookie != ZERO_COOKIE and cookie not in self._initiating:
                return cookie

    def _vendor_payloads(self: Engine, p1: Phase1SA) -> list:
        # RFC 3706 §5.1: we answer R-U-THERE
        vids = [VendorIdPayload(vendor.DPD), *self._natt_vendor_payloads(p1)]
        # racoon: an initiator announces fragments by `ike_frag`, a responder echoes the
        # peer's announcement whatever its own setting (ikev1.fragment)
        announce = p1.remote.ike_frag != "off" if p1.initiator else p1.peer_frag
        if announce:
            vids.append(VendorIdPayload(fragment.vendor_id(p1.exchange)))
        return vids

    def _note_vendor_ids(self: Engine, p1: Phase1SA, payloads: list) -> None:
        for pl in payloads:
            if isinstance(pl, VendorIdPayload):
                name = vendor.vendor_name(pl.data) or pl.data.hex()
                if name not in p1.vendor_ids:
                    p1.vendor_ids = [*p1.vendor_ids, name]  # a new list: see _receive_phase1
                p1.peer_dpd = p1.peer_dpd or pl.data == vendor.DPD
                p1.peer_frag = p1.peer_frag or fragment.peer_capable(pl.data, p1.exchange)
        self._note_natt(p1, payloads)

    # --- receiving -------------------------------------------------------------------

    def _receive_phase1(self: Engine, hdr: Header, data: bytes, local: Address, peer: Address,
                        now: float) -> None:
        if hdr.rcookie == ZERO_COOKIE:
            if hdr.icookie in self._initiating:  # RFC 2408 §3.1: a reply names the responder's
                raise Drop("unexpected")  # cookie; this is our own first message sent back
            p1 = self._first_seen.get((hdr.icookie, peer[0]))
            if p1 is None:
                if hdr.message_id != 0:
                    raise Drop("unknown_sa")
                self._respond_phase1(hdr, data, local, peer, now)
            elif not self._is_duplicate(p1.flight, data):  # a repeat gets the same reply
                raise Drop("unexpected")
            return
        p1 = self._p1_of(hdr.icookie, hdr.rcookie, peer[0])
        if p1 is None or hdr.exchange != _EXCHANGE[p1.exchange]:
            raise Drop("unknown_sa")
        if self._is_duplicate(p1.flight, data):
            return
        if data in p1.flight.datagrams:  # our own last message sent back to us
            raise Drop("unexpected")
        step = PHASE1_STEPS.get((p1.exchange, p1.state))
        if step is None:
            raise Drop("unexpected")
        # Until the peer's HASH is checked the message may be forged: one that fails leaves the
        # exchange exactly as it was, so the real peer's message can still complete it.
        before = dict(vars(p1))
        before_flight = dict(vars(p1.flight))
        if local[1] == self.config.natt_port and p1.natt is not None:
            p1.local, p1.peer = local, peer  # the peer floated (RFC 3947 §4)
            p1.flight.local, p1.flight.peer = local, peer
        try:
            protected = getattr(self, step.handler)(p1, hdr, data, now)
        except Fail as fail:
            if fail.authenticated:
                self._fail_phase1(p1, fail, hdr, now)
                return
            self._restore(p1, before, before_flight, fail.reason)
            raise Drop("rejected") from None
        except Drop as drop:
            self._restore(p1, before, before_flight,
                          "authentication failed" if drop.counter in _AUTH_DROPS else None)
            raise
        except Exception:
            self._restore(p1, before, before_flight, None)
            raise
        p1.flight.last_in = data
        p1.state = step.next  # the table, not the handler, says where the message leads
        if p1.initiator:
            self._p1_answered(p1)
        else:
            self._p1_proven(p1)
        if p1.state is Phase1State.ESTABLISHED:
            self._establish(p1, now, protected or [])
        self._schedule(p1)

    def _restore(self: Engine, p1: Phase1SA, before: dict, before_flight: dict,
                 problem: str | None) -> None:
        vars(p1).clear()
        vars(p1).update(before)
        vars(p1.flight).clear()
        vars(p1.flight).update(before_flight)
        if problem is not None:
            p1.problem = problem

    def _plain_payloads(self: Engine, hdr: Header, data: bytes) -> list:
        if hdr.flags & Flag.ENCRYPTION:
            raise Drop("unexpected")
        return decode_payloads(hdr.next_payload, data[HEADER_LEN:])

    def _fail_phase1(self: Engine, p1: Phase1SA, fail: Fail, hdr: Header | None,
                     now: float) -> None:
        """An exchange ends: its timeout, or a message the peer authenticated but we refuse."""
        if fail.notify is not None and hdr is not None:
            self._send_plain_notify(hdr.icookie, hdr.rcookie, p1.local, p1.peer, fail.notify)
        self._drop_p1(p1, now, fail.reason, notify_peer=False)
        if p1.initiator:
            self._fail(p1.peer, 1, fail.reason)
            self._drop_acquires(p1.peer[0])
        elif fail.authenticated:
            self._fail(p1.peer, 1, fail.reason)
        else:  # a responder's exchange nobody authenticated: maybe a forged first message
            # folded by kind, not by its reason, which a forger can vary (cleartext notifies)
            self._refused(p1.peer, f"{fail.reason} in {p1.exchange} mode as responder", now,
                          fold=f"responder {p1.exchange} mode failed")

    def _respond_phase1(self: Engine, hdr: Header, data: bytes, local: Address, peer: Address,
                        now: float) -> None:
        remote = self._remote_for(peer[0])
        mode = "main" if hdr.exchange == Exchange.MAIN else "aggressive"
        if remote is None or mode not in remote.exchange_mode:
            raise Drop("unknown_sa")  # racoon: no remote block for this peer and mode
        configured = remote.remote != "anonymous"
        no_proposal = Fail("NO-PROPOSAL-CHOSEN", Notify.NO_PROPOSAL_CHOSEN)
        if mode == "main":
            template = self._main_mode_2(remote, hdr, data, local, peer)
            if template is None:
                self._refuse_first(hdr, local, peer, no_proposal, now)
                return
            p1 = Phase1SA(hdr.icookie, self._new_cookie(), local, peer, False, mode, remote, now,
                          Flight(local, peer), state=Phase1State.R_MM2, suite=template.suite,
                          sa_b=template.sa_b, vendor_ids=list(template.vendor_ids),
                          peer_dpd=template.peer_dpd, natt=template.natt,
                          peer_frag=template.peer_frag)
            reply = Header(p1.icookie, p1.rcookie, template.first_payload, hdr.exchange, 0, 0)
            dgram = reply.encode(len(template.body)) + template.body
        else:
            payloads = self._plain_payloads(hdr, data)
            sa = next((pl for pl in payloads if isinstance(pl, SaPayload)), None)
            if sa is None:
                raise Drop("malformed")
            chosen = select_phase1(sa, remote)
            if chosen is None:
                self._refuse_first(hdr, local, peer, no_proposal, now)
                return
            if not self._aggressive_dh_allowed(peer[0], configured, now):
                self._refused(peer, "aggressive mode paced", now)
                raise Drop("aggressive_paced")
            proposal, suite = chosen
            p1 = Phase1SA(hdr.icookie, self._new_cookie(), local, peer, False, mode, remote, now,
                          Flight(local, peer), state=Phase1State.R_AM2, suite=suite,
                          sa_b=sa.body())
            self._note_vendor_ids(p1, payloads)
            try:
                out = self._r_am1(p1, payloads, SaPayload((proposal,), sa.doi, sa.situation))
            except Fail as fail:
                self._refuse_first(hdr, local, peer, fail, now)
                return
            dgram = encode_message(Header(p1.icookie, p1.rcookie, 0, hdr.exchange, 0, 0), out)
        for victim in self._half_open.admit(peer[0], configured):  # the oldest in a full room
            self.counters["half_open_evicted"] += 1
            self._refused(victim.peer, "half-open exchange evicted", now)
            self._drop_p1(victim, now, "evicted", notify_peer=False)
        self._add_responder_p1(p1, configured)
        p1.flight.last_in = data
        # Main mode 2 goes again only when message 1 does: one datagram per datagram from an
        # unproven address. Aggressive mode 2 keeps its resends: they recover a lost message 3.
        self._send(p1.flight, [dgram], now, under=p1, expect_reply=True,
                   quiet=mode == "main")
        self._schedule(p1)

    def _main_mode_2(self: Engine, remote: RemotePolicy, hdr: Header, data: bytes,
                     local: Address, peer: Address) -> MainMode2 | None:
        """Our answer to a main mode 1, but for the cookies; None: no proposal chosen.

        It depends only on the message's payloads and the remote section, so it is kept for
        the latest bodies seen: a flood of one message under many cookies is answered without
        decoding, choosing or encoding it again."""
        key = (id(remote), data[HEADER_LEN:])
        cache = self._mm2_cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        payloads = self._plain_payloads(hdr, data)
        sa = next((pl for pl in payloads if isinstance(pl, SaPayload)), None)
        if sa is None:
            raise Drop("malformed")
        chosen = select_phase1(sa, remote)
        template = None
        if chosen is not None:
            proposal, suite = chosen
            scratch = Phase1SA(hdr.icookie, ZERO_COOKIE, local, peer, False, "main", remote, 0.0,
                               Flight(local, peer), suite=suite)
            self._note_vendor_ids(scratch, payloads)
            first, body = encode_payloads([SaPayload((proposal,), sa.doi, sa.situation),
                                           *self._vendor_payloads(scratch)])
            template = MainMode2(suite, sa.body(), tuple(scratch.vendor_ids), scratch.peer_dpd,
                                 scratch.natt, scratch.peer_frag, first, body)
        cache[key] = template
        if len(cache) > MM2_CACHE_SIZE:
            cache.popitem(last=False)
        return template

    def _refuse_first(self: Engine, hdr: Header, local: Address, peer: Address, fail: Fail,
                      now: float) -> None:
        """A first message we cannot accept: folded into a Refused event, and an error notify
        within the per-source cap (the source may be forged: no reflector for a flood)."""
        self._refused(peer, fail.reason, now)
        if fail.notify is None:
            return
        if self._notify_replies.take(peer[0], now):
            self._send_plain_notify(hdr.icookie, ZERO_COOKIE, local, peer, fail.notify)
        else:
            self.counters["replies_capped"] += 1

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
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        mm3 = [KePayload(gxi), NoncePayload(ni), *self._natd_payloads(p1)]
        self._send(p1.flight, [encode_message(out, mm3)], now, under=p1, expect_reply=True)

    def _psk(self: Engine, p1: Phase1SA, identity: str | None = None) -> bytes:
        """racoon: the key of the peer's address in main mode, of its identifier otherwise;
        psk.txt's `*` entry for a peer no line above it names (racoon's getpsk() takes the first
        line that is the name or `*`; the loader keeps no line below a `*`)."""
        psk = self.config.psk
        if identity is not None:
            key = psk.get(identity, psk.get(PSK_WILDCARD))
            if key is not None:
                return key
        key = psk.get(p1.peer[0], psk.get(PSK_WILDCARD))
        if key is None:
            raise Fail("no pre-shared key for peer", Notify.AUTHENTICATION_FAILED)
        return key

    def _derive(self: Engine, p1: Phase1SA, gx_peer: bytes, nonce_peer: bytes, psk: bytes
                ) -> None:
        """Compute g^xy and the phase-1 keys (RFC 2409 §5) once both halves are known."""
        assert p1.suite is not None and p1.dh is not None
        if gx_peer == p1.dh.public or nonce_peer in (p1.ni_b, p1.nr_b):
            # our own message 3 (or 4) sent back: no peer chooses our g^x or our nonce
            raise Fail("our own key exchange sent back", Notify.INVALID_KEY_INFORMATION)
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
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        mm4 = [KePayload(p1.gxr), NoncePayload(p1.nr_b), *self._natd_payloads(p1)]
        self._send(p1.flight, [encode_message(out, mm4)], now, under=p1, expect_reply=True)

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
        self._send(p1.flight, [dgram], now, under=p1, expect_reply=True)

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
        message comes, the timeout names the cause (_receive_phase1 keeps it)."""
        payloads, _plain, next_iv = self._decrypt(p1, hdr, data, p1.iv)
        return payloads, next_iv

    def _check_peer_auth(self: Engine, p1: Phase1SA, payloads: list) -> IdPayload:
        """HASH_I/HASH_R and the peer's identity; a wrong hash is dropped as _decrypt_auth says."""
        peer_id = required(payloads, IdPayload, "ID")
        received = required(payloads, HashPayload, "HASH")
        expected = self._auth_hash(p1, initiator=not p1.initiator, id_b=peer_id.encode_body())
        if not hmac.compare_digest(received.data, expected):
            raise Drop("hash_mismatch")
        self._check_peer_identity(p1, peer_id)
        return peer_id

    def _check_peer_identity(self: Engine, p1: Phase1SA, peer_id: IdPayload) -> None:
        """racoon `verify_identifier`: an authenticated peer with another identity is refused."""
        wanted = p1.remote.peers_identifier
        if p1.remote.verify_identifier and wanted and not any(
                identity_matches(peer_id, identity) for identity in wanted):
            raise Fail("INVALID-ID-INFORMATION", Notify.INVALID_ID_INFORMATION,
                       authenticated=True)

    def _r_mm5(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> list:
        payloads, iv = self._decrypt_auth(p1, hdr, data)
        peer_id = self._check_peer_auth(p1, payloads)
        p1.iv, p1.id_peer = iv, peer_id
        p1.id_local = identity_payload(p1.remote.my_identifier, p1.local[0])
        auth = self._auth_hash(p1, initiator=False, id_b=p1.id_local.encode_body())
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.MAIN, 0, 0)
        dgram, p1.iv = self._encrypt(p1, out, [p1.id_local, HashPayload(auth)], p1.iv)
        self._send(p1.flight, [dgram], now, under=p1, expect_reply=False)
        return payloads  # encrypted and authenticated: its INITIAL-CONTACT counts

    def _i_mm6(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> list:
        payloads, iv = self._decrypt_auth(p1, hdr, data)
        p1.id_peer = self._check_peer_auth(p1, payloads)
        p1.iv = iv
        p1.flight.datagrams = []  # finished by receiving: duplicates are only counted
        return payloads

    # --- established -----------------------------------------------------------------

    def _establish(self: Engine, p1: Phase1SA, now: float, protected_payloads: list) -> None:
        """Phase 1 is up. `protected_payloads`: the last message's, if it was encrypted under
        the new keys (a cleartext INITIAL-CONTACT, as aggressive mode can carry, counts not)."""
        assert p1.suite is not None and p1.id_peer is not None
        self._p1_established(p1)
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
               for pl in protected_payloads):  # strongSwan sends it inside MM5
            self._initial_contact(p1, now)
        if p1.initiator and p1.remote.initial_contact and p1.peer[0] not in self._contacted:
            self._send_info(p1, [NotifyPayload(Notify.INITIAL_CONTACT, Proto.ISAKMP, p1.spi)])
        self._contacted.add(p1.peer[0])
        for local_sel, remote_sel, mode, rekey_of, _since in self._drop_acquires(p1.peer[0]):
            self._start_quick(p1, now, local_sel, remote_sel, mode, rekey_of)

    def _rekeys(self: Engine, p1: Phase1SA) -> bool:
        """racoon `rekey`: force always; on only while DPD watches the peer."""
        if p1.remote.rekey == "force":
            return True
        return p1.remote.rekey == "on" and p1.peer_dpd and p1.remote.dpd.delay > 0

    def _p1_timers(self: Engine, p1: Phase1SA, now: float) -> None:
        if self._flight_due(p1.flight, now) and not p1.established:
            self._fail_phase1(p1, Fail(p1.problem or "timeout"), None, now)
            return
        self._keepalive_timer(p1, now)  # from the float on (RFC 3948 §2.3), not only once up
        if not p1.established:
            return
        if p1.expires_at is not None and now >= p1.expires_at:
            self._drop_p1(p1, now, "expired", notify_peer=True)
            return
        if p1.rekey_at is not None and now >= p1.rekey_at:
            p1.rekey_at = None
            record = self._peers.get(p1.peer[0])
            has_p2 = record is not None and bool(record.phase2)
            # like quick mode, only the side that initiated renegotiates: no collision; a
            # peer's exchange towards us is not ours, so it blocks nothing
            if (has_p2 and self._initiating_with(p1.peer[0]) is None and p1.initiator
                    and not p1.remote.passive):
                self._start_phase1(p1.peer[0], p1.remote, now)
        self._dpd_timers(p1, now)

    def _newest_p1(self: Engine, peer_address: str) -> Phase1SA | None:
        record = self._peers.get(peer_address)
        return next(reversed(record.phase1), None) if record else None
