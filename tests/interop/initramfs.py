"""Build the microVM's initramfs: busybox, iproute2, a peer's binaries with their libraries, kernel
modules, and a tiny init with a command loop on the second serial port.

The image is cached by a digest of its inputs, so it is built once per package set.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.interop import debs

# The guest has no modprobe: these are loaded with insmod, dependencies first (worked out from
# modules.dep). Without drbg (and its sha512/sha3/jitterentropy) every SA add fails with "unable to
# initialize cryptographic operations".
GUEST_MODULES = (
    "virtio_net",
    "virtio_pci",
    "af_key",
    "xfrm_user",
    "esp4",
    "esp6",  # IPv6 outer addresses (PeerVm.use_outer); IPv6 itself is built into the kernel
    "authenc",
    "echainiv",
    "seqiv",
    "sha512_generic",
    "sha3_generic",  # jitterentropy_rng conditions its output with SHA3-256
    "jitterentropy_rng",
    "ctr",  # the CTR-DRBG variants
    "drbg",
    "cmac",
    "xcbc",
    "ip_gre",
    "ip6_gre",  # GRE over IPv6 (peers.configure_gre)
    "dummy",  # the guest's LAN device in tunnel mode (peers.configure_lan)
)

# Alternatives that apt-cache lists beside the real dependency; they must not shadow host libs.
_SKIP_LIBRARY_PACKAGES = {"libelogind0"}
_SKIP_PREFIXES = ("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/locale", "boot")
_USRMERGE = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

INIT_SCRIPT = r"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/log /var/tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
KVER=$(uname -r)
while read -r mod; do
    insmod "/lib/modules/$KVER/$mod" || echo "init: insmod $mod failed"
done < /etc/vm/modules
hostname peer
ip link set lo up
[ -x /etc/vm/setup ] && /etc/vm/setup
echo "init: command channel on ttyS1"
while true; do /etc/vm/cmdloop < /dev/ttyS1 > /dev/ttyS1 2>&1; sleep 1; done
"""

# One request per line: "TAG TIMEOUT BASE64". The reply is the command's output followed by a
# line "@@RC TAG STATUS@@". The tty is raw so bytes pass untouched and nothing is echoed.
CMDLOOP_SCRIPT = r"""#!/bin/sh
stty raw -echo
echo "@@READY@@"
while read -r tag secs b64; do
    printf '%s' "$b64" | base64 -d > /tmp/cmd.sh
    timeout -s KILL "$secs" /bin/sh /tmp/cmd.sh < /dev/null 2>&1
    rc=$?
    printf '\n@@RC %s %d@@\n' "$tag" "$rc"
done
"""


@dataclass(frozen=True)
class ImageSpec:
    """What one peer's image holds beyond the common base."""

    name: str
    packages: tuple[str, ...] = ()
    empty_dirs: tuple[str, ...] = ()
    # (guest path, content) pairs written into the image.
    files: tuple[tuple[str, str], ...] = ()
    nss_db: str | None = None  # create an empty NSS database here (libreswan)
    # (host path, guest path) pairs copied in, e.g. a racoon build from PYIKE_RACOON_PREFIX.
    host_files: tuple[tuple[str, str], ...] = field(default_factory=tuple)


# dash is the guest's /bin/sh: Debian's busybox shell runs its own applets before PATH, so its
# `ip` would shadow iproute2's even in the peers' scripts.
BASE_PACKAGES = ("busybox-static", "dash", "iproute2")

STRONGSWAN = ImageSpec(
    name="strongswan",
    packages=(
        "strongswan-starter",
        "strongswan-charon",
        "strongswan-libcharon",
        "libstrongswan",
        "libstrongswan-standard-plugins",
    ),
    # starter refuses to run without its certificate folders.
    empty_dirs=tuple(
        f"etc/ipsec.d/{d}"
        for d in ("aacerts", "acerts", "cacerts", "certs", "crls", "ocspcerts", "private", "reqs")
    ),
)

LIBRESWAN = ImageSpec(
    name="libreswan",
    # libnss3 is named so its dlopen()ed softokn/freebl modules come along, which ldd cannot see.
    packages=("libreswan", "libnss3-tools", "libnss3"),
    files=(("etc/resolv.conf", ""),),
    empty_dirs=("run/pluto", "var/lib/ipsec/nss", "etc/ipsec.d"),
    nss_db="var/lib/ipsec/nss",
)

