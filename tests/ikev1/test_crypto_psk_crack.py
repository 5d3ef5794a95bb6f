"""HASH_R cross-checked with ike-scan's psk-crack, an independent RFC 2409 implementation.

psk-crack takes g_xr:g_xi:cky_r:cky_i:sai_b:idir_b:ni_b:nr_b:hash_r (ike-scan --pskcrack format)
and finds the pre-shared key in a dictionary by recomputing SKEYID and HASH_R.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ikev1 import crypto

pytestmark = pytest.mark.skipif(shutil.which("psk-crack") is None, reason="ike-scan not installed")

SA_B = bytes.fromhex(
    "00000001000000010000002c01010001000000240101000080010007800e0080800200028004000280030001800b0001800c7080"
)
ID_R_B = bytes.fromhex("010000000a00030a")


def _crack(tmp_path: Path, hash_name: str, psk: bytes, words: list[str]) -> str:
    gxi, gxr = os.urandom(128), os.urandom(128)
    cky_i, cky_r = os.urandom(8), os.urandom(8)
    ni, nr = os.urandom(16), os.urandom(20)
    skeyid = crypto.skeyid_psk(hash_name, psk, ni, nr)
    hash_r = crypto.hash_r(hash_name, skeyid, gxi, gxr, cky_i, cky_r, SA_B, ID_R_B)
    fields = (gxr, gxi, cky_r, cky_i, SA_B, ID_R_B, ni, nr, hash_r)
    params = tmp_path / "params"
    params.write_text(":".join(f.hex() for f in fields) + "\n")
    dictionary = tmp_path / "words"
    dictionary.write_text("\n".join(words) + "\n")
    done = subprocess.run(
        ["psk-crack", "-d", str(dictionary), str(params)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    return done.stdout


@pytest.mark.parametrize("hash_name", ["md5", "sha1"])
def test_psk_crack_finds_our_key(tmp_path: Path, hash_name: str) -> None:
    out = _crack(tmp_path, hash_name, b"gre-tunnel-secret", ["alpha", "gre-tunnel-secret", "omega"])
    assert 'key "gre-tunnel-secret" matches' in out, out


def test_psk_crack_finds_nothing_for_another_key(tmp_path: Path) -> None:
    out = _crack(tmp_path, "sha1", b"not-in-the-list", ["alpha", "gre-tunnel-secret", "omega"])
    assert "matches" not in out and "no match found" in out, out
