"""Quick mode (RFC 2409 §5.5): ESP SA pairs with or without PFS, both roles, and their rekey.

Initiator: HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] / responder: HDR*, HASH(2), SA, Nr
[, KE] [, IDci, IDcr] / initiator: HDR*, HASH(3). With the commit bit (RFC 2408 §3.1) the
responder then sends HASH, N(CONNECTED) and the initiator waits for it.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from . import crypto
from .codec import (
    HashPayload,
    Header,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    SaPayload,
    chain_after_first,
    decode_attributes,
    encode_attributes,
    encode_payloads,
)
from .constants import Exchange, Flag, Notify, Proto
from .events import EspKeys, InboundReady, Phase2Up
from .ids import (
    address_selector,
    find_route,
    find_sainfo,
    payload_selector,
    selector_payload,
    selector_tuple,
)
from .proposals import (
    Phase2Suite,
    default_bits,
    parse_lifetime_attrs,
    parse_phase2_transform,
    phase2_proposals,
    responder_lifetime_attrs,
    select_phase2,
    shorter_lifetime,
)
from .sa import Drop, Flight, Phase1SA, Phase2SA, QuickExchange
from .states import QUICK_STEPS, QuickState

if TYPE_CHECKING:
    from .engine import Engine
    from .policy import TrafficSelector

SOFT_FRACTION = 0.8  # racoon: soft lifetime at 80% of the hard one
RESERVED_SPIS = 256  # RFC 4303 §2.1: SPIs 1..255 are reserved for IANA, 0 for local use


class QuickFail(Exception):
    def __init__(self, reason: str, notify: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify


class QuickMixin:
    # --- acquire and start -----------------------------------------------------------

    def _acquire(self: Engine, peer_address: str, now: float,
                 local_sel: TrafficSelector | None, remote_sel: TrafficSelector | None,
                 mode: str, rekey_of: int | None) -> None:
        remote = self._remote_for(peer_address)
        if remote is None:
            self._fail((peer_address, self.config.isakmp_port), 1, "no remote configuration")
            return
        p1 = self._newest_p1(peer_address)
        if p1 is not None:
            self._start_quick(p1, now, local_sel, remote_sel, mode, rekey_of)
            return
        pending = self._acquires.setdefault(peer_address, [])
        if not any((ls, rs, m) == (local_sel, remote_sel, mode) for ls, rs, m, *_ in pending):
            pending.append((local_sel, remote_sel, mode, rekey_of, now))
        self._schedule(("acquires", peer_address))
        # only our own exchange counts: a peer's half-open one towards us (which anyone can
        # start by spoofing its address) never stands in for it
        if self._initiating_with(peer_address) is None:
            if remote.passive:
                self._drop_acquires(peer_address)
                self._fail((peer_address, remote.port), 1, "passive")
                return
            self._start_phase1(peer_address, remote, now)

    def _start_quick(self: Engine, p1: Phase1SA, now: float, local_sel: TrafficSelector | None,
                     remote_sel: TrafficSelector | None, mode: str, rekey_of: int | None
                     ) -> None:
        assert p1.suite is not None and p1.keys is not None
        wanted = (local_sel, remote_sel, mode)
        for other in self._peer_p1(p1.peer[0]):
            for qx in other.quicks.values():
                if (qx.initiator and qx.forget_at is None
                        and (qx.local_sel, qx.remote_sel, qx.mode) == wanted):
                    return  # already negotiating these selectors in this mode
        local = local_sel or address_selector(p1.local[0])
        remote = remote_sel or address_selector(p1.peer[0])
        sainfo = find_sainfo(self.config.sainfos, local, remote, p1.peer_identity)
        if sainfo is None:
            self._fail(p1.peer, 2, "no sainfo for selectors")
            return
        msgid = self._new_msgid(p1)
        qx = QuickExchange(p1, msgid, True, self._qm_iv(p1, msgid), Flight(p1.local, p1.peer),
                           now, sainfo=sainfo, local_sel=local_sel, remote_sel=remote_sel,
                           rekey_of=rekey_of, mode=mode)
        qx.spi_in = self._new_spi()
        qx.ni_b = self._rng(p1.remote.nonce_size)
        sa = SaPayload(phase2_proposals(sainfo, qx.spi_in.to_bytes(4, "big"),
                                        self._encap(p1, mode)))
        if not sa.proposals[0].transforms:
            self._fail(p1.peer, 2, "no supported ESP algorithm in sainfo")
            return
        qx.proposals_sa = sa
        rest: list = [sa, NoncePayload(qx.ni_b)]
        if sainfo.pfs_group:
            qx.dh, gx = crypto.dh_group(sainfo.pfs_group).generate(self._rng)
            rest.append(KePayload(gx))
        # a tunnel's IDs name what it carries, never only the IKE addresses: always sent
        if (mode == "tunnel" or local_sel is not None or remote_sel is not None
                or p1.remote.support_proxy):
            qx.id_ci, qx.id_cr = selector_payload(local), selector_payload(remote)
            rest += [qx.id_ci, qx.id_cr]
        rest += self._nat_oa_payloads(p1, True, mode)
        _, tail = encode_payloads(rest)
        h1 = crypto.qm_hash1(p1.suite.hash, p1.keys.skeyid_a, msgid, tail)
        qx.state = QuickState.I_QM1
        self._add_quick(qx)
        self._send_quick(qx, [HashPayload(h1), *rest], now, expect_reply=True)
        self._schedule(qx)

    def _qm_iv(self: Engine, p1: Phase1SA, msgid: int) -> bytes:
        """RFC 2409 App. B: hash(last phase-1 CBC block | M-ID), cut to the block size."""
        assert p1.suite is not None
        return crypto.phase2_iv(p1.suite.hash, p1.iv, msgid,
                                crypto.block_size(p1.suite.encryption))

    def _send_quick(self: Engine, qx: QuickExchange, payloads: list, now: float, *,
                    expect_reply: bool, flags: int = 0) -> None:
        hdr = Header(qx.p1.icookie, qx.p1.rcookie, 0, Exchange.QUICK, flags, qx.msgid)
        dgram, qx.iv = self._encrypt(qx.p1, hdr, payloads, qx.iv)
        self._send(qx.flight, [dgram], now, under=qx.p1, expect_reply=expect_reply)

    # --- receive ---------------------------------------------------------------------

    def _receive_quick(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float
                       ) -> None:
        if not p1.established or hdr.message_id == 0:
            raise Drop("unexpected")
        qx = p1.quicks.get(hdr.message_id)
        if qx is None:
            self._r_qm1(p1, hdr, data, now)
            return
        if self._is_duplicate(qx.flight, data):
            return
        step = QUICK_STEPS.get(qx.state)
        if step is None:
            raise Drop("unexpected")
        payloads, plain, next_iv = self._decrypt(p1, hdr, data, qx.iv)
        try:  # each handler checks the message's HASH first: a failure after it is the peer's
            wait = getattr(self, step.handler)(qx, hdr, payloads, plain, next_iv, now)
        except QuickFail as fail:
            self._fail_quick(qx, fail)
            return
        qx.flight.last_in = data
        qx.state = step.alt if wait and step.alt is not None else step.next
        self._schedule(qx)

    def _check_hash(self: Engine, p1: Phase1SA, payloads: list, expected_for: bytes
                    ) -> None:
        if not payloads or not isinstance(payloads[0], HashPayload):
            raise Drop("malformed")
        if not hmac.compare_digest(payloads[0].data, expected_for):
            raise Drop("hash_mismatch")

    def _r_qm1(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> None:
        assert p1.suite is not None and p1.keys is not None
        iv = self._qm_iv(p1, hdr.message_id)
        payloads, plain, next_iv = self._decrypt(p1, hdr, data, iv)
        tail = chain_after_first(plain, len(payloads))
        self._check_hash(p1, payloads,
                         crypto.qm_hash1(p1.suite.hash, p1.keys.skeyid_a, hdr.message_id, tail))
        self._claim_msgid(p1, hdr.message_id)  # a replay of a finished exchange: no second SA
        qx = QuickExchange(p1, hdr.message_id, False, next_iv, Flight(p1.local, p1.peer), now)
        try:
            out = self._r_qm1_reply(qx, payloads)
        except QuickFail as fail:
            spi = qx.proposals_sa.proposals[0].spi if qx.proposals_sa else b""
            if fail.notify is not None:
                self._send_info(p1, [NotifyPayload(fail.notify, Proto.ESP, spi)])
            self._fail(p1.peer, 2, fail.reason)
            return
        qx.state = QuickState.R_QM2
        qx.connected_wait = bool(hdr.flags & Flag.COMMIT)
        qx.flight.last_in = data
        self._add_quick(qx)
        _, rest = encode_payloads(out)
        h2 = crypto.qm_hash2(p1.suite.hash, p1.keys.skeyid_a, qx.msgid, qx.ni_b, rest)
        self._send_quick(qx, [HashPayload(h2), *out], now, expect_reply=True)
        self._schedule(qx)
        self._inbound_ready(qx)

    def _r_qm1_reply(self: Engine, qx: QuickExchange, payloads: list) -> list:
        """Choose a proposal for a peer's quick mode; the reply's payloads after HASH(2)."""
        p1 = qx.p1
        sa = next((pl for pl in payloads if isinstance(pl, SaPayload)), None)
        nonce = next((pl for pl in payloads if isinstance(pl, NoncePayload)), None)
        ke = next((pl for pl in payloads if isinstance(pl, KePayload)), None)
        ids = [pl for pl in payloads if isinstance(pl, IdPayload)]
        if sa is None or nonce is None or len(ids) not in (0, 2):
            raise QuickFail("PAYLOAD-MALFORMED", Notify.PAYLOAD_MALFORMED)
        qx.proposals_sa, qx.ni_b = sa, nonce.data
        if ids:
            qx.id_ci, qx.id_cr = ids
            remote, local = payload_selector(ids[0]), payload_selector(ids[1])
            if remote is None or local is None:
                raise QuickFail("INVALID-ID-INFORMATION", Notify.INVALID_ID_INFORMATION)
            qx.local_sel, qx.remote_sel = local, remote
        else:
            local, remote = address_selector(p1.local[0]), address_selector(p1.peer[0])
        if local.network.version != remote.network.version:  # racoon's getsp_r(): no policy
            raise QuickFail("INVALID-ID-INFORMATION", Notify.INVALID_ID_INFORMATION)
        sainfo = find_sainfo(self.config.sainfos, local, remote, p1.peer_identity)
        if sainfo is None:
            raise QuickFail("INVALID-ID-INFORMATION", Notify.INVALID_ID_INFORMATION)
        # transport mode as before (the SPD's GRE policy is not consulted); a tunnel only where
        # a tunnel policy of ours covers the IDs, or where generate_policy lets the peer's
        # selectors make one (racoon's get_proposal_r())
        route = find_route(self.config.policies, "tunnel", local, remote, p1.local[0],
                           p1.peer[0])
        encaps = (self._encap(p1, "transport"),)
        if route is not None or p1.remote.generate_policy != "off":
            encaps += (self._encap(p1, "tunnel"),)
        choice = select_phase2(sa.proposals, sainfo, p1.remote.proposal_check, encaps)
        if choice is None:
            raise QuickFail("NO-PROPOSAL-CHOSEN", Notify.NO_PROPOSAL_CHOSEN)
        suite = choice.suite
        qx.mode = suite.mode
        qx.generated_policy = suite.mode == "tunnel" and route is None
        if (suite.pfs_group is None) != (ke is None):  # racoon: KE without PFS or PFS without KE
            raise QuickFail("NO-PROPOSAL-CHOSEN", Notify.NO_PROPOSAL_CHOSEN)
        qx.sainfo, qx.suite = sainfo, suite
        qx.spi_out = int.from_bytes(choice.proposal.spi, "big")
        if qx.spi_out < RESERVED_SPIS:  # no data plane takes it: no half pair either
            raise QuickFail("reserved SPI", Notify.INVALID_SPI)
        qx.spi_in = self._new_spi()
        qx.nr_b = self._rng(p1.remote.nonce_size)
        prop = choice.proposal
        out: list = [SaPayload((prop.__class__(prop.number, prop.protocol,
                                               qx.spi_in.to_bytes(4, "big"), prop.transforms),),
                               sa.doi, sa.situation), NoncePayload(qx.nr_b)]
        if suite.pfs_group is not None and ke is not None:
            dh, gx = crypto.dh_group(suite.pfs_group).generate(self._rng)
            try:
                qx.gxy = crypto.dh_group(suite.pfs_group).shared_secret(dh, ke.data)
            except crypto.CryptoError:
                raise QuickFail("INVALID-KEY-INFORMATION",
                                Notify.INVALID_KEY_INFORMATION) from None
            out.append(KePayload(gx))
        if ids:
            out += ids
        out += self._nat_oa_payloads(p1, False, suite.mode)
        if choice.responder_lifetime is not None:  # RFC 2407 §4.6.3.1, proposal_check claim
            out.append(NotifyPayload(Notify.RESPONDER_LIFETIME, Proto.ESP, prop.spi,
                                     encode_attributes(responder_lifetime_attrs(
                                         choice.responder_lifetime))))
        return out

    def _i_qm2(self: Engine, qx: QuickExchange, hdr: Header, payloads: list, plain: bytes,
               next_iv: bytes, now: float) -> bool:
        p1 = qx.p1
        assert p1.suite is not None and p1.keys is not None and qx.sainfo is not None
        tail = chain_after_first(plain, len(payloads))
        self._check_hash(p1, payloads, crypto.qm_hash2(p1.suite.hash, p1.keys.skeyid_a,
                                                       qx.msgid, qx.ni_b, tail))
        suite = self._accept_phase2(qx, payloads)
        nonce = next((pl for pl in payloads if isinstance(pl, NoncePayload)), None)
        ke = next((pl for pl in payloads if isinstance(pl, KePayload)), None)
        if nonce is None:
            raise QuickFail("PAYLOAD-MALFORMED")
        gxy = None
        if suite.pfs_group is not None:
            if ke is None or qx.dh is None:
                raise QuickFail("INVALID-KEY-INFORMATION")
            try:
                gxy = crypto.dh_group(suite.pfs_group).shared_secret(qx.dh, ke.data)
            except crypto.CryptoError:
                raise QuickFail("INVALID-KEY-INFORMATION") from None
        sa = next(pl for pl in payloads if isinstance(pl, SaPayload))
        spi_out = int.from_bytes(sa.proposals[0].spi, "big")
        if spi_out < RESERVED_SPIS:
            raise QuickFail("reserved SPI")
        qx.suite, qx.nr_b, qx.gxy, qx.iv, qx.dh = suite, nonce.data, gxy, next_iv, None
        qx.spi_out = spi_out
        h3 = crypto.qm_hash3(p1.suite.hash, p1.keys.skeyid_a, qx.msgid, qx.ni_b, qx.nr_b)
        self._send_quick(qx, [HashPayload(h3)], now, expect_reply=False)
        qx.forget_at = now + self.config.timer.interval * (self.config.timer.counter + 1)
        if hdr.flags & Flag.COMMIT:  # the responder will confirm with CONNECTED
            qx.connected_wait = True
            qx.forget_at = None
            qx.flight.resend_at = now + self.config.timer.interval
            qx.flight.resends_left = self.config.timer.counter
            return True  # wait in I_QM4
        self._install(qx, now)
        return False

    def _accept_phase2(self: Engine, qx: QuickExchange, payloads: list) -> Phase2Suite:
        """Initiator: the responder's SA must pick one of our transforms, and echo our IDs."""
        assert qx.sainfo is not None
        sa = next((pl for pl in payloads if isinstance(pl, SaPayload)), None)
        if sa is None or len(sa.proposals) != 1 or len(sa.proposals[0].transforms) != 1:
            raise QuickFail("BAD-PROPOSAL-SYNTAX")
        prop = sa.proposals[0]
        suite = parse_phase2_transform(prop.transforms[0])
        ours = qx.sainfo
        if (suite is None or prop.protocol != Proto.ESP or len(prop.spi) != 4
                or (suite.encryption, suite.key_bits) not in [
                    (e, default_bits(e, b)) for e, b in ours.encryption]
                or suite.authentication not in ours.authentication
                or suite.pfs_group != ours.pfs_group
                or suite.encap != self._encap(qx.p1, qx.mode)):
            raise QuickFail("NO-PROPOSAL-CHOSEN")
        ids = [pl for pl in payloads if isinstance(pl, IdPayload)]
        if ids and (qx.id_ci is None or ids != [qx.id_ci, qx.id_cr]):
            raise QuickFail("INVALID-ID-INFORMATION")
        lifetime = shorter_lifetime(suite.lifetime_s, ours.lifetime_s)
        for pl in payloads:
            if isinstance(pl, NotifyPayload) and pl.msg_type == Notify.RESPONDER_LIFETIME:
                seconds, _ = parse_lifetime_attrs(decode_attributes(pl.data))
                # RFC 2407 §4.6.3.1: honour the responder's
                lifetime = shorter_lifetime(seconds, lifetime)
        return Phase2Suite(suite.encryption, suite.key_bits, suite.authentication,
                           suite.pfs_group, lifetime, suite.lifetime_kb or ours.lifetime_kb,
                           suite.encap)

    def _r_qm3(self: Engine, qx: QuickExchange, hdr: Header, payloads: list, plain: bytes,
               next_iv: bytes, now: float) -> None:
        p1 = qx.p1
        assert p1.suite is not None and p1.keys is not None
        self._check_hash(p1, payloads, crypto.qm_hash3(p1.suite.hash, p1.keys.skeyid_a,
                                                       qx.msgid, qx.ni_b, qx.nr_b))
        qx.iv = next_iv
        qx.flight.datagrams = []
        qx.forget_at = now + self.config.timer.interval * (self.config.timer.counter + 1)
        if qx.connected_wait or hdr.flags & Flag.COMMIT:
            spi = qx.spi_in.to_bytes(4, "big")
            notify = NotifyPayload(Notify.CONNECTED, Proto.ESP, spi)
            _, tail = encode_payloads([notify])
            h = crypto.info_hash(p1.suite.hash, p1.keys.skeyid_a, qx.msgid, tail)
            self._send_quick(qx, [HashPayload(h), notify], now, expect_reply=False,
                             flags=Flag.COMMIT)
        self._install(qx, now)

    def _i_qm4(self: Engine, qx: QuickExchange, hdr: Header, payloads: list, plain: bytes,
               next_iv: bytes, now: float) -> None:
        p1 = qx.p1
        assert p1.suite is not None and p1.keys is not None
        tail = chain_after_first(plain, len(payloads))
        self._check_hash(p1, payloads,
                         crypto.info_hash(p1.suite.hash, p1.keys.skeyid_a, qx.msgid, tail))
        if not any(isinstance(pl, NotifyPayload) and pl.msg_type == Notify.CONNECTED
                   for pl in payloads):
            raise Drop("unexpected")
        qx.iv = next_iv
        qx.flight.resend_at, qx.flight.datagrams = None, []
        qx.forget_at = now + self.config.timer.interval * (self.config.timer.counter + 1)
        self._install(qx, now)

    def _fail_quick(self: Engine, qx: QuickExchange, fail: QuickFail) -> None:
        self._remove_quick(qx)
        if fail.notify is not None and qx.p1.established:
            spi = qx.spi_in.to_bytes(4, "big")
            self._send_info(qx.p1, [NotifyPayload(fail.notify, Proto.ESP, spi)])
        self._fail(qx.p1.peer, 2, fail.reason)

    # --- install ---------------------------------------------------------------------

    def _esp_keys(self: Engine, qx: QuickExchange, spi: int, src: str, dst: str) -> EspKeys:
        """KEYMAT of one direction (RFC 2409 §5.5): both nonces, the SPI and, with PFS, g^xy."""
        p1, suite = qx.p1, qx.suite
        assert p1.suite is not None and p1.keys is not None and suite is not None
        enc, auth = crypto.esp_keys(p1.suite.hash, p1.keys.skeyid_d, spi, qx.ni_b, qx.nr_b,
                                    suite.enc_alg, suite.enc_key_len, suite.auth_alg, qx.gxy)
        return EspKeys(spi, src, dst, suite.enc_alg, enc, suite.auth_alg, auth)

    def _selectors(self: Engine, qx: QuickExchange) -> tuple[TrafficSelector, TrafficSelector]:
        """(local, remote) the pair carries: the IDs, or without IDs the two IKE addresses."""
        p1 = qx.p1
        return (qx.local_sel or address_selector(p1.local[0]),
                qx.remote_sel or address_selector(p1.peer[0]))

    def _encapsulation(self: Engine, p1: Phase1SA) -> tuple[str, tuple[int, int] | None]:
        """ESP in UDP (RFC 3948) once a NAT is detected, with (our port, the peer's)."""
        if self._nat_detected(p1):
            return "udp", (p1.local[1], p1.peer[1])
        return "none", None

    def _inbound_ready(self: Engine, qx: QuickExchange) -> None:
        """Responder, message 2 sent: the inbound SA goes live now. HASH(1) proved message 1
        under the ISAKMP SA, and its KEYMAT needs nothing message 3 brings; the initiator
        sends under the pair as soon as it has sent message 3, which can be handled here
        after its first packets arrive. The outbound SA waits for HASH(3)."""
        p1, suite = qx.p1, qx.suite
        assert suite is not None
        local_sel, remote_sel = self._selectors(qx)
        qx.early_inbound = self._esp_keys(qx, qx.spi_in, p1.peer[0], p1.local[0])
        _, ports = self._encapsulation(p1)
        self._emit(InboundReady(p1.peer, qx.early_inbound, suite.mode, suite.lifetime_s,
                                suite.lifetime_kb,
                                (selector_tuple(local_sel), selector_tuple(remote_sel)), ports,
                                qx.generated_policy))

    def _install(self: Engine, qx: QuickExchange, now: float) -> None:
        """KEYMAT per direction (RFC 2409 §5.5) and the Phase2Up event; a responder's inbound
        SA is the one live since message 2."""
        p1, suite = qx.p1, qx.suite
        assert p1.suite is not None and p1.keys is not None and suite is not None
        local_sel, remote_sel = self._selectors(qx)
        inbound = qx.early_inbound or self._esp_keys(qx, qx.spi_in, p1.peer[0], p1.local[0])
        outbound = self._esp_keys(qx, qx.spi_out, p1.local[0], p1.peer[0])
        qx.gxy = qx.early_inbound = None  # the pair has taken the early SA: no withdrawal
        rekey_of = qx.rekey_of
        if rekey_of is None and not qx.initiator:
            # the peer renews a pair it began; a pair we began is a collision, not a rekey
            rekey_of = next((sa.spi_in for sa in self._peer_p2(p1.peer[0])
                             if not sa.replaced
                             and not sa.initiator
                             and (sa.local_sel, sa.remote_sel, sa.suite.mode)
                             == (local_sel, remote_sel, suite.mode)), None)
        old = self._p2.get(rekey_of) if rekey_of is not None else None
        if old is not None:
            old.replaced = True
        life = suite.lifetime_s
        self._spis_pending.discard(qx.spi_in)
        self._add_p2(Phase2SA(p1.local, p1.peer, qx.spi_in, qx.spi_out, suite, local_sel,
                              remote_sel, qx.initiator, now, p1.icookie,
                              now + SOFT_FRACTION * life, now + life,
                              ids=(qx.local_sel, qx.remote_sel), owner=p1))
        p1.phase2_count += 1
        encap, ports = self._encapsulation(p1)
        self._emit(Phase2Up(p1.peer, p1.local, inbound, outbound, suite.mode, encap, ports,
                            life, suite.lifetime_kb, selector_tuple(local_sel),
                            selector_tuple(remote_sel), suite.pfs_group, qx.initiator,
                            rekey_of, qx.generated_policy))
        if qx.initiator and qx.rekey_of is not None and old is not None:
            self._delete_p2(old, now, "rekeyed", notify_peer=True)

    def _quick_timers(self: Engine, qx: QuickExchange, now: float) -> None:
        if qx.forget_at is not None and now >= qx.forget_at:
            self._remove_quick(qx)
            return
        # racoon `timer { phase2 }` (wait_ph2complete): the longest a quick mode may take,
        # counted from its start on either side, whatever resends are left
        limit = self.config.timer.phase2_timeout
        over = qx.forget_at is None and limit > 0 and now >= qx.created + limit
        if over:
            self.counters["timeouts"] += 1
        if over or self._flight_due(qx.flight, now):
            self._remove_quick(qx)
            self._fail(qx.p1.peer, 2, "timeout")
            self._retry_rekey(qx.rekey_of, now)

    def _acquire_timers(self: Engine, peer_address: str, now: float) -> None:
        """racoon `timer { phase1 }` (retry_checkph1): how long an acquire waits for phase 1.

        The acquire is dropped; the phase-1 exchange itself goes on under its own resends.
        """
        limit = self.config.timer.phase1_timeout
        pending = self._acquires.get(peer_address)
        if limit <= 0 or not pending:
            return
        late = [entry for entry in pending if now >= entry[-1] + limit]
        if not late:
            return
        left = [e for e in pending if e not in late]
        if left:
            self._acquires[peer_address] = left
        else:
            del self._acquires[peer_address]
        remote = self._remote_for(peer_address)
        port = remote.port if remote else self.config.isakmp_port
        for *_, rekey_of, _since in late:
            self._fail((peer_address, port), 2, "timeout waiting for phase 1")
            self._retry_rekey(rekey_of, now)

    def _retry_rekey(self: Engine, rekey_of: int | None, now: float) -> None:
        """A failed renewal: the old pair tries again before its hard expiry."""
        old = self._p2.get(rekey_of) if rekey_of is not None else None
        if old is not None:
            old.rekeying = False
            old.soft_at = now + self.config.timer.interval
            self._schedule(old)