KERNEL_ONLY = ImageSpec(name="kernel")


def _guest_path(rel: str) -> str:
    head, _, tail = rel.partition("/")
    if head in _USRMERGE:
        return f"{_USRMERGE[head]}/{tail}" if tail else _USRMERGE[head]
    return rel


def _merge_tree(src: Path, tree: Path) -> None:
    """Copy an unpacked package into the usr-merged image tree."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel_dir = os.path.relpath(dirpath, src)
        if rel_dir != "." and rel_dir.startswith(_SKIP_PREFIXES):
            dirnames[:] = []
            continue
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel.startswith(_SKIP_PREFIXES) or name == ".unpacked":
                continue
            dest = tree / _guest_path(rel)
            if rel.startswith(("var/run/", "run/")):
                continue  # a tmpfs at boot
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.exists():
                if dest.is_dir() and not dest.is_symlink():
                    continue
                dest.unlink()
            srcfile = Path(dirpath) / name
            if srcfile.is_symlink():
                os.symlink(os.readlink(srcfile), dest)
            else:
                shutil.copy2(srcfile, dest)


def _skeleton(tree: Path) -> None:
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "dev", "proc", "sys", "tmp", "run",
              "root", "etc/vm", "var/lib", "var/log", "usr/local/sbin"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    for link, target in _USRMERGE.items():
        os.symlink(target, tree / link)
    (tree / "var").mkdir(exist_ok=True)
    os.symlink("/run", tree / "var/run")


def _install_busybox(tree: Path) -> None:
    """Link busybox applets, except where a real binary (iproute2's ip) is already in the tree."""
    busybox = tree / "usr/bin/busybox"
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    taken = {p.name for d in ("usr/bin", "usr/sbin") for p in (tree / d).iterdir()}
    for applet in out.stdout.split():
        name = Path(applet).name
        if name in taken or name == "busybox":
            continue
        dest = tree / _guest_path(applet)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/usr/bin/busybox", dest)
        taken.add(name)
    sh = tree / "usr/bin/sh"
    if sh.is_symlink() or sh.exists():
        sh.unlink()
    os.symlink("dash", sh)


def _is_dynamic_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"\x7fELF" and path.suffix != ".ko"


_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)")


def _library_dirs(tree: Path) -> list[str]:
    dirs = {str(p.parent) for p in tree.glob("usr/lib/**/*.so*")}
    return sorted(dirs)


def _copy_libraries(tree: Path) -> None:
    """Copy into the tree every shared object the tree's ELF files need (ldd), from the host or
    from the packages already unpacked into the tree."""
    elves = [
        str(p)
        for top in ("usr/bin", "usr/sbin", "usr/lib", "usr/libexec")
        for p in (tree / top).rglob("*")
        if not str(p).startswith(str(tree / "usr/lib/modules")) and _is_dynamic_elf(p)
    ]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(_library_dirs(tree)))
    tree_str = str(tree)
    missing: list[str] = []
    for i in range(0, len(elves), 200):
        proc = subprocess.run(
            ["ldd", *elves[i : i + 200]], capture_output=True, text=True, env=env, check=False
        )
        for line in proc.stdout.splitlines():
            if "not found" in line:
                missing.append(line.strip())
                continue
            m = _LDD_LINE.match(line)
            if not m:
                continue
            resolved = m.group(2)
            if resolved.startswith(tree_str):
                continue
            dest = tree / _guest_path(resolved.lstrip("/"))
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(os.path.realpath(resolved), dest)
    if missing:
        detail = "; ".join(sorted(set(missing)))
        raise debs.DebError(f"libraries not found for the VM image: {detail}")


