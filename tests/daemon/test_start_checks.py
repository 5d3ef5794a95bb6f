"""`pyike -t` refuses whatever the start refuses: the setkey files are applied to an empty SPD
and SAD by the forwarding process's own function, with no socket or device opened."""

from __future__ import annotations

import dataclasses
import os

import pytest

from forward.specs import TunnelSpec
from pyike import cli, pipe
from pyike.dataplane import DataPlane
from pyike.sadb import setkey_state
from spd.parse import SetkeyError, parse_setkey

AES = "0x" + "00112233445566778899aabbccddeeff"
SHA1 = "0x" + "0123456789abcdef0123456789abcdef01234567"
LOCAL, REMOTE = "198.18.0.1", "198.18.0.2"
TUNNEL = TunnelSpec("gre0", LOCAL, REMOTE, "10.1.1.1", "10.1.1.2", 1400)
CONF = f"""setkey "one.conf";
setkey "two.conf";
gre "gre0" {{ local {LOCAL}; remote {REMOTE}; address 10.1.1.1 peer 10.1.1.2; mtu 1400; }}
"""
POLICY = f"spdadd {LOCAL} {REMOTE} gre -P out ipsec esp/transport//require;"
RESERVED = ("RFC 4303 §2.1: 1-255 are reserved by IANA, 0 for local use); use 256 (0x100) or "
            "above")


def add(src: str, dst: str, spi: str) -> str:
    return f"add {src} {dst} esp {spi} -E aes-cbc {AES} -A hmac-sha1 {SHA1};"


# (one.conf, two.conf, the one line -t and the start print, with {dir} for the directory)
REFUSED = {
    "reserved SPI": (
        add(LOCAL, REMOTE, "0x10"), "",
        f"{{dir}}/one.conf:1:31: SPI 16 is reserved ({RESERVED} at '0x10'",
    ),
    "SA added twice": (
        add(LOCAL, REMOTE, "0x1000") + "\n" + add(LOCAL, REMOTE, "0x1000"), "",
        "{dir}/one.conf:2:1: this SA was already added at '0x1000'",
    ),
    "SA added in two files": (
        add(LOCAL, REMOTE, "0x1000"), add(LOCAL, REMOTE, "0x1000"),
        "{dir}/two.conf:1:1: this SA was already added at '0x1000'",
    ),
    "two inbound SAs with one SPI": (
        add(REMOTE, LOCAL, "0x2000") + "\n" + add(REMOTE, "198.18.0.4", "0x2000"), "",
        "{dir}/one.conf:2:1: SPI 0x2000 is already used by the inbound SA added at "
        "{dir}/one.conf:1 (an SA is outbound only when its source is a gre block's local "
        "address) at '0x2000'",
    ),
    "inbound SPI clash across files": (
        add(REMOTE, LOCAL, "0x2000"), "\n" + add("198.18.0.3", "198.18.0.4", "0x2000"),
        "{dir}/two.conf:2:1: SPI 0x2000 is already used by the inbound SA added at "
        "{dir}/one.conf:1 (an SA is outbound only when its source is a gre block's local "
        "address) at '0x2000'",
    ),
    "delete of an SA never added": (
        f"delete {LOCAL} {REMOTE} esp 0x1000;", "",
        "{dir}/one.conf:1:1: no such SA to delete at '0x1000'",
    ),
    "policy added twice": (
        POLICY + "\n" + POLICY, "",
        "{dir}/one.conf:2:1: a policy with this selector and direction exists already at "
        "'spdadd'",
    ),
    "policy added in two files": (
        POLICY, POLICY,
        "{dir}/two.conf:1:1: a policy with this selector and direction exists already at "
        "'spdadd'",
    ),
    "spddelete of a policy never added": (
        f"spddelete {LOCAL} {REMOTE} gre -P out;", "",
        "{dir}/one.conf:1:1: no policy with this selector and direction at 'spddelete'",
    ),
}


def _write(root, one: str, two: str) -> str:
    (root / "racoon.conf").write_text(CONF)
    (root / "one.conf").write_text(one + "\n")
    (root / "two.conf").write_text(two + "\n")
    return str(root / "racoon.conf")


@pytest.fixture
def forwarding():
    """DataPlane(...) as the forwarding process builds it at start (no TUN device made)."""
    if os.geteuid() != 0:
        pytest.skip("the forwarding process's raw sockets need root")
    made: list = []

    def build(setkey_files: list) -> DataPlane:
        ours, theirs = pipe.make_pipe()
        made.extend((ours, theirs))
        plane = DataPlane(theirs, [TUNNEL], setkey_files, create_tun=False)
        made.append(plane)
        return plane

    yield build
    for thing in reversed(made):
        thing.close()


