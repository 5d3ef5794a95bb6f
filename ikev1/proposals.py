"""Building and choosing SA proposals the way racoon does (phase 1 and quick mode).

The initiator lists its transforms in configuration order; the responder walks the peer's
proposals in order and takes the first one it can accept, with `proposal_check` deciding how
lifetimes, key lengths and PFS groups may differ (racoon.conf(5)).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import AttrValue, Proposal, SaPayload, Transform, attribute_int
from .constants import (
    AUTH_PSK,
    KEY_IKE,
    LIFE_KILOBYTES,
    LIFE_SECONDS,
    Encap,
    EspTransform,
    P1Attr,
    P1Enc,
    P1Hash,
    P2Attr,
    P2Auth,
    Proto,
)
from .crypto import ESP_AUTH_KEY_LENGTHS, SUPPORTED_GROUPS
from .policy import Phase1Proposal, Phase2Policy, RemotePolicy

DEFAULT_LIFETIME_S = 28800  # RFC 2407 §4.5 / RFC 2409 App. A: default when none is sent

P1_ENC = {"aes": P1Enc.AES, "3des": P1Enc.TRIPLE_DES}
P1_HASH = {"md5": P1Hash.MD5, "sha1": P1Hash.SHA1, "sha256": P1Hash.SHA256,
           "sha384": P1Hash.SHA384, "sha512": P1Hash.SHA512}
ESP_ENC = {"aes": EspTransform.AES, "3des": EspTransform.TRIPLE_DES}
# racoon keyword -> (RFC 2407 §4.5 auth algorithm, events.EspKeys auth_alg name)
ESP_AUTH = {"hmac_md5": (P2Auth.HMAC_MD5, "hmac-md5"),
            "hmac_sha1": (P2Auth.HMAC_SHA1, "hmac-sha1"),
            "hmac_sha256": (P2Auth.HMAC_SHA256, "hmac-sha256"),
            "hmac_sha384": (P2Auth.HMAC_SHA384, "hmac-sha384"),
            "hmac_sha512": (P2Auth.HMAC_SHA512, "hmac-sha512")}
ESP_ENC_NAME = {"aes": "aes-cbc", "3des": "3des-cbc"}


def default_bits(enc: str, bits: int | None) -> int | None:
    return (bits or 128) if enc == "aes" else None


def _life_pairs(attributes: tuple[tuple[int, AttrValue], ...], type_attr: int, dur_attr: int,
                default: int = DEFAULT_LIFETIME_S) -> tuple[int, int | None]:
    """(seconds, kilobytes) of life type/duration pairs; seconds 0 is "no limit of the peer's"
    (see shorter_lifetime), and a kilobyte duration of 0 no byte limit at all."""
    seconds, kbytes, pending = default, None, None
    for kind, value in attributes:
        if kind == type_attr:
            pending = attribute_int(value)
        elif kind == dur_attr and pending is not None:
            if pending == LIFE_SECONDS:
                seconds = attribute_int(value)
            elif pending == LIFE_KILOBYTES:
                kbytes = attribute_int(value) or None
            pending = None
    return seconds, kbytes


def shorter_lifetime(peer: int, ours: int) -> int:
    """The shorter of two lifetimes in seconds, where 0 sets no limit.

    strongSwan announces a life duration of 0 for a connection that never rekeys; taken as
    0 seconds it would expire the SA at once. racoon refuses such a transform ("invalid life
    duration", ipsec-tools ipsec_doi.c); pyike accepts it and keeps its own lifetime.
    """
    if not peer or not ours:
        return peer or ours
    return min(peer, ours)


def _key_bits(enc: str, value: AttrValue | None) -> int | None:
    """The key length attribute checked for the cipher: None for 3DES, -1 when unusable."""
    if enc != "aes":
        return None if value is None else -1
    bits = 128 if value is None else attribute_int(value)  # RFC 3602 §5.1: 128 by default
    return bits if bits in (128, 192, 256) else -1


# --- phase 1 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase1Suite:
    encryption: str  # "aes" | "3des"
    key_bits: int | None
    hash: str
    dh_group: int
    lifetime_s: int

    @property
    def label(self) -> str:
        return f"aes-{self.key_bits}" if self.encryption == "aes" else self.encryption


def _p1_transform(number: int, p: Phase1Proposal) -> Transform:
    # RFC 2409 App. A attribute classes, in racoon's order
    attrs: list[tuple[int, AttrValue]] = [(P1Attr.ENCRYPTION, P1_ENC[p.encryption])]
    bits = default_bits(p.encryption, p.key_length)
    if bits is not None:
        attrs.append((P1Attr.KEY_LENGTH, bits))
    attrs += [(P1Attr.HASH, P1_HASH[p.hash]), (P1Attr.AUTH_METHOD, AUTH_PSK),
              (P1Attr.GROUP_DESC, p.dh_group), (P1Attr.LIFE_TYPE, LIFE_SECONDS),
              (P1Attr.LIFE_DURATION, p.lifetime_s)]
    return Transform(number, KEY_IKE, tuple(attrs))


def psk_proposals(remote: RemotePolicy) -> tuple[Phase1Proposal, ...]:
    """The `proposal { }` blocks pyike can do: pre-shared keys only."""
    return tuple(p for p in remote.proposals if p.auth_method == "pre_shared_key")


def phase1_sa(remote: RemotePolicy) -> SaPayload:
    """One ISAKMP proposal with a transform per `proposal { }` block, in config order."""
    transforms = tuple(_p1_transform(i + 1, p) for i, p in enumerate(psk_proposals(remote)))
    return SaPayload((Proposal(1, Proto.ISAKMP, b"", transforms),))


def parse_phase1_transform(tr: Transform) -> Phase1Suite | None:
    """The suite a phase-1 transform describes, or None if pyike cannot do it."""
    a = tr.attrs()
    enc = {v: k for k, v in P1_ENC.items()}.get(a.get(P1Attr.ENCRYPTION))
    hsh = {v: k for k, v in P1_HASH.items()}.get(a.get(P1Attr.HASH))
    if tr.transform_id != KEY_IKE or enc is None or hsh is None:
        return None
    if a.get(P1Attr.AUTH_METHOD) != AUTH_PSK or P1Attr.PRF in a:
        return None
    group = a.get(P1Attr.GROUP_DESC)
    if not isinstance(group, int) or P1Attr.GROUP_TYPE in a:
        return None  # RFC 2409 §4: private groups are not supported
    bits = _key_bits(enc, a.get(P1Attr.KEY_LENGTH))
    if bits == -1:
        return None
    seconds, _ = _life_pairs(tr.attributes, P1Attr.LIFE_TYPE, P1Attr.LIFE_DURATION)
    return Phase1Suite(enc, bits, hsh, group, seconds)


def _lifetime_ok(check: str, peer: int, ours: int) -> int | None:
    """The lifetime to use under proposal_check, or None to reject (racoon.conf(5))."""
    if peer == 0:
        return ours  # the peer sets no limit (shorter_lifetime)
    if check == "obey":
        return peer
    if check == "exact":
        return peer if peer == ours else None
    if peer <= ours:
        return peer
    return ours if check == "claim" else None


def _key_length_ok(check: str, peer: int | None, ours: int | None) -> bool:
    """racoon's cmpsatrns: strict/claim refuse a shorter key than ours, exact any other."""
    if peer is None or ours is None or check == "obey":
        return peer == ours or check == "obey"
    return peer == ours if check == "exact" else peer >= ours


def select_phase1(sa: SaPayload, remote: RemotePolicy
                  ) -> tuple[Proposal, Phase1Suite] | None:
    """Responder choice: the first peer transform matching one of our proposals."""
    for prop in sa.proposals:
        if prop.protocol != Proto.ISAKMP:
            continue
        for tr in prop.transforms:
            suite = parse_phase1_transform(tr)
            if suite is None:
                continue
            for mine in psk_proposals(remote):
                check = remote.proposal_check
                if ((mine.encryption, mine.hash, mine.dh_group)
                        != (suite.encryption, suite.hash, suite.dh_group)
                        or not _key_length_ok(check, suite.key_bits,
                                              default_bits(mine.encryption, mine.key_length))):
                    continue
                # racoon's checkisakmpsa: in phase 1 claim refuses a longer lifetime like strict
                life = _lifetime_ok("strict" if check == "claim" else check, suite.lifetime_s,
                                    mine.lifetime_s)
                if life is None:
                    continue
                chosen = Phase1Suite(suite.encryption, suite.key_bits, suite.hash,
                                     suite.dh_group, life)
                return Proposal(prop.number, prop.protocol, prop.spi, (tr,)), chosen
    return None


# --- phase 2 (quick mode) -----------------------------------------------------------------


@dataclass(frozen=True)
class Phase2Suite:
    encryption: str  # racoon keyword "aes" | "3des"
    key_bits: int | None
    authentication: str  # racoon keyword "hmac_sha1" ...
    pfs_group: int | None
    lifetime_s: int
    lifetime_kb: int | None
    encap: int  # RFC 2407 §4.5 encapsulation mode

    @property
    def enc_alg(self) -> str:
        return ESP_ENC_NAME[self.encryption]

    @property
    def auth_alg(self) -> str:
        return ESP_AUTH[self.authentication][1]

    @property
    def enc_key_len(self) -> int:
        return (self.key_bits or 128) // 8 if self.encryption == "aes" else 24

    @property
    def auth_key_len(self) -> int:
        return ESP_AUTH_KEY_LENGTHS[self.auth_alg]

    @property
    def mode(self) -> str:
        return "tunnel" if self.encap in (Encap.TUNNEL, Encap.UDP_TUNNEL,
                                          Encap.UDP_TUNNEL_DRAFT) else "transport"


def phase2_proposals(sainfo: Phase2Policy, spi: bytes, encap: int = Encap.TRANSPORT
                     ) -> tuple[Proposal, ...]:
    """One ESP proposal, a transform per encryption × authentication pair in config order."""
    transforms = []
    for enc, bits in sainfo.encryption:
        for auth in sainfo.authentication:
            if enc not in ESP_ENC or auth not in ESP_AUTH:
                continue
            # RFC 2407 §4.5 attributes, racoon's order
            attrs: list[tuple[int, AttrValue]] = [(P2Attr.LIFE_TYPE, LIFE_SECONDS),
                                                  (P2Attr.LIFE_DURATION, sainfo.lifetime_s)]
            if sainfo.lifetime_kb:
                attrs += [(P2Attr.LIFE_TYPE, LIFE_KILOBYTES),
                          (P2Attr.LIFE_DURATION, sainfo.lifetime_kb)]
            if sainfo.pfs_group:
                attrs.append((P2Attr.GROUP_DESC, sainfo.pfs_group))
            attrs += [(P2Attr.ENCAPSULATION, encap), (P2Attr.AUTH_ALG, ESP_AUTH[auth][0])]
            if enc == "aes":
                attrs.append((P2Attr.KEY_LENGTH, bits or 128))
            transforms.append(Transform(len(transforms) + 1, ESP_ENC[enc], tuple(attrs)))
    return (Proposal(1, Proto.ESP, spi, tuple(transforms)),)


def parse_phase2_transform(tr: Transform) -> Phase2Suite | None:
    a = tr.attrs()
    enc = {v: k for k, v in ESP_ENC.items()}.get(tr.transform_id)
    auth = {v[0]: k for k, v in ESP_AUTH.items()}.get(a.get(P2Attr.AUTH_ALG))
    if enc is None or auth is None or P2Attr.KEY_ROUNDS in a:
        return None
    bits = _key_bits(enc, a.get(P2Attr.KEY_LENGTH))
    if bits == -1:
        return None
    group = a.get(P2Attr.GROUP_DESC)
    # RFC 2407 §4.5 leaves the default to the implementation; racoon takes transport
    encap = a.get(P2Attr.ENCAPSULATION, Encap.TRANSPORT)
    if not isinstance(encap, int) or encap not in Encap._value2member_map_:
        return None
    seconds, kbytes = _life_pairs(tr.attributes, P2Attr.LIFE_TYPE, P2Attr.LIFE_DURATION)
    return Phase2Suite(enc, bits, auth, group if isinstance(group, int) else None, seconds,
                       kbytes, encap)


@dataclass(frozen=True)
class Phase2Choice:
    proposal: Proposal  # the peer's proposal cut down to the chosen transform
    suite: Phase2Suite
    responder_lifetime: int | None  # seconds to announce with RESPONDER-LIFETIME (claim)


def select_phase2(proposals: tuple[Proposal, ...], sainfo: Phase2Policy, check: str,
                  encaps: tuple[int, ...]) -> Phase2Choice | None:
    """Responder choice over the peer's ESP proposals, in order; `encaps` the modes we take."""
    ours = [(enc, default_bits(enc, bits), auth) for enc, bits in sainfo.encryption
            for auth in sainfo.authentication]
    numbers = [p.number for p in proposals]
    for prop in proposals:
        if prop.protocol != Proto.ESP or numbers.count(prop.number) != 1 or len(prop.spi) != 4:
            continue  # only single-protocol ESP bundles (no AH/IPComp pairs)
        for tr in prop.transforms:
            s = parse_phase2_transform(tr)
            if s is None or s.encap not in encaps or not any(
                    (enc, auth) == (s.encryption, s.authentication)
                    and _key_length_ok(check, s.key_bits, bits) for enc, bits, auth in ours):
                continue
            if check == "exact" and s.pfs_group != sainfo.pfs_group:
                continue
            if s.pfs_group is not None and s.pfs_group not in SUPPORTED_GROUPS:
                continue  # obeyed, a group we cannot compute would fail after the choice
            if sainfo.pfs_group and check != "obey" and s.pfs_group != sainfo.pfs_group:
                continue
            life = _lifetime_ok(check, s.lifetime_s, sainfo.lifetime_s)
            if life is None:
                continue
            announce = life if life != s.lifetime_s else None
            suite = Phase2Suite(s.encryption, s.key_bits, s.authentication, s.pfs_group, life,
                                s.lifetime_kb, s.encap)
            return Phase2Choice(Proposal(prop.number, prop.protocol, prop.spi, (tr,)), suite,
                                announce)
    return None


def responder_lifetime_attrs(seconds: int) -> tuple[tuple[int, AttrValue], ...]:
    """RFC 2407 §4.6.3.1: the notify data is a list of life type/duration attributes."""
    return ((P2Attr.LIFE_TYPE, LIFE_SECONDS), (P2Attr.LIFE_DURATION, seconds))


def parse_lifetime_attrs(attrs: tuple[tuple[int, AttrValue], ...]) -> tuple[int, int | None]:
    """RESPONDER-LIFETIME data: (seconds, kilobytes); seconds 0 when it names none."""
    return _life_pairs(attrs, P2Attr.LIFE_TYPE, P2Attr.LIFE_DURATION, default=0)
