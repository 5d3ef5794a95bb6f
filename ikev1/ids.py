"""Identification payloads: phase-1 identities and quick-mode client IDs (RFC 2407 §4.6.2),
and the client IDs matched against the sainfos and the SPD's policies as racoon matches them."""

from __future__ import annotations

import ipaddress

from .codec import IdPayload
from .constants import IdType
from .policy import Identity, Phase2Policy, Phase2Route, TrafficSelector

_PHASE1_PROTO, _PHASE1_PORT = 17, 500  # RFC 2407 §4.6.2: UDP/500 allowed in phase 1
_TEXT_TYPES = {"fqdn": IdType.FQDN, "user_fqdn": IdType.USER_FQDN, "keyid": IdType.KEY_ID}
# RFC 2407 §4.6.2.1: the address length of each client ID type pyike takes
_ADDRESS_LEN = {IdType.IPV4_ADDR: 4, IdType.IPV4_ADDR_SUBNET: 4, IdType.IPV4_ADDR_RANGE: 4,
                IdType.IPV6_ADDR: 16, IdType.IPV6_ADDR_SUBNET: 16, IdType.IPV6_ADDR_RANGE: 16}
_SINGLE = (IdType.IPV4_ADDR, IdType.IPV6_ADDR)
_RANGES = (IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE)


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
    if pl.id_type in _SINGLE and len(pl.data) == _ADDRESS_LEN[pl.id_type]:
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


def _prefix_len(mask: bytes) -> int | None:
    """The prefix length of a contiguous netmask, None for any other mask."""
    bits = len(mask) * 8
    value = int.from_bytes(mask, "big")
    ones = bits - (~value & ((1 << bits) - 1)).bit_length()
    return ones if value == ((1 << bits) - 1) ^ ((1 << (bits - ones)) - 1) else None


def payload_selector(pl: IdPayload) -> TrafficSelector | None:
    """The selector a client ID stands for, or None for one pyike does not take.

    An address, a subnet (its mask contiguous, no host bits set), or a range that is exactly one
    CIDR block, taken as that block. racoon looks its SPD up by the phase-1 addresses when an ID
    is a range (get_proposal_r) and never by the range itself; pyike refuses a range that is no
    block rather than negotiate for other addresses than the peer named."""
    alen = _ADDRESS_LEN.get(pl.id_type)
    if alen is None or len(pl.data) != (alen if pl.id_type in _SINGLE else 2 * alen):
        return None
    first = ipaddress.ip_address(pl.data[:alen])
    try:
        if pl.id_type in _SINGLE:
            net = ipaddress.ip_network(first)
        elif pl.id_type in _RANGES:
            last = ipaddress.ip_address(pl.data[alen:])
            net = next(ipaddress.summarize_address_range(first, last))  # ValueError: first > last
            if net.broadcast_address != last:
                return None
        else:
            prefix = _prefix_len(pl.data[alen:])
            if prefix is None:
                return None
            net = ipaddress.ip_network((first, prefix))  # ValueError: host bits set
    except ValueError:
        return None
    return TrafficSelector(net, pl.protocol, pl.port)


def address_selector(address: str) -> TrafficSelector:
    """The implied selector when quick mode carries no IDs: the IKE address, any protocol."""
    return TrafficSelector(ipaddress.ip_network(address))


def selector_tuple(sel: TrafficSelector) -> tuple[str, int, int]:
    return (str(sel.network), sel.protocol, sel.port)


def _sainfo_weight(s: Phase2Policy) -> int:
    """racoon's prisainfo(): a `from` ID weighs 3, each side that is not anonymous 1."""
    return 3 * (s.peer_identity is not None) + (s.local_id is not None) + (s.remote_id is not None)


def _side_takes(side: TrafficSelector | None, sel: TrafficSelector) -> bool:
    """racoon's ipsecdoi_chkcmpids(): anonymous takes any ID; otherwise the same network (an
    address and its /32 or /128 subnet alike) and the same protocol, 0 matching only `any`.
    racoon compares no ports; pyike lets a sainfo port of `any` take every port and one that
    names a port that port only."""
    if side is None:
        return True
    return (side.network == sel.network and side.protocol == sel.protocol
            and side.port in (0, sel.port))


def find_sainfo(sainfos: tuple[Phase2Policy, ...], local: TrafficSelector,
                remote: TrafficSelector, peer_identity: str | None) -> Phase2Policy | None:
    """racoon's getsainfo(): the sainfos heaviest first (file order among equals, as racoon's
    inssainfo() keeps them), the first whose `from` ID and both sides take the IDs."""
    for s in sorted(sainfos, key=_sainfo_weight, reverse=True):  # sorted() is stable
        if s.peer_identity is not None and s.peer_identity.value != peer_identity:
            continue
        if _side_takes(s.local_id, local) and _side_takes(s.remote_id, remote):
            return s
    return None


def _within(sel: TrafficSelector, policy: TrafficSelector) -> bool:
    """A client ID no wider than a policy's selector: inside its network, its protocol (any
    only where the policy says any) and its port. racoon's cmpspidxwild() masks the ID's
    address with the policy's prefix and lets an `any` port on either side match, so an ID
    wider than the policy passes there; here it does not."""
    net, pnet = sel.network, policy.network
    return (net.version == pnet.version and net.subnet_of(pnet)
            and policy.protocol in (0, sel.protocol) and policy.port in (0, sel.port))


def _same_address(configured: str | None, actual: str) -> bool:
    return configured is None or ipaddress.ip_address(configured) == ipaddress.ip_address(actual)


def find_route(routes: tuple[Phase2Route, ...], mode: str, local: TrafficSelector,
               remote: TrafficSelector, local_end: str, remote_end: str) -> Phase2Route | None:
    """The first policy of `mode` that covers a peer's quick mode (racoon's getsp_r() on the
    responder): our ID inside its local selector, the peer's inside its remote one, and its
    tunnel's ends, where it names them, the ISAKMP SA's addresses (a policy towards one
    gateway is no other peer's to use)."""
    for route in routes:
        if (route.mode == mode and _within(local, route.local) and _within(remote, route.remote)
                and _same_address(route.local_end, local_end)
                and _same_address(route.remote_end, remote_end)):
            return route
    return None
