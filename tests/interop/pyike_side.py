"""pyike in the VM's namespace, run from the seed example's router A files with the scenario's
changes (DH group, DPD delay, phase 2 lifetime), or in tunnel mode: the same files with the
LANs' tunnel-mode policies (peers.tunnel_setkey) and a `tunnel_device` in place of the `gre`
block."""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.e2e.netns import Router
from tests.interop.peers import (
    GRE_BLOCK,
    LANS,
    TUNNEL_DEVICE,
    seed_text,
    tunnel_setkey,
)
from tests.interop.vm import Namespace, PeerVm


class Pyike(Router):
    """A pyike process (`pyike -F -f racoon.conf`) beside the guest, driven by pyikectl."""

    def __init__(self, vm: PeerVm, workdir: Path) -> None:
        super().__init__("a", vm.ns.name, workdir)
        self.vm = vm
        self.netns: Namespace = vm.ns  # where pyike runs: the VM's, or one behind a NAT

    def move_to(self, netns: Namespace) -> None:
        """Run pyike (from its next start) in `netns` instead of the VM's namespace."""
        self.netns, self.ns = netns, netns.name

    def configure(self, *, dh_group: int, dpd_delay: int = 5, lifetime_s: int = 3600,
                  esp_auth: str = "sha1", mode: str = "transport",
                  edit: Callable[[str], str] | None = None, lans: str = "ipv4") -> None:
        """The seed's router A files; `mode` one of peers.MODES, `lans` the family of tunnel
        mode's LANs (peers.LANS)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("racoon.conf", "setkey.conf", "psk.txt"):
            text = seed_text("a", name, self.vm, dh_group=dh_group, dpd_delay=dpd_delay,
                             lifetime_s=lifetime_s, esp_auth=esp_auth)
            if mode == "tunnel" and name == "racoon.conf":
                text = GRE_BLOCK.sub(f'tunnel_device "{TUNNEL_DEVICE}";', text)
            if mode == "tunnel" and name == "setkey.conf":
                text = tunnel_setkey(LANS[lans].pyike, LANS[lans].peer, str(self.vm.host_addr),
                                     str(self.vm.guest_addr))
            if edit is not None and name == "racoon.conf":
                text = edit(text)
            text = text.replace("/run/pyike/", f"{self.workdir}/")  # the rest is relative
            (self.workdir / name).write_text(text)
        (self.workdir / "psk.txt").chmod(0o600)

    def add_lan(self, lans: str = "ipv4", timeout: float = 10.0) -> None:
        """pyike's LAN for tunnel mode: its host 10.0.1.1 (or, `lans` "ipv6", fd00:1::1 with
        IPv6 on for the loopback) on the namespace's loopback; then wait for the route pyike
        itself puts into the tunnel_device for the guest's LAN (from the policy's remote
        network, with the host as its source once that address exists). Call once pyike made
        the device."""
        lan = LANS[lans]
        v = f"-{ipaddress.ip_address(lan.host_pyike).version}"
        if lans == "ipv6":
            self.netns.run(["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=0"], check=True,
                           capture_output=True)
        self.netns.run(["ip", v, "addr", "replace", lan.host_pyike, "dev", "lo"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while f"dev {TUNNEL_DEVICE}" not in self.netns.run(
                ["ip", v, "route", "show", lan.peer], capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pyike routed no {lan.peer} into {TUNNEL_DEVICE}: "
                                   f"{self.log.read_text()}")
            time.sleep(0.1)

    def sad(self) -> list[dict]:
        return self.ctl_json("sad")

    def isakmp(self) -> list[dict]:
        return self.ctl_json("show-sa", "isakmp")

    def wait_tun(self, timeout: float = 10.0, name: str = "tun0") -> None:
        deadline = time.monotonic() + timeout
        while self.netns.run(["ip", "link", "show", name], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pyike made no {name}: {self.log.read_text()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no pyike log)"

    def ping(self, dst: str, count: int = 5, interval: float = 0.2,
             deadline: int = 10, source: str | None = None) -> subprocess.CompletedProcess:
        """iputils ping in pyike's namespace, from `source` when given (a LAN address)."""
        frm = ["-I", source] if source else []
        return self.netns.run(
            ["ping", "-n", "-c", str(count), "-i", str(interval), "-w", str(deadline), *frm,
             dst],
            capture_output=True, text=True, timeout=deadline + 10,
        )


@contextlib.contextmanager
def pyike_beside(vm: PeerVm) -> Iterator[Pyike]:
    """A Pyike whose process is always killed (and workdir removed) when the block ends."""
    workdir = Path(tempfile.mkdtemp(prefix="pyike-interop-"))
    p = Pyike(vm, workdir)
    try:
        yield p
    finally:
        p.stop(signal.SIGKILL, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
