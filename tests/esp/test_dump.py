"""The SAD dump against a published `setkey -D` of a racoon GRE-over-IPsec pair.

The two SAs are rebuilt with the published SPIs, keys, replay window and lifetimes, carry the
same traffic (packets and bytes), and must print the same text. The published text has its
tabs expanded and trailing blanks trimmed, so the comparison does the same to ours.
"""

from __future__ import annotations

import calendar
import json
import time

from esp.dump import format_sad, hex_groups, sad_json
from esp.sa import EspSA, Lifetime
from esp.sad import SAD

PUBLISHED = """\
1.1.1.1 2.2.2.2
        esp mode=transport spi=94953994(0x05a8e20a) reqid=0(0x00000000)
        E: aes-cbc  b397f602 9caadb49 77ea76e4 a6a81e87
        A: hmac-sha1  9891f0f2 d4d06f94 144522fe d25a9c28 98df40c2
        seq=0x00000000 replay=4 flags=0x00000000 state=mature
        created: Jan 12 21:43:16 2015   current: Jan 13 04:56:41 2015
        diff: 26005(s)  hard: 86400(s)  soft: 69120(s)
        last: Jan 12 21:43:19 2015      hard: 0(s)      soft: 0(s)
        current: 192520(bytes)  hard: 0(bytes)  soft: 0(bytes)
        allocated: 2643 hard: 0 soft: 0
        sadb_seq=1 pid=21309 refcnt=0
2.2.2.2 1.1.1.1
        esp mode=transport spi=44094341(0x02a0d385) reqid=0(0x00000000)
        E: aes-cbc  ef558e0a c133e3be b5453910 77f9564f
        A: hmac-sha1  3afcb4e9 580b181d b0f21c0f fe114037 b3f9e2b4
        seq=0x00000000 replay=4 flags=0x00000000 state=mature
        created: Jan 12 21:43:16 2015   current: Jan 13 04:56:41 2015
        diff: 26005(s)  hard: 86400(s)  soft: 69120(s)
        last: Jan 12 21:43:24 2015      hard: 0(s)      soft: 0(s)
        current: 192296(bytes)  hard: 0(bytes)  soft: 0(bytes)
        allocated: 2642 hard: 0 soft: 0
        sadb_seq=0 pid=21309 refcnt=0
"""

CREATED = calendar.timegm((2015, 1, 12, 21, 43, 16, 0, 0, 0))
NOW = calendar.timegm((2015, 1, 13, 4, 56, 41, 0, 0, 0))
LIFETIME = Lifetime(soft_s=69120, hard_s=86400)


def _sizes(packets: int, total: int) -> list[int]:
    """`packets` payload sizes adding up to `total`."""
    base, extra = divmod(total, packets)
    return [base + 1] * extra + [base] * (packets - extra)


def _published_sad() -> SAD:
    out_keys = (bytes.fromhex("b397f6029caadb4977ea76e4a6a81e87"),
                bytes.fromhex("9891f0f2d4d06f94144522fed25a9c2898df40c2"))
    in_keys = (bytes.fromhex("ef558e0ac133e3beb545391077f9564f"),
               bytes.fromhex("3afcb4e9580b181db0f21c0ffe114037b3f9e2b4"))
    common = {"replay_window": 4, "lifetime": LIFETIME, "now": CREATED}
    out = EspSA(0x05A8E20A, "1.1.1.1", "2.2.2.2", "aes-cbc", out_keys[0], "hmac-sha1",
                out_keys[1], direction="out", **common)
    inbound = EspSA(0x02A0D385, "2.2.2.2", "1.1.1.1", "aes-cbc", in_keys[0], "hmac-sha1",
                    in_keys[1], direction="in", **common)
    peer = EspSA(0x02A0D385, "2.2.2.2", "1.1.1.1", "aes-cbc", in_keys[0], "hmac-sha1",
                 in_keys[1], direction="out", **common)
    for i, size in enumerate(_sizes(2643, 192520)):
        assert isinstance(out.seal(b"g" * size, 47, CREATED + 3 + i), bytes)
    for i, size in enumerate(_sizes(2642, 192296)):
        assert inbound.open(peer.seal(b"g" * size, 47, 0), CREATED + 8 + i)[0] == 47
    sad = SAD()
    sad.add(out)
    sad.add(inbound)
    return sad


