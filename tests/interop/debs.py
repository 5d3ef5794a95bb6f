"""Debian packages for the microVM, fetched with `apt-get download` and unpacked, never installed.

Everything lands in a cache folder the tests own, so a second run needs no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = Path(os.environ.get("PYIKE_INTEROP_CACHE", REPO_ROOT / ".cache" / "interop"))

_DEPENDS_FLAGS = [
    "--recurse",
    "--no-recommends",
    "--no-suggests",
    "--no-conflicts",
    "--no-breaks",
    "--no-replaces",
    "--no-enhances",
]


class DebError(RuntimeError):
    pass


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.strip()[-2000:]
        raise DebError(f"{' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc.stdout


def _apt_update() -> None:
    _run(["apt-get", "update", "-qq"])


def host_has_package(name: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
    )
    return "install ok installed" in proc.stdout


def depends_closure(packages: list[str]) -> list[str]:
    """Every real package the given ones pull in through Depends/Pre-Depends, recursively."""
    try:
        out = _run(["apt-cache", "depends", *_DEPENDS_FLAGS, *packages])
    except DebError:
        _apt_update()
        out = _run(["apt-cache", "depends", *_DEPENDS_FLAGS, *packages])
    names = {line.strip() for line in out.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(names)


def library_packages_missing_on_host(packages: list[str]) -> list[str]:
    """The shared-library packages the peer needs that the host cannot lend to ldd."""
    return [
        name
        for name in depends_closure(packages)
        if name.startswith("lib") and not name.endswith("-perl")
        and name not in packages and not host_has_package(name)
    ]


def resolve_kernel_image(meta: str = "linux-image-cloud-amd64") -> str:
    """The versioned image package the metapackage depends on (linux-image-6.1.0-N-cloud-amd64)."""
    try:
        out = _run(["apt-cache", "depends", meta])
    except DebError:
        _apt_update()
        out = _run(["apt-cache", "depends", meta])
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise DebError(f"{meta}: no linux-image dependency in apt-cache output")


def fetch(package: str) -> Path:
    """The cached .deb of `package`, downloading it on first use."""
    folder = CACHE_ROOT / "debs" / package
    found = sorted(folder.glob("*.deb"))
    if found:
        return found[-1]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _run(["apt-get", "download", "-q", package], cwd=folder)
    except DebError:
        _apt_update()
        _run(["apt-get", "download", "-q", package], cwd=folder)
    found = sorted(folder.glob("*.deb"))
    if not found:
        raise DebError(f"apt-get download {package} left no .deb in {folder}")
    return found[-1]


def unpack(package: str) -> Path:
    """The package's files, unpacked once with `dpkg-deb -x` into the cache."""
    deb = fetch(package)
    target = CACHE_ROOT / "unpacked" / deb.stem
    done = target / ".unpacked"
    if done.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(target)])
    done.touch()
    return target
