"""scapy's ESP implementation as an independent oracle, in both directions (transport mode)."""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, AuthAlgo, SecurityAssociation
from scapy.layers.l2 import GRE
from scapy.packet import Raw

from esp.sa import EspDrop, EspSA
from tests.esp.helpers import DST, SRC, sa_pair

# Our algorithm name -> how scapy names it. scapy has no 96-bit HMAC-SHA-256; build one.
SCAPY_AUTH = {
    "hmac-sha1": "HMAC-SHA1-96",
    "hmac-sha256": "SHA2-256-128",
    "hmac-md5": "HMAC-MD5-96",
    "hmac-sha384": "SHA2-384-192",  # RFC 4868 §2.3
    "hmac-sha512": "SHA2-512-256",
    "hmac-sha256-96": AuthAlgo("HMAC-SHA256-96", mac=HMAC, digestmod=hashes.SHA256, icv_size=12),
}

CASES = [
    (16, "hmac-sha1"),
    (32, "hmac-sha1"),
    (16, "hmac-sha256"),
    (32, "hmac-sha256"),
    (24, "hmac-sha1"),
    (16, "hmac-sha256-96"),
    (16, "hmac-md5"),
    (16, "hmac-sha384"),
    (32, "hmac-sha512"),
]


def scapy_sa(sa, seq_num: int = 1) -> SecurityAssociation:
    auth = SCAPY_AUTH[sa.auth_alg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssa = SecurityAssociation(
            ESP, spi=sa.spi, seq_num=seq_num, crypt_key=sa.enc_key,
            crypt_algo="3DES" if sa.enc_alg == "3des-cbc" else "AES-CBC",
            auth_algo=auth if isinstance(auth, str) else "HMAC-SHA1-96", auth_key=sa.auth_key,
        )
    if not isinstance(auth, str):
        ssa.auth_algo = auth
    return ssa


def gre_payload(size: int) -> bytes:
    """A GRE packet carrying an inner ICMP echo, padded to about `size` bytes."""
    inner = IP(src="10.1.1.1", dst="10.1.1.2") / ICMP() / Raw(b"x" * max(0, size - 32))
    return bytes(GRE(proto=0x0800) / inner)


@pytest.mark.parametrize(("key_size", "auth_alg"), CASES)
@pytest.mark.parametrize("size", [1, 15, 16, 64, 511, 1400])
def test_scapy_opens_what_we_seal(key_size, auth_alg, size):
    out, _ = sa_pair(key_size, auth_alg)
    oracle = scapy_sa(out)
    payload = gre_payload(size)
    for _ in range(3):  # several packets: the persistent CBC state must not leak between them
        sealed = out.seal(payload, 47, 0.0)
        assert isinstance(sealed, bytes)
        wire = IP(bytes(IP(src=SRC, dst=DST, proto=50) / Raw(sealed)))
        opened = oracle.decrypt(wire)  # raises on an ICV or format mismatch
        assert opened.proto == 47
        assert bytes(opened.payload) == payload


@pytest.mark.parametrize(("key_size", "auth_alg"), CASES)
@pytest.mark.parametrize("size", [1, 64, 1400])
def test_we_open_what_scapy_seals(key_size, auth_alg, size):
    _, inbound = sa_pair(key_size, auth_alg)
    oracle = scapy_sa(inbound)
    payload = gre_payload(size)
    for seq in range(1, 4):
        sealed = oracle.encrypt(IP(src=SRC, dst=DST, proto=47) / Raw(payload))
        assert sealed[ESP].seq == seq
        result = inbound.open(bytes(sealed[ESP]), 0.0)
        assert result == (47, payload)
    assert inbound.counters.packets == 3
    assert inbound.counters.bytes == 3 * len(payload)


def test_scapy_replay_is_caught():
    _, inbound = sa_pair()
    oracle = scapy_sa(inbound)
    sealed = bytes(oracle.encrypt(IP(src=SRC, dst=DST, proto=47) / Raw(b"abc"))[ESP])
    assert inbound.open(sealed, 0.0) == (47, b"abc")
    assert inbound.open(sealed, 0.0) is EspDrop.REPLAYED
    assert inbound.counters.replay_drops == 1


def test_scapy_tampered_is_icv_failure():
    _, inbound = sa_pair(32, "hmac-sha256")
    oracle = scapy_sa(inbound)
    sealed = bytearray(bytes(oracle.encrypt(IP(src=SRC, dst=DST, proto=47) / Raw(b"a" * 40))[ESP]))
    sealed[20] ^= 0x01
    assert inbound.open(bytes(sealed), 0.0) is EspDrop.ICV_FAILURE


def test_ipv6_outer_both_directions():
    keys = (bytes(range(16)), bytes(range(20)))
    args = (0x5000, "2001:db8::1", "2001:db8::2", "aes-cbc", keys[0], "hmac-sha1", keys[1])
    out, inbound = EspSA(*args, direction="out"), EspSA(*args, direction="in")
    oracle = scapy_sa(out)
    payload = gre_payload(100)
    sealed = out.seal(payload, 47, 0.0)
    wire = IPv6(bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", nh=50) / Raw(sealed)))
    opened = oracle.decrypt(wire)
    assert opened.nh == 47 and bytes(opened.payload) == payload
    theirs = scapy_sa(out, seq_num=7).encrypt(
        IPv6(src="2001:db8::1", dst="2001:db8::2", nh=47) / Raw(payload))
    assert inbound.open(bytes(theirs[ESP]), 0.0) == (47, payload)


def test_3des_both_directions():
    out, inbound = sa_pair(24, "hmac-md5", enc_alg="3des-cbc")
    payload = gre_payload(200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scapy's 3DES goes through a deprecated path
        oracle = scapy_sa(out)
        sealed = out.seal(payload, 47, 0.0)
        opened = oracle.decrypt(IP(bytes(IP(src=SRC, dst=DST, proto=50) / Raw(sealed))))
        assert bytes(opened.payload) == payload
        theirs = scapy_sa(out, seq_num=9).encrypt(IP(src=SRC, dst=DST, proto=47) / Raw(payload))
    assert inbound.open(bytes(theirs[ESP]), 0.0) == (47, payload)