def _module_order(kernel_tree: Path, kver: str) -> list[str]:
    """Wanted modules plus their dependencies, each after what it needs (from modules.dep)."""
    moddir = kernel_tree / "lib/modules" / kver
    if not (moddir / "modules.dep").exists():
        subprocess.run(["depmod", "-b", str(kernel_tree), kver], check=True)
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.removesuffix(".ko"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for dep in reversed(deps[mod]):
            visit(dep)
        order.append(mod)

    for name in GUEST_MODULES:
        if name in by_name:  # absent means built into this kernel
            visit(by_name[name])
    return order


def _install_modules(tree: Path, kernel_tree: Path, kver: str) -> None:
    order = _module_order(kernel_tree, kver)
    src = kernel_tree / "lib/modules" / kver
    dst = tree / "usr/lib/modules" / kver
    for mod in order:
        (dst / mod).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / mod, dst / mod)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src / meta).exists():
            shutil.copy2(src / meta, dst / meta)
    subprocess.run(["depmod", "-b", str(tree), kver], check=True)
    (tree / "etc/vm/modules").write_text("".join(f"{m}\n" for m in order))


def _make_nss_db(tree: Path, rel: str) -> None:
    """`ipsec initnss`: an empty NSS database, made on the host with the image's own certutil."""
    db = tree / rel
    db.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(_library_dirs(tree)))
    subprocess.run(
        [str(tree / "usr/bin/certutil"), "-N", "-d", f"sql:{db}", "--empty-password"],
        check=True, env=env, capture_output=True,
    )


def _write_cpio(tree: Path, out: Path) -> None:
    names = subprocess.run(
        ["find", ".", "-mindepth", "1", "-print0"], cwd=tree, capture_output=True, check=True
    ).stdout
    archive = subprocess.run(
        ["cpio", "--null", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
        cwd=tree, input=names, capture_output=True, check=True,
    ).stdout
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(archive)
    tmp.replace(out)


@dataclass(frozen=True)
class BootImage:
    kernel: Path
    initrd: Path
    kernel_version: str


def _kernel() -> tuple[Path, str]:
    kernel_pkg = debs.resolve_kernel_image()
    kernel_tree = debs.unpack(kernel_pkg)
    kver = kernel_pkg.removeprefix("linux-image-")
    return kernel_tree, kver


def build(spec: ImageSpec) -> BootImage:
    """The kernel and an initramfs for `spec`, built once and cached by the digest of its inputs."""
    kernel_tree, kver = _kernel()
    library_pkgs = [
        p
        for p in debs.library_packages_missing_on_host([*BASE_PACKAGES, *spec.packages])
        if p not in _SKIP_LIBRARY_PACKAGES
    ]
    packages = [*BASE_PACKAGES, *spec.packages, *library_pkgs]
    debs_used = [debs.fetch(p).name for p in packages]
    h = hashlib.sha256(
        repr((debs_used, kver, spec, GUEST_MODULES, INIT_SCRIPT, CMDLOOP_SCRIPT)).encode()
        + Path(__file__).read_bytes()
    )
    for src, _rel in spec.host_files:
        h.update(Path(src).read_bytes())
    digest = h.hexdigest()[:16]
    out = debs.CACHE_ROOT / "images" / f"{spec.name}-{digest}.cpio.gz"
    vmlinuz = kernel_tree / "boot" / f"vmlinuz-{kver}"
    if out.exists():
        return BootImage(vmlinuz, out, kver)
    tree = debs.CACHE_ROOT / "build" / spec.name
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    _skeleton(tree)
    for pkg in packages:
        _merge_tree(debs.unpack(pkg), tree)
    for src, rel in spec.host_files:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tree / rel)
    _install_busybox(tree)
    _copy_libraries(tree)
    _install_modules(tree, kernel_tree, kver)
    shutil.copy2("/etc/protocols", tree / "etc/protocols")  # setkey needs it to know `gre`
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc/group").write_text("root:x:0:\n")
    (tree / "etc/hosts").write_text("127.0.0.1 localhost peer\n")
    for d in spec.empty_dirs:
        (tree / d).mkdir(parents=True, exist_ok=True)
    for rel, content in spec.files:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(content)
    if spec.nss_db:
        _make_nss_db(tree, spec.nss_db)
    for rel, content in (("init", INIT_SCRIPT), ("etc/vm/cmdloop", CMDLOOP_SCRIPT)):
        (tree / rel).write_text(content)
        (tree / rel).chmod(0o755)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f"{spec.name}-*.cpio.gz"):
        stale.unlink()
    _write_cpio(tree, out)
    shutil.rmtree(tree)
    return BootImage(vmlinuz, out, kver)
