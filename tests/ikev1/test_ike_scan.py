"""ike-scan against a pyike responder: main mode and aggressive mode answers, and psk-crack (an
independent RFC 2409 implementation) recovering the pre-shared key from pyike's aggressive-mode
HASH_R."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.ikev1.peer_host import PEER_ADDR, PYIKE_ADDR, HostPair, host_pair

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

PSK = "scan-me-if-you-can"
PEER_ID = "client@pyike.test"
AES128_SHA1_PSK_G14 = "7/128,2,1,14"  # ike-scan --trans: enc/keylen, hash, auth, group


@pytest.fixture
def pair():
    with host_pair("k", "ike-scan") as hosts:
        yield hosts


def _responder(pair: HostPair, modes: list[str], **proposal) -> subprocess.Popen:
    spec = {
        "local": PYIKE_ADDR,
        "peer": PEER_ADDR,
        "psk": PSK,
        "psk_ids": [PEER_ID],
        "role": "responder",
        "exchange_mode": modes,
        "dh_group": 14,
        "until": ["never"],
        "timeout": 10,
        **proposal,
    }
    path = pair.tmp / "responder.json"
    path.write_text(json.dumps(spec))
    proc = pair.start_driver(path)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    return proc


def _ike_scan(pair: HostPair, *args: str) -> str:
    done = pair.run_in(pair.ns["peer"], "ike-scan", "--sport=500", "--retry=2",
                       "--timeout=1500", *args, PYIKE_ADDR, check=False, timeout=30)
    return done.stdout + done.stderr


def test_main_mode_answer(pair: HostPair) -> None:
    driver = _responder(pair, ["main"])
    out = _ike_scan(pair, "-M", f"--trans={AES128_SHA1_PSK_G14}")
    pair.stop(driver)
    assert f"{PYIKE_ADDR}\tMain Mode Handshake returned" in out, out
    assert "Enc=AES" in out and "KeyLength=128" in out and "Hash=SHA1" in out, out
    assert "Group=14:modp2048" in out and "Auth=PSK" in out, out
    assert "Dead Peer Detection" in out, out  # pyike announces DPD (RFC 3706)


def test_main_mode_default_transforms_meet_a_3des_proposal(pair: HostPair) -> None:
    """ike-scan's default offer (DES/3DES x MD5/SHA1 x MODP 768/1024, PSK) against a classic
    racoon phase 1 (3des, sha1, modp1024): pyike picks that one transform out of eight."""
    driver = _responder(pair, ["main"], encryption="3des", key_length=None, hash="sha1",
                        dh_group=2)
    out = _ike_scan(pair, "-M")
    pair.stop(driver)
    assert f"{PYIKE_ADDR}\tMain Mode Handshake returned" in out, out
    assert "Enc=3DES Hash=SHA1 Auth=PSK Group=2:modp1024" in out, out


def test_main_mode_no_proposal_chosen(pair: HostPair) -> None:
    driver = _responder(pair, ["main"])
    out = _ike_scan(pair, "-M", "--trans=1,1,1,1")  # DES, MD5, PSK, MODP 768: not offered
    pair.stop(driver)
    assert "Handshake returned" not in out, out
    assert "NO-PROPOSAL-CHOSEN" in out, out


@pytest.mark.parametrize("hash_name,trans", [("sha1", AES128_SHA1_PSK_G14),
                                             ("md5", "7/128,1,1,14")])
def test_aggressive_mode_answer_and_psk_crack(pair: HostPair, tmp_path: Path, hash_name: str,
                                              trans: str) -> None:
    driver = _responder(pair, ["aggressive", "main"], hash=hash_name)
    crack_params = tmp_path / "psk-params"
    out = _ike_scan(pair, "-A", f"--trans={trans}", "--dhgroup=14",
                    f"--id={PEER_ID}", f"--pskcrack={crack_params}")
    pair.stop(driver)
    assert f"{PYIKE_ADDR}\tAggressive Mode Handshake returned" in out, out
    assert "Group=14:modp2048" in out, out
    assert "ID(Type=ID_IPV4_ADDR, Value=198.18.0.2)" in out, out
    words = tmp_path / "words"
    words.write_text(f"password\n{PSK}\nletmein\n")
    cracked = subprocess.run(["psk-crack", "-d", str(words), str(crack_params)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert f'key "{PSK}" matches' in cracked.stdout, cracked.stdout + cracked.stderr
