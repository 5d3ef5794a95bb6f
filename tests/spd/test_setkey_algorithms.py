"""setkey.conf as racoon sites write it: the algorithms setkey takes for hand-keyed SAs that
pyike's ESP does, and the statements it refuses with their position."""

from __future__ import annotations

import pytest

from pyike.sadb import setkey_state
from spd.parse import SetkeyError, parse_setkey

A, B = "198.18.0.1", "198.18.0.2"


def _sa(enc: str, enc_key: str, auth: str, auth_key: str) -> str:
    return f"add {A} {B} esp 0x1000 -E {enc} 0x{enc_key} -A {auth} 0x{auth_key};\n"


@pytest.mark.parametrize(("auth", "key_bytes", "icv"), [
    ("hmac-sha384", 48, 24), ("hmac-sha2-384", 48, 24),
    ("hmac-sha512", 64, 32), ("hmac-sha2-512", 64, 32)])
def test_sha2_384_512_hand_keyed_sas_seal_and_open(auth, key_bytes, icv):
    text = _sa("aes-cbc", "11" * 16, auth, "22" * key_bytes)
    out_file = parse_setkey(text, "out.conf")
    (sa_out,) = setkey_state([out_file], [A], 0.0)[1]
    (sa_in,) = setkey_state([out_file], [], 0.0)[1]  # the peer's view: the same SA, inbound
    assert sa_out.auth_alg == auth.replace("sha2-", "sha") and sa_out.icv_size == icv
    packet = sa_out.seal(b"through", 47, 0.0)
    assert sa_in.open(packet, 0.0) == (47, b"through")


@pytest.mark.parametrize("key_bytes", [20, 28, 36])
def test_aes_ctr_takes_key_and_nonce(key_bytes):
    text = _sa("aes-ctr", "33" * key_bytes, "hmac-sha1", "44" * 20)
    (sa_out,) = setkey_state([parse_setkey(text, "s.conf")], [A], 0.0)[1]
    (sa_in,) = setkey_state([parse_setkey(text, "s.conf")], [], 0.0)[1]
    assert sa_out.enc_alg == "aes-ctr"
    assert sa_in.open(sa_out.seal(b"x" * 33, 4, 0.0), 0.0) == (4, b"x" * 33)


@pytest.mark.parametrize("key_bytes", [16, 24, 32])
def test_aes_ctr_key_without_its_nonce_is_refused_by_size_only(key_bytes):
    text = _sa("aes-ctr", "33" * key_bytes, "hmac-sha1", "44" * 20)
    with pytest.raises(SetkeyError) as err:
        parse_setkey(text, "s.conf")
    assert err.value.token == f"<{key_bytes * 8}-bit key>" and "160/224/288" in err.value.msg
    assert "33" * 4 not in str(err.value)


def test_tagged_policy_is_refused_at_its_position():
    with pytest.raises(SetkeyError) as err:
        parse_setkey('spdadd tagged "pf-tag" -P out ipsec esp/transport//require;', "s.conf")
    assert (err.value.line, err.value.col, err.value.token) == (1, 8, "tagged")
    assert "pf" in err.value.msg
