"""The IKE <-> forwarding pipe, and the `show-sa isakmp` table."""

from forward.specs import SaSpec
from ikev1.events import EspKeys
from pyike import pipe
from pyike.show import format_isakmp, phase1_json


def test_pipe_keeps_message_boundaries_and_objects():
    a, b = pipe.make_pipe()
    keys = EspKeys(0x1234, "198.18.0.1", "198.18.0.2", "aes-cbc", b"k" * 16, "hmac-sha1", b"a" * 20)
    pipe.send(a, "install", SaSpec(keys, "out", 3600, 0))
    pipe.send(a, "remove", 0x1234, "out")
    assert pipe.recv(b) == ("install", SaSpec(keys, "out", 3600, 0))
    assert pipe.recv(b) == ("remove", 0x1234, "out")
    a.close()
    assert pipe.recv(b) is None


def test_isakmp_table_row():
    entry = {"src": "198.18.0.1", "src_port": 500, "dst": "198.18.0.2", "dst_port": 500,
             "icookie": "a3e1b8ebf4926cc6", "rcookie": "0cc6ac95c4f8141e",
             "state": "established", "racoon_state": 9,
             "side": "responder", "exchange": "main", "created": 100.0, "established": 101.0,
             "expires": None, "phase2": 1}
    rows = phase1_json([entry], mono_now=110.0, wall_now=1_000_010.0)
    assert rows[0]["created"] == 1_000_000.0 and rows[0]["established"] == 1_000_001.0
    text = format_isakmp(rows, 2)
    header, row = text.splitlines()
    assert header.startswith("Source") and header.endswith("Phase2")
    fields = row.split()
    assert fields[:3] == ["198.18.0.1.500", "198.18.0.2.500",
                          "a3e1b8ebf4926cc6:0cc6ac95c4f8141e"]
    assert fields[3:7] == ["9", "R", "10", "M"] and fields[-1] == "1"
    entry.update(state="I_MM3", racoon_state=7, side="initiator")
    fields = format_isakmp(phase1_json([entry], 110.0, 1_000_010.0), 2).splitlines()[1].split()
    assert fields[3:5] == ["7", "I"]


def test_an_sa_spec_never_shows_its_keys():
    keys = EspKeys(0x1234, "198.18.0.1", "198.18.0.2", "aes-cbc", bytes(range(16)), "hmac-sha1",
                   bytes(range(100, 120)))
    text = repr(SaSpec(keys, "out", 3600, 0)) + str(SaSpec(keys, "in"))
    assert "out" in text and "3600" in text
    for secret in (keys.enc_key, keys.auth_key):
        assert secret.hex() not in text and repr(secret)[2:-1] not in text
