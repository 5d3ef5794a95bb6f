"""A kernel-IPsec peer in a qemu microVM, joined by a tap device to a network namespace.

The host side of the tap is 198.18.N.1/24 inside a namespace this module creates; the guest's
eth0 is 198.18.N.2/24. `PeerVm.use_outer("ipv6")` adds 2001:db8:N::1/64 and 2001:db8:N::2/64
to the two ends and makes them the outer addresses, until `use_outer("ipv4")`. The guest's
second serial port is a Unix socket carrying a command loop:
`PeerVm.run(cmd)` returns the exit status and output of `cmd` run by the guest's shell.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from tests.interop.initramfs import BootImage

T = TypeVar("T")

OUTER_FAMILIES = ("ipv4", "ipv6")
BOOT_TIMEOUT_S = 90.0  # TCG boots in 8-11 s on an idle machine; the CI machine may be busy


_ANY_SENTINEL = re.compile(rb"\n@@RC \S+ \d+@@\n")


class VmError(RuntimeError):
    pass


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise VmError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def _die_with_parent() -> None:
    """In the child before exec: qemu gets SIGKILL if the test process dies (PR_SET_PDEATHSIG),
    so a crashed test run leaves no VM behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, 9)


class Namespace:
    """A network namespace named uniquely for this process, removed on close."""

    def __init__(self, tag: str) -> None:
        self.name = f"pyike-{tag}-{os.getpid()}"
        _ip("netns", "del", self.name, check=False)
        _ip("netns", "add", self.name)
        _ip("link", "set", "lo", "up", netns=self.name)
        # IPv4 only: otherwise the kernel's own IPv6 chatter (router solicitations, MLD) into
        # pyike's tun0 starts a negotiation before a scenario sends anything.
        self.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                  "net.ipv6.conf.default.disable_ipv6=1"], check=True, capture_output=True)

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread that has entered the namespace (sockets made there stay there)."""
        from pyroute2.netns import setns

        result: list = []

        def body() -> None:
            try:
                setns(self.name)
                result.append((True, fn()))
            except BaseException as exc:  # handed back to the caller's thread
                result.append((False, exc))

        t = threading.Thread(target=body)
        t.start()
        t.join()
        ok, value = result[0]
        if not ok:
            raise value
        return value

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        return self.call(lambda: socket.socket(family, kind, proto))

    def close(self) -> None:
        _ip("netns", "del", self.name, check=False)


class PeerVm:
    """One booted guest. Use `boot_vm()`, which always tears it down."""

    def __init__(self, image: BootImage, ns: Namespace, subnet: int, workdir: Path) -> None:
        self.image = image
        self.ns = ns
        self.host_addr4 = ipaddress.IPv4Address(f"198.18.{subnet}.1")
        self.guest_addr4 = ipaddress.IPv4Address(f"198.18.{subnet}.2")
        self.host_addr6 = ipaddress.IPv6Address(f"2001:db8:{subnet:x}::1")
        self.guest_addr6 = ipaddress.IPv6Address(f"2001:db8:{subnet:x}::2")
        self.outer = "ipv4"  # one of OUTER_FAMILIES: which pair host_addr/guest_addr name
        self.tap = f"tap{subnet}p{os.getpid() % 10000}"[:15]
        self.workdir = workdir
        self.console_log = workdir / "console.log"
        self._cmd_path = workdir / "cmd.sock"
        self._proc: subprocess.Popen | None = None
        self._chan: socket.socket | None = None
        self._buf = b""
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def host_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """pyike's outer address on the tap, in the current outer family."""
        return self.host_addr6 if self.outer == "ipv6" else self.host_addr4

    @property
    def guest_addr(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The guest's outer address on eth0, in the current outer family."""
        return self.guest_addr6 if self.outer == "ipv6" else self.guest_addr4

    def use_outer(self, family: str, timeout: float = 10.0) -> None:
        """Make `family` the outer one. "ipv6" turns IPv6 on for the tap and the guest's eth0
        alone (every other device, tunnels included, stays IPv4 only) and adds the two /64
        addresses without duplicate address detection, then waits until both are usable;
        "ipv4" turns IPv6 off on both again, which drops those addresses."""
        if family not in OUTER_FAMILIES:
            raise ValueError(f"outer family {family!r} is not one of {OUTER_FAMILIES}")
        on = family == "ipv6"
        self.ns.run(["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.disable_ipv6={int(not on)}"],
                    check=True, capture_output=True)
        self.check(f"echo {int(not on)} > /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
        self.outer = family
        if not on:
            return
        _ip("-6", "addr", "replace", f"{self.host_addr6}/64", "dev", self.tap, "nodad",
            netns=self.ns.name)
        self.check(f"ip -6 addr replace {self.guest_addr6}/64 dev eth0 nodad")
        # nodad leaves nothing tentative; checked rather than trusted, within a bound
        deadline = time.monotonic() + timeout
        while True:
            host = _ip("-6", "addr", "show", "dev", self.tap, "scope", "global", "-tentative",
                       netns=self.ns.name).stdout
            guest = self.check("ip -6 addr show dev eth0 scope global -tentative")
            if str(self.host_addr6) in host and str(self.guest_addr6) in guest:
                return
            if time.monotonic() > deadline:
                raise VmError(f"IPv6 outer addresses not usable: tap {host!r}, eth0 {guest!r}")
            time.sleep(0.1)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        _ip("tuntap", "add", "dev", self.tap, "mode", "tap", netns=self.ns.name)
        _ip("addr", "add", f"{self.host_addr4}/24", "dev", self.tap, netns=self.ns.name)
        _ip("link", "set", self.tap, "up", netns=self.ns.name)
        argv = [
            "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", "console=ttyS0 panic=-1 quiet loglevel=4 random.trust_cpu=on",
            "-serial", f"file:{self.console_log}",
            "-chardev", f"socket,id=cmd,path={self._cmd_path},server=on,wait=off",
            "-serial", "chardev:cmd",
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
        ]
        qemu_log = open(self.workdir / "qemu.log", "wb")  # noqa: SIM115 - kept for the process
        self._proc = self.ns.popen(argv, stdin=subprocess.DEVNULL, stdout=qemu_log,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        qemu_log.close()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        self._connect(deadline)
        self._read_until(b"@@READY@@\n", deadline)
        rc, out = self.run(
            f"ip link set eth0 up && ip addr add {self.guest_addr4}/24 dev eth0", timeout=20
        )
        if rc != 0:
            raise VmError(f"guest eth0 set-up failed: {out}")

    def _connect(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise VmError(f"qemu exited with {self._proc.returncode}: {self.qemu_output()}")
            if self._cmd_path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(self._cmd_path))
                except OSError:
                    s.close()
                else:
                    self._chan = s
                    return
            time.sleep(0.05)
        raise VmError("qemu never opened its command channel")

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
            self._chan = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._proc = None
        _ip("link", "del", self.tap, netns=self.ns.name, check=False)

    # -- the command channel ----------------------------------------------------------------
    def _read_until(self, marker: bytes | re.Pattern, deadline: float) -> re.Match | bytes:
        assert self._chan is not None
        while True:
            if isinstance(marker, bytes):
                idx = self._buf.find(marker)
                if idx >= 0:
                    head, self._buf = self._buf[:idx], self._buf[idx + len(marker) :]
                    return head
            else:
                m = marker.search(self._buf)
                if m:
                    self._buf = self._buf[m.end() :]
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self.console_tail()
                raise VmError(f"timed out waiting for the guest; console tail:\n{tail}")
            if self._proc is not None and self._proc.poll() is not None:
                raise VmError(f"qemu exited; console tail:\n{self.console_tail()}")
            self._chan.settimeout(min(left, 1.0))
            try:
                data = self._chan.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise VmError("command channel closed")
            self._buf += data

    def run(self, cmd: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run `cmd` with the guest's /bin/sh; (exit status, stdout+stderr). A command still
        running after `timeout` seconds is killed in the guest (status 137)."""
        with self._lock:
            self._seq += 1
            tag = f"t{self._seq}"
            secs = max(1, int(timeout))
            payload = base64.b64encode(cmd.encode()).decode()
            assert self._chan is not None
            self._chan.sendall(f"{tag} {secs} {payload}\n".encode())
            sentinel = re.compile(rb"\n@@RC " + tag.encode() + rb" (\d+)@@\n")
            m = self._read_until(sentinel, time.monotonic() + secs + 15)
            assert isinstance(m, re.Match)
            whole = m.string[: m.start()]
            # Output of an earlier, abandoned command ends with its own sentinel; drop it.
            earlier = list(_ANY_SENTINEL.finditer(whole))
            text = whole[earlier[-1].end() :] if earlier else whole
            return int(m.group(1)), text.decode(errors="replace").replace("\r", "")

    def check(self, cmd: str, timeout: float = 30.0) -> str:
        rc, out = self.run(cmd, timeout)
        if rc != 0:
            raise VmError(f"guest command failed ({rc}): {cmd}\n{out}")
        return out

    def write_file(self, path: str, content: str | bytes, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        b64 = base64.b64encode(data).decode()
        q = shlex.quote(path)
        self.check(
            f"mkdir -p $(dirname {q}) && printf '%s' '{b64}' | base64 -d > {q}"
            f" && chmod {mode:o} {q}"
        )

    # -- diagnostics ------------------------------------------------------------------------
    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def qemu_output(self) -> str:
        try:
            return (self.workdir / "qemu.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@contextlib.contextmanager
def boot_vm(image: BootImage, tag: str, subnet: int = 0) -> Iterator[PeerVm]:
    """A booted guest in a fresh namespace; qemu, tap and namespace are removed on exit, and a
    failure while booting shows the console's tail."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pyike-vm-{tag}-"))
    ns = Namespace(tag)
    vm = PeerVm(image, ns, subnet, workdir)
    try:
        vm.start()
        yield vm
    finally:
        vm.close()
        ns.close()
        shutil.rmtree(workdir, ignore_errors=True)
