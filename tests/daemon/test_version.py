"""`pyike --version`: pyproject.toml's version, whether installed or run from the source tree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from pyike import version as version_mod

REPO = Path(__file__).resolve().parents[2]


def _declared() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def test_version_flags_print_pyprojects_version():
    for flag in ("--version", "-V"):
        out = subprocess.run([sys.executable, "-m", "pyike", flag], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stdout) == (0, f"pyike {_declared()}\n"), out.stderr


def test_an_uninstalled_tree_reads_pyproject(monkeypatch):
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version_mod.metadata, "version", missing)
    version_mod.version.cache_clear()
    try:
        assert version_mod.version() == _declared()
        monkeypatch.setattr(version_mod, "PYPROJECT", REPO / "no-such-file.toml")
        version_mod.version.cache_clear()
        assert version_mod.version() == "unknown"
    finally:
        version_mod.version.cache_clear()
