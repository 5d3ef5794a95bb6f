"""The default TUN MTU: the largest inner packet whose GRE+ESP packet fits the outer MTU, for
every ESP algorithm pair, measured by sealing a full-size inner packet."""

import itertools

import pytest

import gre
from esp.algorithms import AUTHS, CIPHERS
from esp.sa import EspSA
from pyike.tun import inner_mtu

PAIRS = list(itertools.product(CIPHERS, AUTHS))
OUTER = [1500, 1400, 1280, 9000]


def sealed_lengths(enc: str, auth: str, inner_len: int, key: int | None, ipv6: bool = False
                   ) -> list[int]:
    """The outer packet lengths (IP header included) of one full-size inner packet: one, or
    two for an algorithm that sends both ICV lengths until the peer answers (esp.sa)."""
    src, dst = ("2001:db8::1", "2001:db8::2") if ipv6 else ("198.18.0.1", "198.18.0.2")
    sa = EspSA(0x1000, src, dst, enc, bytes(CIPHERS[enc].key_sizes[0]), auth,
               bytes(AUTHS[auth].key_size), direction="out")
    inner = bytes([0x60 if ipv6 else 0x45]) + bytes(inner_len - 1)
    packet = sa.seal(gre.encap(inner, key=key), gre.IPPROTO_GRE, 0.0)
    header = 40 if ipv6 else 20
    return [header + len(p) for p in (packet, sa.alternate) if p is not None]


@pytest.mark.parametrize(("enc", "auth"), PAIRS)
@pytest.mark.parametrize("outer", OUTER)
@pytest.mark.parametrize("key", [None, 7])
def test_each_pairs_mtu_is_the_largest_that_fits(enc, auth, outer, key):
    mtu = inner_mtu(outer, gre_key=key is not None, enc_alg=enc, auth_alg=auth)
    assert max(sealed_lengths(enc, auth, mtu, key)) <= outer
    assert max(sealed_lengths(enc, auth, mtu + 1, key)) > outer


@pytest.mark.parametrize("outer", OUTER)
@pytest.mark.parametrize("key", [None, 7])
@pytest.mark.parametrize("ipv6", [False, True])
def test_the_default_fits_every_pair(outer, key, ipv6):
    mtu = inner_mtu(outer, ipv6=ipv6, gre_key=key is not None)
    for enc, auth in PAIRS:
        assert max(sealed_lengths(enc, auth, mtu, key, ipv6)) <= outer, (enc, auth)
    # and it is no smaller than the tightest pair needs
    assert any(max(sealed_lengths(enc, auth, mtu + 1, key, ipv6)) > outer for enc, auth in PAIRS)


def test_hmac_sha256_on_a_1400_byte_link():
    """The 128-bit ICV of RFC 4868 takes 4 bytes more than HMAC-SHA1-96: 1338 made 1404-byte
    outer packets; a negotiated hmac-sha256 may settle on 96 bits, but sends 128 first."""
    mtu = inner_mtu(1400)
    assert mtu < 1338
    assert max(sealed_lengths("aes-cbc", "hmac-sha256", mtu, None)) <= 1400
    assert sealed_lengths("aes-cbc", "hmac-sha256", 1338, None)[0] == 1404


def test_seed_like_value():
    # the worst pair: AES-CBC's 16-byte IV and HMAC-SHA-512's 32-byte ICV (RFC 4868 §2.3):
    # 1500 - IP 20 - ESP 8 - IV 16 - ICV 32 = 1424 of ciphertext - 2 trailer - 4 GRE
    assert inner_mtu(1500) == 1418
    # the seed article's pair alone: HMAC-SHA1-96's 12-byte ICV
    assert inner_mtu(1500, enc_alg="aes-cbc", auth_alg="hmac-sha1") == 1434
