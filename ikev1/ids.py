"""Identification payloads: phase-1 identities and quick-mode client IDs (RFC 2407 §4.6.2)."""

from __future__ import annotations

import ipaddress

from .codec import IdPayload
from .constants import IdType
from .policy import Identity, Phase2Policy, TrafficSelector

_PHASE1_PROTO, _PHASE1_PORT = 17, 500  # RFC 2407 §4.6.2: UDP/500 allowed in phase 1
_TEXT_TYPES = {"fqdn": IdType.FQDN, "user_fqdn": IdType.USER_FQDN, "keyid": IdType.KEY_ID}


def identity_payload(identity: Identity | None, local_address: str) -> IdPayload:
    """Our phase-1 ID: `my_identifier`, or our IP address when none is configured."""
    if identity is None or identity.kind == "address":
        addr = ipaddress.ip_address(identity.value if identity else local_address)
        kind = IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR
        return IdPayload(kind, _PHASE1_PROTO, _PHASE1_PORT, addr.packed)
    return IdPayload(_TEXT_TYPES[identity.kind], _PHASE1_PROTO, _PHASE1_PORT,
                     identity.value.encode())


def identity_text(pl: IdPayload) -> str:
    """A printable form of a phase-1 ID (addresses as text, names as they are)."""
    if pl.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR) and len(pl.data) in (4, 16):
        return str(ipaddress.ip_address(pl.data))
    if pl.id_type in (IdType.FQDN, IdType.USER_FQDN, IdType.KEY_ID):
        return pl.data.decode("utf-8", "replace")
    return pl.data.hex()


def psk_name(pl: IdPayload) -> str | None:
    """The psk.txt name an aggressive-mode ID looks its key up by, or None.

    racoon looks the key up by the ID's own bytes (getpskbyname), so only name IDs (FQDN,
    USER_FQDN, KEY_ID) can match a psk.txt line; an address ID never does, and the key is the
    source address's. Matching an address ID's text would let the holder of one peer's key
    authenticate from another peer's address."""
    if pl.id_type in (IdType.FQDN, IdType.USER_FQDN, IdType.KEY_ID):
        return pl.data.decode("utf-8", "replace")
    return None


def identity_matches(pl: IdPayload, identity: Identity) -> bool:
    """`verify_identifier`: does the peer's ID equal its configured `peers_identifier`?"""
    expected = identity_payload(identity, identity.value if identity.kind == "address" else "")
    return (pl.id_type, pl.data) == (expected.id_type, expected.data)


def selector_payload(sel: TrafficSelector) -> IdPayload:
    """A quick-mode client ID: a single address or a subnet (RFC 2407 §4.6.2.1)."""
    net = sel.network
    v4 = net.version == 4
    if net.prefixlen == net.max_prefixlen:
        kind = IdType.IPV4_ADDR if v4 else IdType.IPV6_ADDR
        return IdPayload(kind, sel.protocol, sel.port, net.network_address.packed)
    kind = IdType.IPV4_ADDR_SUBNET if v4 else IdType.IPV6_ADDR_SUBNET
    return IdPayload(kind, sel.protocol, sel.port,
                     net.network_address.packed + net.netmask.packed)


def payload_selector(pl: IdPayload) -> TrafficSelector | None:
    """The selector a client ID stands for, or None for types pyike does not take."""
    try:
        if pl.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            net = ipaddress.ip_network(ipaddress.ip_address(pl.data))
        elif pl.id_type == IdType.IPV4_ADDR_SUBNET and len(pl.data) == 8:
            net = ipaddress.ip_network((pl.data[:4], str(ipaddress.ip_address(pl.data[4:]))))
        elif pl.id_type == IdType.IPV6_ADDR_SUBNET and len(pl.data) == 32:
            mask = ipaddress.ip_address(pl.data[16:])
            net = ipaddress.ip_network((pl.data[:16], bin(int(mask)).count("1")))
        else:
            return None
    except ValueError:
        return None
    return TrafficSelector(net, pl.protocol, pl.port)


def address_selector(address: str) -> TrafficSelector:
    """The implied selector when quick mode carries no IDs: the IKE address, any protocol."""
    return TrafficSelector(ipaddress.ip_network(address))


def selector_tuple(sel: TrafficSelector) -> tuple[str, int, int]:
    return (str(sel.network), sel.protocol, sel.port)


def find_sainfo(sainfos: tuple[Phase2Policy, ...], local: TrafficSelector,
                remote: TrafficSelector, peer_identity: str | None) -> Phase2Policy | None:
    """racoon's sainfo lookup: an exact ID match first, then `sainfo anonymous`."""
    anonymous = None
    for s in sainfos:
        if s.peer_identity is not None and s.peer_identity.value != peer_identity:
            continue
        if s.local_id is None and s.remote_id is None:
            anonymous = anonymous or s
        elif s.local_id == local and s.remote_id == remote:
            return s
    return anonymous
