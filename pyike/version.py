"""pyike's version: pyproject.toml's, read from the installed package's metadata."""

from __future__ import annotations

import functools
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@functools.cache
def version() -> str:
    """The installed distribution's version; from a source tree that was never installed, the
    `version` of its pyproject.toml (the one place it is written)."""
    try:
        return metadata.version("pyike")
    except metadata.PackageNotFoundError:
        pass
    try:
        with open(PYPROJECT, "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