def _parsed(root) -> list:
    return [parse_setkey((root / n).read_text(), str(root / n)) for n in ("one.conf", "two.conf")]


@pytest.mark.parametrize("case", list(REFUSED))
def test_pyike_t_prints_what_the_start_refuses(case, tmp_path, capsys, monkeypatch):
    one, two, line = REFUSED[case]
    conf = _write(tmp_path, one, two)
    expected = line.format(dir=tmp_path)

    assert cli.main(["-t", "-f", conf]) == 1
    assert capsys.readouterr().out == expected + "\n"

    # the start reads the configuration the same way and stops there, before any process,
    # socket or device exists; were it to go on, this Daemon would say so
    import pyike.daemon

    def no_daemon(*args, **kwargs):
        raise AssertionError("the daemon was started")

    monkeypatch.setattr(pyike.daemon, "Daemon", no_daemon)
    assert cli.main(["-F", "-f", conf]) == 1
    assert capsys.readouterr().err == expected + "\n"


@pytest.mark.parametrize("case", [c for c in REFUSED if c != "reserved SPI"])
def test_the_forwarding_process_refuses_the_same_at_its_start(case, tmp_path, forwarding):
    """Without the configuration check in front, the forwarding process's own start (and the
    shared function alone) refuse the file with the very line `pyike -t` printed."""
    one, two, line = REFUSED[case]
    _write(tmp_path, one, two)
    expected = line.format(dir=tmp_path)
    with pytest.raises(SetkeyError) as shared:
        setkey_state(_parsed(tmp_path), [LOCAL], 0.0)
    assert str(shared.value) == expected
    with pytest.raises(SetkeyError) as started:
        forwarding(_parsed(tmp_path))
    assert str(started.value) == expected


def test_an_spi_the_parser_would_refuse_is_refused_by_the_sad_too(tmp_path, forwarding):
    """Defence in depth: a reserved SPI that got past the parser still ends in FILE:LINE."""
    _write(tmp_path, "spdflush;\n" + add(LOCAL, REMOTE, "0x1000"), "")
    one, two = _parsed(tmp_path)
    sa = one.commands[1]
    one.commands[1] = dataclasses.replace(sa, spi=0x10, line=sa.line, column=sa.column)
    expected = f"{tmp_path}/one.conf:2:1: SPI 0x10 is outside 256..2^32-1 at '0x10'"
    with pytest.raises(SetkeyError) as shared:
        setkey_state([one, two], [LOCAL], 0.0)
    assert str(shared.value) == expected
    with pytest.raises(SetkeyError) as started:
        forwarding([one, two])
    assert str(started.value) == expected


def test_what_pyike_t_accepts_the_forwarding_process_installs(tmp_path, capsys, forwarding):
    """One SPI for both directions is fine: the outbound SA (source: the gre block's local
    address) is found by its addresses, the inbound one by its SPI."""
    one = "\n".join([POLICY, add(LOCAL, REMOTE, "0x1000"), add(REMOTE, LOCAL, "0x1000")])
    two = f"delete {LOCAL} {REMOTE} esp 0x1000;\n" + add(LOCAL, REMOTE, "0x1001")
    conf = _write(tmp_path, one, two)
    assert cli.main(["-t", "-f", conf]) == 0
    assert capsys.readouterr().out == "OK\n"
    plane = forwarding(_parsed(tmp_path))
    sas = {(sa.spi, sa.direction) for sa in plane.core.state.manual}
    assert sas == {(0x1000, "in"), (0x1001, "out")}
    assert plane.core.state.inbound(0x1000).src == REMOTE
    assert plane.core.state.outbound(LOCAL, REMOTE).spi == 0x1001
    assert plane.core.tunnels[0].out_action == "ipsec"


def test_a_refused_reload_changes_nothing_and_a_good_one_replaces_the_manual_sas(
        tmp_path, forwarding):
    _write(tmp_path, "\n".join([POLICY, add(LOCAL, REMOTE, "0x1000")]), "")
    plane = forwarding(_parsed(tmp_path))
    before = (plane.core.state.spd, list(plane.core.state.manual))
    _write(tmp_path, add(REMOTE, LOCAL, "0x3000") + "\n" + add(REMOTE, "198.18.0.4", "0x3000"),
           "")
    with pytest.raises(SetkeyError):
        plane.apply_setkey(_parsed(tmp_path), 1.0)
    assert (plane.core.state.spd, plane.core.state.manual) == before
    _write(tmp_path, add(REMOTE, LOCAL, "0x3000"), "")
    plane.apply_setkey(_parsed(tmp_path), 2.0)
    assert [(sa.spi, sa.direction) for sa in plane.core.state.manual] == [(0x3000, "in")]
    state = plane.core.state
    assert state.outbound(LOCAL, REMOTE) is None and state.spd.policies() == []
