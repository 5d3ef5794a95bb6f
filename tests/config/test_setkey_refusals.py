"""setkey.conf rules pyike's data plane cannot carry are refused at load, at their token.

The loader (and so `pyike -t`, the start and a reload) refuses AH, IPComp, bundles and
hand-keyed tunnel-mode SAs with FILE:LINE:COLUMN and the keyword; ESP in transport and in tunnel
mode loads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pyike.config
from pyike.sadb import setkey_state

pytest.importorskip("spd.parse")

REPO = Path(__file__).resolve().parents[2]
AES128 = "0x" + "00112233445566778899aabbccddeeff"
SHA1 = "0x" + "0123456789abcdef0123456789abcdef01234567"
TUNNEL_OUT = ("spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec "
              "esp/tunnel/198.18.0.1-198.18.0.2/require;\n")


def add(spi: str, options: str = "") -> str:
    return (f"add 198.18.0.1 198.18.0.2 esp {spi} {options}-E aes-cbc {AES128} "
            f"-A hmac-sha1 {SHA1};\n")


REFUSED = {
    # name: (setkey.conf text, line, column, keyword, words of the message)
    "AH rule": (
        "spdflush;\nspdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec "
        "ah/tunnel/198.18.0.1-198.18.0.2/require;\n",
        2, 49, "ah", "AH (RFC 4302) is not supported: pyike's data plane carries ESP only"),
    "IPComp rule": (
        TUNNEL_OUT + "spdadd 10.0.2.0/24 10.0.1.0/24 any -P in ipsec\n"
        "    ipcomp/tunnel/198.18.0.2-198.18.0.1/use;\n",
        3, 5, "ipcomp", "IPComp (RFC 3173) is not supported"),
    "bundle": (
        "spdadd 198.18.0.1 198.18.0.2 gre -P out ipsec esp/transport//require "
        "ah/transport//require;\n",
        1, 70, "ah", "a bundle (more than one IPsec rule in a policy) is not supported"),
    "hand-keyed AH": (
        "add 198.18.0.1 198.18.0.2 ah 0x1000 -A hmac-sha1 " + SHA1 + ";\n",
        1, 27, "ah", "hand-keyed AH (RFC 4302) SAs are not supported"),
    "hand-keyed IPComp": (
        "add 198.18.0.1 198.18.0.2 ipcomp 0x1000 -C deflate;\n",
        1, 27, "ipcomp", "hand-keyed IPComp (RFC 3173) SAs are not supported"),
    "hand-keyed tunnel mode": (
        add("0x1000", "-m tunnel "),
        1, 41, "tunnel", "hand-keyed tunnel-mode SAs are not supported"),
    "tunnel ends of two families": (
        "spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec esp/tunnel/198.18.0.1-2001:db8::2/"
        "require;\n",
        1, 60, "198.18.0.1", "the end points are of different address families"),
    "replay window wider than setkey's field": (
        add("0x1000", "-r 1024 "),
        1, 41, "1024", "replay window out of range (at most 255)"),
}


def _site(write, setkey: dict[str, str]) -> Path:
    """A configuration of these setkey files, with the device tunnel-mode policies need."""
    statements = "".join(f'setkey "{name}";\n' for name in setkey) + 'tunnel_device "tun1";\n'
    return write({"racoon.conf": statements, **setkey}) / "racoon.conf"


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_loader_refuses_it_at_its_keyword(write, case):
    text, line, column, keyword, words = REFUSED[case]
    conf = _site(write, {"setkey.conf": text})
    (error,) = pyike.config.check(str(conf))
    assert (Path(error.file).name, error.line, error.column, error.keyword) == (
        "setkey.conf", line, column, keyword), str(error)
    assert words in error.message and error.message.endswith(f" at '{keyword}'")


def test_pyike_t_prints_each_refusal_with_file_line_column_and_exits_1(write):
    files = {f"{i}.conf": text for i, (text, *_) in enumerate(REFUSED.values())}
    conf = _site(write, files)
    out = subprocess.run([sys.executable, "-m", "pyike", "-t", "-f", str(conf)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (1, "")
    expected = [f"{conf.parent / f'{i}.conf'}:{line}:{column}: " for i, (_, line, column, *_)
                in enumerate(REFUSED.values())]
    lines = out.stdout.splitlines()
    assert [x[:len(e)] for x, e in zip(lines, expected, strict=True)] == expected
    for printed, (_, _, _, keyword, words) in zip(lines, REFUSED.values(), strict=True):
        assert words in printed and printed.endswith(f" at '{keyword}'"), printed


def test_esp_transport_and_tunnel_mode_load(write):
    text = (TUNNEL_OUT
            + "spdadd 10.0.2.0/24 10.0.1.0/24 any -P in ipsec "
              "esp/tunnel/198.18.0.2-198.18.0.1/require;\n"
            + "spdadd 198.18.0.1 198.18.0.2 gre -P out ipsec esp/transport//unique:7;\n"
            + add("0x1000", "-m transport ") + add("0x1001", "-m any "))
    conf = _site(write, {"setkey.conf": text})
    assert pyike.config.check(str(conf)) == []


def test_a_hand_keyed_sa_checks_replays_only_with_a_window(write):
    """setkey(8): "If size is zero or not specified, replay checks don't take place", so a
    peer that restarts its hand-keyed SAs at sequence number 1 is still heard."""
    text = add("0x1000") + add("0x1001", "-r 0 ") + add("0x1002", "-r 64 ")
    config = pyike.config.load(str(_site(write, {"setkey.conf": text})))
    _, sas = setkey_state([sf for _, sf in config.setkey], [], 0.0)
    assert [(sa.spi, sa.replay.size) for sa in sas] == [(0x1000, 0), (0x1001, 0), (0x1002, 64)]
