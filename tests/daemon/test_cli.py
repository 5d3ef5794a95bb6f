"""`pyike -t`: OK and exit 0 on good files, `FILE:LINE: message` and exit 1 on bad ones."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"


def pyike_t(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyike", "-t", "-f", str(conf)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["a", "b"])
def seed_dir(request, tmp_path):
    for f in (SEED / request.param).iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "psk.txt").chmod(0o600)
    return tmp_path


def test_seed_configuration_is_ok(seed_dir):
    out = pyike_t(seed_dir / "racoon.conf")
    assert (out.returncode, out.stdout) == (0, "OK\n"), out.stderr


def test_bad_statement_names_file_and_line(seed_dir):
    conf = seed_dir / "racoon.conf"
    lines = conf.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "dpd_delay" in line)
    lines.insert(at, "        frobnicate on;")
    conf.write_text("\n".join(lines) + "\n")
    out = pyike_t(conf)
    assert out.returncode == 1
    assert out.stdout.startswith(f"{conf}:{at + 1}: "), out.stdout
    assert "frobnicate" in out.stdout


def test_error_in_setkey_file_points_into_it(seed_dir):
    setkey = seed_dir / "setkey.conf"
    text = setkey.read_text()
    setkey.write_text(text + "spdadd 198.18.0.1/32 198.18.0.2/32 gre -P sideways none;\n")
    out = pyike_t(seed_dir / "racoon.conf")
    assert out.returncode == 1
    line = text.count(chr(10)) + 1
    assert out.stdout == f"{setkey}:{line}:43: expected a direction: in, out or fwd at 'sideways'\n"


def test_world_readable_psk_is_refused(seed_dir):
    (seed_dir / "psk.txt").chmod(0o644)
    out = pyike_t(seed_dir / "racoon.conf")
    assert out.returncode == 1
    assert "psk.txt" in out.stdout and "permission" in out.stdout


def test_psk_never_printed(seed_dir):
    conf = seed_dir / "racoon.conf"
    conf.write_text(conf.read_text().replace("exchange_mode main;", "exchange_mode sideways;"))
    out = pyike_t(conf)
    secret = (seed_dir / "psk.txt").read_text().split()[-1]
    assert out.returncode == 1 and secret not in out.stdout + out.stderr


def test_daemon_refuses_to_start_on_a_bad_file(seed_dir):
    conf = seed_dir / "racoon.conf"
    conf.write_text(conf.read_text().replace("exchange_mode main;", "exchange_mode sideways;"))
    out = subprocess.run([sys.executable, "-m", "pyike", "-F", "-f", str(conf)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith(f"{conf}:"), out.stderr


def test_warnings_go_to_stderr_and_the_check_still_passes(seed_dir):
    conf = seed_dir / "racoon.conf"
    text = conf.read_text()
    conf.write_text('privsep { user "nobody"; }\n' + text)
    out = pyike_t(conf)
    assert (out.returncode, out.stdout) == (0, "OK\n"), out.stdout + out.stderr
    assert out.stderr.startswith(f"{conf}:1: warning: privsep"), out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_warnings_are_not_printed_beside_errors(seed_dir):
    conf = seed_dir / "racoon.conf"
    text = conf.read_text().replace("exchange_mode main;", "exchange_mode sideways;")
    conf.write_text('privsep { user "nobody"; }\n' + text)
    out = pyike_t(conf)
    assert out.returncode == 1 and "sideways" in out.stdout and "warning" not in out.stderr


def test_the_daemon_reads_its_configuration_once(seed_dir, monkeypatch):
    from pyike import cli

    load_mod = importlib.import_module("pyike.config.load")  # the module, not load()

    calls = []
    real = load_mod.parse_config
    monkeypatch.setattr(load_mod, "parse_config", lambda path: calls.append(path) or real(path))
    cfg = cli._load(str(seed_dir / "racoon.conf"))
    assert cfg is not None and cfg.gre_tunnels[0].name == "tun0"
    assert calls == [str(seed_dir / "racoon.conf")]


def test_a_bad_file_is_read_once_and_reported(seed_dir, monkeypatch, capsys):
    from pyike import cli

    load_mod = importlib.import_module("pyike.config.load")  # the module, not load()

    conf = seed_dir / "racoon.conf"
    conf.write_text(conf.read_text().replace("exchange_mode main;", "exchange_mode sideways;"))
    calls = []
    real = load_mod.parse_config
    monkeypatch.setattr(load_mod, "parse_config", lambda path: calls.append(path) or real(path))
    assert cli._load(str(conf)) is None
    assert len(calls) == 1 and "sideways" in capsys.readouterr().err
