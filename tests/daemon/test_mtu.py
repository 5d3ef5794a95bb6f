"""The default TUN MTU: the largest inner packet whose GRE+ESP packet fits the outer MTU."""

import pytest

import gre
from esp.sa import EspSA
from pyike.tun import inner_mtu

KEY16 = bytes(range(16))
KEY20 = bytes(range(20))


def outer_length(inner_len: int, key: int | None) -> int:
    sa = EspSA(0x1000, "198.18.0.1", "198.18.0.2", "aes-cbc", KEY16, "hmac-sha1", KEY20,
               direction="out")
    inner = bytes([0x45]) + bytes(inner_len - 1)
    return 20 + len(sa.seal(gre.encap(inner, key=key), 47, 0.0))


@pytest.mark.parametrize("outer", [1500, 1400, 1280, 9000])
@pytest.mark.parametrize("key", [None, 7])
def test_inner_mtu_is_the_largest_that_fits(outer, key):
    mtu = inner_mtu(outer, gre_key=key is not None)
    assert outer_length(mtu, key) <= outer
    assert outer_length(mtu + 1, key) > outer


def test_seed_like_value():
    # 1500 - IP 20 - ESP 8 - IV 16 - ICV 12 = 1444 -> 1440 of ciphertext - 2 trailer - 4 GRE
    assert inner_mtu(1500) == 1434
