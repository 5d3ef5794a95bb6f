"""`tunnel_device "NAME" [{ mtu N; }]`: the TUN device of ESP tunnel mode, at most once."""

from __future__ import annotations

import dataclasses

import pytest

import pyike.config
from pyike.config import TunnelDevice
from pyike.config.parser import MTU_MAX, MTU_MIN

GRE = 'gre "{name}" {{ local 198.18.0.1; remote 198.18.0.2; address 10.1.1.1 peer 10.1.1.2; }}\n'


def _check(write, text: str) -> tuple[pyike.config.DaemonConfig | None, list]:
    root = write({"racoon.conf": text})
    return pyike.config.load_all(str(root / "racoon.conf"))


@pytest.mark.parametrize(("text", "device"), [
    ('tunnel_device "tun1";\n', TunnelDevice("tun1", None)),
    ('tunnel_device "lan-gw.0" {\n\tmtu 1400;\n}\n', TunnelDevice("lan-gw.0", 1400)),
    (f'tunnel_device "tun1" {{ mtu {MTU_MIN}; }}\n', TunnelDevice("tun1", MTU_MIN)),
    (f'tunnel_device "tun1" {{ mtu {MTU_MAX}; }}\n', TunnelDevice("tun1", MTU_MAX)),
    ('tunnel_device "tun1" { }\n' + GRE.format(name="tun0"), TunnelDevice("tun1", None)),
])
def test_the_statement_gives_a_frozen_tunnel_device(write, text, device):
    config, errors = _check(write, text)
    assert errors == []
    assert config.tunnel_device == device
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tunnel_device.mtu = 1300  # type: ignore[misc]


def test_without_the_statement_there_is_none(write):
    config, errors = _check(write, GRE.format(name="tun0"))
    assert errors == [] and config.tunnel_device is None


@pytest.mark.parametrize(("text", "line", "keyword", "words"), [
    ('tunnel_device "tun1";\n\ntunnel_device "tun2" { mtu 1400; }\n', 3, "tunnel_device",
     "tunnel_device is defined twice (first at {conf}:1)"),
    ('tunnel_device "tun/1";\n', 1, "tunnel_device", '"tun/1" is not a valid interface name'),
    ('tunnel_device "a-name-longer-than-15";\n', 1, "tunnel_device", "valid interface name"),
    ("tunnel_device tun1;\n", 1, "tun1", 'the TUN device name in quotes (e.g. "tun0")'),
    ('tunnel_device "tun1" {\n\tmtu 67;\n}\n', 2, "67",
     f"the MTU 67 is out of range {MTU_MIN}..{MTU_MAX}"),
    (f'tunnel_device "tun1" {{ mtu {MTU_MAX + 1}; }}\n', 1, str(MTU_MAX + 1), "out of range"),
    ('tunnel_device "tun1" {\n\tkey 7;\n}\n', 2, "key",
     'unknown keyword "key" in the tunnel_device block'),
    ('tunnel_device "tun1"\nlog debug;\n', 2, "log", 'to end the "tunnel_device" statement'),
    (GRE.format(name="tun1") + 'tunnel_device "tun1";\n', 2, "tunnel_device",
     'tunnel_device "tun1": a gre block names the same device'),
    ('tunnel_device "tun1";\n' + GRE.format(name="tun1"), 1, "tunnel_device",
     "a gre block names the same device"),
])
def test_mistakes_name_file_line_and_keyword(write, text, line, keyword, words):
    config, errors = _check(write, text)
    conf = errors[0].file if errors else ""
    assert config is None
    assert [(e.line, e.keyword) for e in errors] == [(line, keyword)], errors
    assert words.format(conf=conf) in errors[0].message


def test_gre_keeps_the_same_name_and_mtu_rules(write):
    """One reader of names and MTUs for both devices: gre refuses what tunnel_device does."""
    bad_mtu = GRE.format(name="tun0").replace("; }", f"; mtu {MTU_MIN - 1}; }}")
    _, errors = _check(write, bad_mtu + GRE.format(name="tun/0"))
    assert [e.keyword for e in errors] == [str(MTU_MIN - 1), "gre"]
    assert f"out of range {MTU_MIN}..{MTU_MAX}" in errors[0].message
    assert '"tun/0" is not a valid interface name' in errors[1].message


def test_a_tunnel_policy_without_the_device_is_an_error_at_the_policy(write):
    setkey = ("spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec esp/transport//require;\n"
              "spdadd 10.0.1.0/24 10.0.3.0/24 any -P out "
              "ipsec esp/tunnel/198.18.0.1-198.18.0.2/require;\n")
    root = write({"racoon.conf": 'setkey "setkey.conf";\n', "setkey.conf": setkey})
    config, errors = pyike.config.load_all(str(root / "racoon.conf"))
    assert config is None and len(errors) == 1
    assert errors[0].where == f"{root / 'setkey.conf'}:2:1" and "tunnel_device" in str(errors[0])
    root = write({"racoon.conf": 'setkey "setkey.conf";\ntunnel_device "tun1";\n',
                  "setkey.conf": setkey})
    assert pyike.config.load_all(str(root / "racoon.conf"))[1] == []
