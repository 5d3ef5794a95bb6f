"""Two routers and two LANs in network namespaces, and pyike running in the routers.

    lan-a (10.0.1.2) -- (10.0.1.1) router-a (198.18.0.1) ==veth== (198.18.0.2) router-b
                                                          (10.0.2.1) -- (10.0.2.2) lan-b

Namespace names carry a per-run prefix, so parallel runs do not collide. Everything made here is
torn down by `Topology.destroy()` (and the pyike processes by `stop()`), also after failures.
Used by the end-to-end tests and by scripts/demo.sh.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
TUNNEL = REPO / "examples" / "tunnel"  # subnet to subnet in ESP tunnel mode, no GRE
PYTHON = sys.executable

OUTER = {"a": "198.18.0.1", "b": "198.18.0.2"}
OUTER6 = {"a": "2001:db8::1", "b": "2001:db8::2"}  # with Topology(ipv6=True)
INNER = {"a": "10.1.1.1", "b": "10.1.1.2"}
LAN = {"a": ("10.0.1.1", "10.0.1.2", "10.0.1.0/24"), "b": ("10.0.2.1", "10.0.2.2", "10.0.2.0/24")}
NATTED_A = "198.18.1.1"  # router a's own outer address when it sits behind the NAT
NAT_INSIDE = "198.18.1.254"


def sh(*args: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True, **kw)


def in_ns(ns: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, **kw)


@dataclass
class Router:
    side: str
    ns: str
    workdir: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "pyike.log"

    @property
    def conf(self) -> Path:
        """pyike.conf where the example has one (it includes racoon.conf), else racoon.conf."""
        pyike_conf = self.workdir / "pyike.conf"
        return pyike_conf if pyike_conf.exists() else self.workdir / "racoon.conf"

    @property
    def sock(self) -> str:
        return str(self.workdir / "pyike.sock")

    def start(self, *extra: str) -> None:
        """pyike -F in the router's namespace; returns once the control socket answers."""
        self.log.unlink(missing_ok=True)
        logf = open(self.log, "ab")  # noqa: SIM115 - handed to the child, closed after fork
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, PYTHON, "-m", "pyike", "-F", "-f", str(self.conf),
             "-l", str(self.log), *extra],
            stdout=logf, stderr=logf, cwd=REPO, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyike ({self.side}) exited: {self.log.read_text()}")
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                if self.ctl("status").returncode == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"pyike ({self.side}) did not come up: {self.log.read_text()}")

    @property
    def pidfile(self) -> Path:
        return self.workdir / "pyike.pid"  # the seed's `path pidfile`, moved here

    def start_detached(self) -> int:
        """`pyike -f CONF -l LOG` as an init script runs it; the pid its pid file names once
        the command has returned 0."""
        out = subprocess.run(["ip", "netns", "exec", self.ns, PYTHON, "-m", "pyike", "-f",
                              str(self.conf), "-l", str(self.log)], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
        if out.returncode:
            raise RuntimeError(f"pyike ({self.side}) did not start: {out.stderr}")
        return int(self.pidfile.read_text())

    def ctl(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "pyike.ctl", "-s", self.sock, *args], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)

    def ctl_json(self, *args: str):
        out = self.ctl(*args, "--json")
        if out.returncode:
            raise RuntimeError(f"pyikectl {' '.join(args)}: {out.stderr}")
        return json.loads(out.stdout)["data"]  # the document's version, verb and time aside

    def send_signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Stop pyike (its whole process group); the exit status, None if it had to be killed."""
        if self.proc is None:
            return None
        code = None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        else:
            code = self.proc.returncode
        # The forwarding process follows its parent on EOF; make sure nothing is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        return code


class Topology:
    """The four namespaces, their links and addresses, and a working directory per router."""

    def __init__(self, prefix: str | None = None, *, nat: bool = False, ipv6: bool = False
                 ) -> None:
        """With `nat`, router a sits behind a masquerading NAT namespace: a's own outer address
        is NATTED_A and the NAT shows it to b as OUTER["a"]. With `ipv6` the routers' link also
        carries OUTER6 (IPv6 stays off everywhere else)."""
        self.prefix = prefix or f"pk{os.getpid() % 100000}"
        self.nat = nat
        self.ipv6 = ipv6
        self.ns = {
            "a": f"{self.prefix}ra", "b": f"{self.prefix}rb",
            "la": f"{self.prefix}la", "lb": f"{self.prefix}lb",
        }
        if nat:
            self.ns["nat"] = f"{self.prefix}nt"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.routers = {s: Router(s, self.ns[s], self.tmp / s) for s in ("a", "b")}
        self.created: list[str] = []

    # --- links -----------------------------------------------------------------------------

    def create(self) -> Topology:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
            if self.ipv6 and ns in (self.ns["a"], self.ns["b"]):
                continue
            # Only the IPv4 the tests look at: no router solicitations on the captured link.
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        a, b, la, lb = self.ns["a"], self.ns["b"], self.ns["la"], self.ns["lb"]
        if self.nat:
            self._create_nat()
        else:
            sh("ip", "link", "add", "wan0", "netns", a, "type", "veth", "peer", "name", "wan0",
               "netns", b)
            in_ns(a, "ip", "addr", "add", f"{OUTER['a']}/24", "dev", "wan0")
        in_ns(b, "ip", "addr", "add", f"{OUTER['b']}/24", "dev", "wan0")
        for side, ns in (("a", a), ("b", b)):
            if self.ipv6:
                in_ns(ns, "ip", "-6", "addr", "add", f"{OUTER6[side]}/64", "dev", "wan0",
                      "nodad")
            in_ns(ns, "ip", "link", "set", "wan0", "up")
            in_ns(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for side, rns, lns in (("a", a, la), ("b", b, lb)):
            gw, host, _net = LAN[side]
            sh("ip", "link", "add", "lan0", "netns", rns, "type", "veth", "peer", "name", "eth0",
               "netns", lns)
            in_ns(rns, "ip", "addr", "add", f"{gw}/24", "dev", "lan0")
            in_ns(rns, "ip", "link", "set", "lan0", "up")
            in_ns(lns, "ip", "addr", "add", f"{host}/24", "dev", "eth0")
            in_ns(lns, "ip", "link", "set", "eth0", "up")
            in_ns(lns, "ip", "route", "add", "default", "via", gw)
        return self

    def _create_nat(self) -> None:
        """a (NATTED_A) -- inside0 [NAT, masquerading to OUTER["a"]] wan0 -- b."""
        a, b, n = self.ns["a"], self.ns["b"], self.ns["nat"]
        sh("ip", "link", "add", "wan0", "netns", a, "type", "veth", "peer", "name", "inside0",
           "netns", n)
        sh("ip", "link", "add", "wan0", "netns", n, "type", "veth", "peer", "name", "wan0",
           "netns", b)
        in_ns(a, "ip", "addr", "add", f"{NATTED_A}/24", "dev", "wan0")
        in_ns(a, "ip", "link", "set", "wan0", "up")
        in_ns(a, "ip", "route", "add", "default", "via", NAT_INSIDE)
        in_ns(n, "ip", "addr", "add", f"{NAT_INSIDE}/24", "dev", "inside0")
        in_ns(n, "ip", "addr", "add", f"{OUTER['a']}/24", "dev", "wan0")
        for dev in ("inside0", "wan0"):
            in_ns(n, "ip", "link", "set", dev, "up")
        in_ns(n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(n, "nft", "-f", "-", input=(
            "table ip pyikenat {\n chain post { type nat hook postrouting priority 100;"
            ' oifname "wan0" masquerade; }\n}\n'))

    def destroy(self) -> None:
        for r in self.routers.values():
            with contextlib.suppress(Exception):
                r.stop(signal.SIGKILL, timeout=5)
        for ns in reversed(self.created):
            sh("ip", "netns", "pids", ns, check=False)
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
        self.created.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- pyike configuration ---------------------------------------------------------------

    def write_configs(self, *, setkey_extra: str = "", racoon_edit=None, source: Path = SEED,
                      setkey_text: dict[str, str] | None = None,
                      outer: dict[str, str] | None = None) -> None:
        """The seed example's (or `source`'s) files, with paths moved into the run's directory.

        `racoon_edit(side, text) -> text` may change racoon.conf (lifetimes, DPD, ...);
        `outer` (say OUTER6) takes the place of OUTER's addresses in every file.
        """
        for side, r in self.routers.items():
            r.workdir.mkdir(parents=True, exist_ok=True)
            for name in ("pyike.conf", "racoon.conf", "setkey.conf", "psk.txt"):
                if not (source / side / name).exists():
                    continue
                text = (source / side / name).read_text()
                text = text.replace("/etc/pyike/", f"{r.workdir}/")
                text = text.replace("/run/pyike/", f"{r.workdir}/")
                for key, address in (outer or {}).items():
                    text = text.replace(OUTER[key], address)
                if name == "racoon.conf" and racoon_edit is not None:
                    text = racoon_edit(side, text)
                if name == "setkey.conf":
                    if setkey_text is not None:
                        text = setkey_text[side]
                    text += setkey_extra
                (r.workdir / name).write_text(text)
            os.chmod(r.workdir / "psk.txt", 0o600)

    def route_lans(self, timeout: float = 10) -> None:
        """Each router routes the other LAN into tun0, once pyike has made it."""
        for side, other in (("a", "b"), ("b", "a")):
            ns = self.ns[side]
            deadline = time.monotonic() + timeout
            while in_ns(ns, "ip", "link", "show", "tun0", check=False).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"tun0 did not appear in {ns}")
                time.sleep(0.1)
            in_ns(ns, "ip", "route", "replace", LAN[other][2], "via", INNER[other], "dev", "tun0")

    def ping(self, src: str = "la", dst: str = LAN["b"][1], count: int = 3,
             interval: float = 0.2, deadline: int = 10, size: int = 56
             ) -> subprocess.CompletedProcess:
        return in_ns(self.ns[src], "ping", "-n", "-c", str(count), "-i", str(interval),
                     "-w", str(deadline), "-s", str(size), dst, check=False,
                     timeout=deadline + 5)

    def __enter__(self) -> Topology:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.destroy()


@contextlib.contextmanager
def capture(ns: str, iface: str, path: Path, bpf: str = ""):
    """tcpdump on `iface` in `ns` while the block runs; the pcap is at `path` afterwards."""
    args = ["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U", "--immediate-mode",
            "-s", "0", "-w", str(path)]
    proc = subprocess.Popen(args + ([bpf] if bpf else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not path.exists() or path.stat().st_size == 0:  # the pcap header means listening
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        yield path
    finally:
        time.sleep(0.5)  # let the last packets reach the file
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
