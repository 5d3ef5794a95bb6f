"""examples/migration: a pyike.conf that includes a racoon site's racoon.conf unchanged and adds
pyike's own setkey and gre statements."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyike.config
from ikev1.policy import Identity
from pyike.config.lexer import WORD, tokenize

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "migration"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "migration"
    shutil.copytree(EXAMPLE, root)
    os.chmod(root / "psk.txt", 0o600)  # git keeps no modes; racoon and pyike want 0600
    return root


def test_pyike_conf_loads_the_racoon_site(tmp_path):
    root = _copy(tmp_path)
    config = pyike.config.load(str(root / "pyike.conf"))
    assert str(root / "racoon.conf") in config.sources and str(root / "setkey.conf") in (
        config.sources)
    (tunnel,) = config.gre_tunnels
    assert (tunnel.name, tunnel.local, tunnel.remote) == ("gre1", "198.18.0.1", "198.18.0.2")
    (remote,) = config.engine.remotes
    assert remote.exchange_mode == ("main",)  # base left out
    assert [p.encryption for p in remote.proposals] == ["aes", "3des"]  # blowfish left out
    assert remote.peers_identifier == (Identity("address", "198.18.0.2"),
                                       Identity("fqdn", "gw2.example.net"))
    (sainfo,) = config.engine.sainfos
    # rijndael is aes with racoon's default key length, kept next to aes 256 as racoon does
    assert sainfo.encryption == (("aes", 256), ("3des", None), ("aes", None))
    assert sainfo.authentication == ("hmac_sha256", "hmac_sha1", "hmac_sha384", "hmac_md5")
    assert set(config.engine.psk) == {"198.18.0.2", "*"}
    assert config.adminsock_mode == 0o660
    (_, setkey_file), = config.setkey
    assert len(setkey_file.spd_commands()) == 2 + 1  # spdflush and the two policies
    # every warning points into the included racoon.conf, at the statement it is about
    assert {w.file for w in config.warnings} == {str(root / "racoon.conf")}


def test_racoon_conf_is_left_as_racoon_reads_it(tmp_path):
    """Nothing of pyike's is in racoon.conf (racoon would refuse `setkey` and `gre`), and it
    loads alone too."""
    root = _copy(tmp_path)
    tokens, _ = tokenize((root / "racoon.conf").read_text(), "racoon.conf")
    statements = {t.value for t in tokens if t.kind == WORD}
    assert not statements & {"setkey", "gre"}
    assert pyike.config.check(str(root / "racoon.conf")) == []
