"""Aggressive mode with pre-shared keys (RFC 2409 §5): three messages, identities in the clear.

Initiator: HDR, SA, KE, Ni, IDii / responder: HDR, SA, KE, Nr, IDir, HASH_R / initiator:
HDR, HASH_I. The pre-shared key can be found by the initiator's identifier (racoon's rule).
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
    SaPayload,
    encode_message,
)
from .constants import Exchange, Flag, Notify
from .ids import identity_payload, psk_name
from .phase1 import Fail, required
from .sa import Drop, Phase1SA

if TYPE_CHECKING:
    from .engine import Engine


class AggressiveMixin:
    def _r_am1(self: Engine, p1: Phase1SA, payloads: list, reply_sa: SaPayload) -> list:
        assert p1.suite is not None
        ke, nonce = required(payloads, KePayload, "KE"), required(payloads, NoncePayload, "nonce")
        p1.id_peer = required(payloads, IdPayload, "ID")
        p1.dh, p1.gxr = crypto.dh_group(p1.suite.dh_group).generate(self._rng)
        p1.nr_b = self._rng(p1.remote.nonce_size)
        self._derive(p1, ke.data, nonce.data, self._psk(p1, psk_name(p1.id_peer)))
        p1.id_local = identity_payload(p1.remote.my_identifier, p1.local[0])
        auth = self._auth_hash(p1, initiator=False, id_b=p1.id_local.encode_body())
        return [reply_sa, KePayload(p1.gxr), NoncePayload(p1.nr_b), p1.id_local,
                HashPayload(auth), *self._vendor_payloads(p1), *self._natd_payloads(p1)]

    def _i_am2(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> list:
        payloads = self._plain_payloads(hdr, data)
        suite = self._accept_chosen(p1, payloads)
        ke, nonce = required(payloads, KePayload, "KE"), required(payloads, NoncePayload, "nonce")
        peer_id = required(payloads, IdPayload, "ID")
        if suite.dh_group != (p1.dh.group if p1.dh else None):
            raise Fail("NO-PROPOSAL-CHOSEN", Notify.NO_PROPOSAL_CHOSEN)
        p1.rcookie, p1.suite = hdr.rcookie, suite
        self._derive(p1, ke.data, nonce.data, self._psk(p1, psk_name(peer_id)))
        # a wrong HASH_R is dropped and the keys derived from this message are undone with it
        # (_receive_phase1), so a forged message 2 cannot end the exchange
        p1.id_peer = self._check_peer_auth(p1, payloads)
        self._note_vendor_ids(p1, payloads)
        self._check_natd(p1, payloads, p1.local, p1.peer)
        auth = self._auth_hash(p1, initiator=True, id_b=p1.id_local.encode_body())
        if self._nat_detected(p1):  # RFC 3947 §4: aggressive mode floats with message 3
            self._float(p1, now)
        am3 = [HashPayload(auth), *self._natd_payloads(p1)]  # hashes of the floated ports
        out = Header(p1.icookie, p1.rcookie, 0, Exchange.AGGRESSIVE, 0, 0)
        self._send(p1.flight, [encode_message(out, am3)], now, under=p1, expect_reply=False)
        return []  # message 2 came in clear: nothing in it but the HASH is the peer's word

    def _r_am3(self: Engine, p1: Phase1SA, hdr: Header, data: bytes, now: float) -> list:
        iv = p1.iv
        encrypted = bool(hdr.flags & Flag.ENCRYPTION)
        if encrypted:  # some peers encrypt the third message
            payloads, iv = self._decrypt_auth(p1, hdr, data)
        else:
            payloads = self._plain_payloads(hdr, data)
        assert p1.id_peer is not None
        received = required(payloads, HashPayload, "HASH")
        expected = self._auth_hash(p1, initiator=True, id_b=p1.id_peer.encode_body())
        if not hmac.compare_digest(received.data, expected):
            raise Drop("hash_mismatch")  # dropped, the exchange goes on (see _decrypt_auth)
        self._check_peer_identity(p1, p1.id_peer)
        self._check_natd(p1, payloads, p1.local, p1.peer)
        p1.iv = iv
        p1.flight.datagrams = []
        return payloads if encrypted else []
