"""Helpers for the configuration tests: fixture directories copied where modes hold."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def install(tmp_path: Path):
    """Copy a fixture directory to a temporary one; psk.txt gets mode 0600 as racoon wants.

    git does not keep file modes, so the checked-out psk.txt would be refused otherwise.
    """

    def _install(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(DATA / name, target)
        for psk in target.rglob("psk.txt"):
            os.chmod(psk, 0o600)
        return target

    return _install


@pytest.fixture
def write(tmp_path: Path):
    """Write files into a temporary directory: write({"racoon.conf": "..."}) -> the dir."""

    def _write(files: dict[str, str], secret: tuple[str, ...] = ("psk.txt",)) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if name in secret:
                os.chmod(path, 0o600)
        return tmp_path

    return _write
