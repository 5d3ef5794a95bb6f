"""NAT traversal (RFC 3947, and the drafts racoon also speaks): vendor IDs, NAT-D, the float to
UDP 4500, UDP-encapsulated ESP modes (RFC 3948) and keepalives."""

from __future__ import annotations

import ipaddress
import struct
from typing import TYPE_CHECKING

from . import crypto, vendor
from .codec import NatDPayload, NatOaPayload, VendorIdPayload
from .constants import Encap, IdType, Payload
from .sa import Address, Phase1SA

if TYPE_CHECKING:
    from .engine import Engine

KEEPALIVE = b"\xff"  # RFC 3948 §2.3: a one-octet NAT-keepalive packet
_DRAFT_02N = vendor.NATT_DRAFTS["draft-ietf-ipsec-nat-t-ike-02\\n"]


def natd_hash(hash_name: str, icookie: bytes, rcookie: bytes, addr: Address) -> bytes:
    """HASH = HASH(CKY-I | CKY-R | IP | Port)  (RFC 3947 §3.2)."""
    ip = ipaddress.ip_address(addr[0]).packed
    return crypto.digest(hash_name, icookie + rcookie + ip + struct.pack("!H", addr[1]))


class NattMixin:
    def _natt_enabled(self: Engine, p1: Phase1SA) -> bool:
        return p1.remote.nat_traversal in ("on", "force")

    def _natt_vendor_payloads(self: Engine, p1: Phase1SA) -> list:
        """Initiator: offer RFC 3947 and a draft; responder: answer with the one agreed."""
        if not self._natt_enabled(p1):
            return []
        if p1.initiator and p1.natt is None:
            return [VendorIdPayload(vendor.NATT_RFC3947), VendorIdPayload(_DRAFT_02N)]
        if p1.natt == "rfc":
            return [VendorIdPayload(vendor.NATT_RFC3947)]
        if p1.natt == "draft":
            return [VendorIdPayload(_DRAFT_02N)]
        return []

    def _note_natt(self: Engine, p1: Phase1SA, payloads: list) -> None:
        if not self._natt_enabled(p1) or p1.natt is not None:
            return
        kinds = {vendor.is_natt(pl.data) for pl in payloads if isinstance(pl, VendorIdPayload)}
        p1.natt = "rfc" if "rfc" in kinds else "draft" if "draft" in kinds else None

    def _natd_payloads(self: Engine, p1: Phase1SA) -> list:
        """NAT-D of the peer's address, then of ours (RFC 3947 §3.2)."""
        if p1.natt is None or p1.suite is None:
            return []
        ptype = Payload.NAT_D if p1.natt == "rfc" else Payload.NAT_D_DRAFT
        h = p1.suite.hash
        mine = p1.local
        if p1.remote.nat_traversal == "force":  # a source hash that can match nothing
            mine = ("0.0.0.0", 0) if ":" not in p1.local[0] else ("::", 0)
        return [NatDPayload(natd_hash(h, p1.icookie, p1.rcookie, p1.peer), ptype),
                NatDPayload(natd_hash(h, p1.icookie, p1.rcookie, mine), ptype)]

    def _check_natd(self: Engine, p1: Phase1SA, payloads: list, local: Address,
                    peer: Address) -> None:
        """Which side is behind a NAT, from the peer's NAT-D payloads (RFC 3947 §3.2)."""
        if p1.natt is None or p1.suite is None:
            return
        natd = [pl.data for pl in payloads if isinstance(pl, NatDPayload)]
        if len(natd) < 2:
            return
        h = p1.suite.hash
        p1.nat_local = natd[0] != natd_hash(h, p1.icookie, p1.rcookie, local)
        p1.nat_peer = natd_hash(h, p1.icookie, p1.rcookie, peer) not in natd[1:]
        if p1.remote.nat_traversal == "force":
            p1.nat_local = True

    def _nat_detected(self: Engine, p1: Phase1SA) -> bool:
        return p1.natt is not None and (p1.nat_local or p1.nat_peer)

    def _float(self: Engine, p1: Phase1SA, now: float) -> None:
        """RFC 3947 §4: the initiator moves to port 4500 once a NAT is seen."""
        port = self.config.natt_port
        p1.local = (p1.local[0], port)
        p1.peer = (p1.peer[0], port)
        p1.flight.local, p1.flight.peer = p1.local, p1.peer
        self._arm_keepalive(p1, now)

    def _arm_keepalive(self: Engine, p1: Phase1SA, now: float) -> None:
        if p1.nat_local and self.config.timer.natt_keepalive > 0:
            p1.keepalive_at = now + self.config.timer.natt_keepalive

    def _keepalive_timer(self: Engine, p1: Phase1SA, now: float) -> None:
        if p1.keepalive_at is not None and now >= p1.keepalive_at:
            self._out.append((KEEPALIVE, p1.local, p1.peer))  # no non-ESP marker (RFC 3948)
            p1.keepalive_at = now + self.config.timer.natt_keepalive

    def _encap(self: Engine, p1: Phase1SA, mode: str) -> int:
        """The encapsulation mode attribute quick mode proposes and takes for `mode` (RFC 2407
        §4.5; under a NAT RFC 3947 §5's UDP modes, or the drafts' numbers)."""
        tunnel = mode == "tunnel"
        if not self._nat_detected(p1):
            return Encap.TUNNEL if tunnel else Encap.TRANSPORT
        if p1.natt == "rfc":
            return Encap.UDP_TUNNEL if tunnel else Encap.UDP_TRANSPORT
        return Encap.UDP_TUNNEL_DRAFT if tunnel else Encap.UDP_TRANSPORT_DRAFT

    def _nat_oa_payloads(self: Engine, p1: Phase1SA, initiator: bool, mode: str) -> list:
        """NAT-OAi then NAT-OAr, the addresses each side sees (RFC 3947 §5.2, as racoon): in
        transport mode only, where the checksums of the inner packet need them."""
        if not self._nat_detected(p1) or mode != "transport":
            return []
        ptype = Payload.NAT_OA if p1.natt == "rfc" else Payload.NAT_OA_DRAFT
        pair = (p1.local[0], p1.peer[0]) if initiator else (p1.peer[0], p1.local[0])
        out = []
        for addr in pair:
            ip = ipaddress.ip_address(addr)
            kind = IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR
            out.append(NatOaPayload(kind, ip.packed, ptype))
        return out