def _as_published(text: str) -> str:
    return "".join(line.expandtabs().rstrip() + "\n" for line in text.splitlines())


def test_dump_matches_the_published_setkey_output():
    text = format_sad(_published_sad(), NOW, pid=21309, localtime=time.gmtime)
    assert _as_published(text) == PUBLISHED


def test_dump_keeps_setkeys_tabs_and_trailing_blanks():
    text = format_sad(_published_sad(), NOW, pid=21309, localtime=time.gmtime)
    lines = text.splitlines()
    assert lines[0] == "1.1.1.1 2.2.2.2 "
    assert lines[2] == "\tE: aes-cbc  b397f602 9caadb49 77ea76e4 a6a81e87"
    assert lines[4].endswith("state=mature ")
    assert lines[5].startswith("\tcreated: Jan 12 21:43:16 2015\tcurrent: ")


def test_dump_with_a_monotonic_clock_and_unused_sa():
    sa = EspSA(0x1234, "198.18.0.1", "198.18.0.2", "aes-cbc", bytes(32), "hmac-sha256",
               bytes(range(32)), direction="out", now=1000.0)
    sad = SAD()
    sad.add(sa)
    # The SA clock reads 1500 when the wall clock reads NOW: created 500 s before NOW.
    text = format_sad(sad, NOW, now=1500.0, pid=1, localtime=time.gmtime)
    lines = text.splitlines()
    assert lines[5].startswith("\tcreated: Jan 13 04:48:21 2015\t")
    assert lines[6].startswith("\tdiff: 500(s)\thard: 0(s)")
    assert lines[7] == "\tlast: " + " " * 20 + "\thard: 0(s)\tsoft: 0(s)"
    # A 32-byte key fills exactly one setkey line.
    assert lines[3] == "\tA: hmac-sha256  00010203 04050607 08090a0b 0c0d0e0f 10111213 14151617 " \
        "18191a1b 1c1d1e1f"


def test_hex_groups_wrap_every_32_bytes():
    assert hex_groups(bytes(range(4))) == " 00010203"
    assert hex_groups(bytes(36)).split("\n") == [" 00000000" * 8, " 00000000"]
    assert hex_groups(bytes(6)) == " 00000000 0000"


def test_json_dump():
    sad = _published_sad()
    entries = sad_json(sad, NOW)
    assert json.loads(json.dumps(entries)) == entries
    out, inbound = entries
    assert out["src"] == "1.1.1.1" and out["dst"] == "2.2.2.2"
    assert out["spi"] == 94953994
    assert out["mode"] == "transport"
    assert out["enc"] == {"alg": "aes-cbc", "key": "b397f6029caadb4977ea76e4a6a81e87"}
    assert out["auth"]["key"] == "9891f0f2d4d06f94144522fed25a9c2898df40c2"
    assert out["auth"]["icv_bits"] == 96
    assert out["replay_window"] == 4
    assert out["seq"]["sent"] == 2643
    assert inbound["seq"]["highest_received"] == 2642
    assert out["counters"]["bytes"] == 192520 and out["counters"]["packets"] == 2643
    assert out["created"] == CREATED and out["current"] == NOW
    assert out["first_used"] == CREATED + 3
    assert out["lifetime"] == {"soft_s": 69120, "hard_s": 86400, "soft_bytes": 0, "hard_bytes": 0}
    assert out["state"] == "mature"


def test_empty_sad_dump_says_so_like_setkey():
    assert format_sad(SAD(), NOW) == "No SAD entries.\n"
    assert sad_json(SAD(), NOW) == []
