"""Real IKEv1 peers on this host for tests: two network namespaces joined by a veth, Debian's
strongSwan charon in one (own mount namespace, so its /etc/ipsec.* and /run are per test),
and pyike's engine behind tests/ikev1/udp_driver.py in the other.

    ns "peer" 198.18.0.1  ==veth==  198.18.0.2  ns "pyike"

or, for NAT traversal, one side at 198.18.1.2 behind ns "nat" (198.18.1.254 inside,
198.18.0.254 outside, masquerading with nftables).

Everything started here is stopped, and the namespaces deleted, by `HostPair.destroy()`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEER_ADDR = "198.18.0.1"
PYIKE_ADDR = "198.18.0.2"
# With a NAT: the inside side's own address, the NAT's inside gateway and outside address.
INSIDE_ADDR = "198.18.1.2"
NAT_INSIDE_GW = "198.18.1.254"
NAT_ADDR = "198.18.0.254"
STARTER = "/usr/lib/ipsec/starter"

PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
# Only what an IKEv1 PSK exchange needs: no multicast-forwarding, DHCP or HA plugins. The
# openssl plugin (libstrongswan-standard-plugins) brings 3DES and the ECP groups.
CHARON_PLUGINS = "random nonce aes sha1 sha2 md5 hmac gmp kernel-netlink socket-default stroke"


def charon_has_openssl() -> bool:
    return (PLUGIN_DIR / "libstrongswan-openssl.so").exists()


def charon_plugins() -> str:
    return CHARON_PLUGINS + (" openssl" if charon_has_openssl() else "")


def sh(*args: str, check: bool = True, timeout: float = 30,
       input_text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True,
                          input=input_text)


def missing_tools(*extra: str) -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "unshare", STARTER, *extra):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


_pairs = itertools.count(1)


@contextlib.contextmanager
def host_pair(tag: str, *tools: str, nat_inside: str | None = None) -> Iterator[HostPair]:
    """A fresh HostPair for one test (skipped when this host cannot run it), always destroyed."""
    reason = missing_tools(*tools)
    if reason:
        pytest.skip(reason)
    hosts = HostPair(f"{tag}{next(_pairs)}", nat_inside)
    try:
        yield hosts.create()
    finally:
        hosts.destroy()


class HostPair:
    """Two namespaces and a link (or, with `nat_inside`, a NAT namespace in between that
    masquerades the named side); processes started in them are tracked and always stopped."""

    def __init__(self, tag: str, nat_inside: str | None = None) -> None:
        base = f"pyc{os.getpid() % 100000}{tag}"
        self.ns = {"peer": f"{base}p", "pyike": f"{base}y"}
        if nat_inside is not None:
            self.ns["nat"] = f"{base}n"
        self.nat_inside = nat_inside
        # Own addresses, and the addresses each side is seen from by the other.
        self.addr = {"peer": PEER_ADDR, "pyike": PYIKE_ADDR}
        if nat_inside is not None:
            self.addr[nat_inside] = INSIDE_ADDR
        self.seen = dict(self.addr)
        if nat_inside is not None:
            self.seen[nat_inside] = NAT_ADDR
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{base}-"))
        self._created: list[str] = []
        self._procs: list[subprocess.Popen] = []

    def create(self) -> HostPair:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            self._created.append(ns)
            self.run_in(ns, "ip", "link", "set", "lo", "up")
            self.run_in(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            self.run_in(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        if self.nat_inside is None:
            self._link(self.ns["peer"], "ike0", PEER_ADDR, self.ns["pyike"], "ike0", PYIKE_ADDR)
            return self
        inside = self.nat_inside
        outside = "pyike" if inside == "peer" else "peer"
        nat = self.ns["nat"]
        self._link(self.ns[outside], "ike0", self.addr[outside], nat, "ike0", NAT_ADDR)
        self._link(self.ns[inside], "ike0", INSIDE_ADDR, nat, "ike1", NAT_INSIDE_GW)
        self.run_in(self.ns[inside], "ip", "route", "add", "default", "via", NAT_INSIDE_GW)
        self.run_in(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run_in(nat, "nft", "-f", "-", input_text=(
            "table ip pyiketest {\n"
            "  chain post { type nat hook postrouting priority 100; "
            'oifname "ike0" masquerade; }\n'
            "}\n"))
        return self

    def _link(self, ns_a: str, if_a: str, addr_a: str, ns_b: str, if_b: str,
              addr_b: str) -> None:
        sh("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
           "netns", ns_b)
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            self.run_in(ns, "ip", "addr", "add", f"{addr}/24", "dev", ifname)
            self.run_in(ns, "ip", "link", "set", ifname, "up")

    def run_in(self, ns: str, *args: str, check: bool = True, timeout: float = 30,
               input_text: str | None = None) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout,
                  input_text=input_text)

    def spawn(self, ns: str, *args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=stdout,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def kill_all(self, ns: str) -> None:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def destroy(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=5)
        for ns in reversed(self._created):
            self.kill_all(ns)
            sh("ip", "netns", "del", ns, check=False)
        self._created.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- pyike's engine ----------------------------------------------------------------------

    def run_driver(self, spec: dict, timeout: float = 60) -> tuple[list[dict], dict, str]:
        """Run the UDP driver in the pyike namespace to completion: (events, counters, output)."""
        path = self.tmp / f"spec{len(self._procs)}.json"
        path.write_text(json.dumps(spec))
        proc = self.start_driver(path)
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            self.stop(proc)
        return parse_driver_output(out)

    def start_driver(self, spec_path: Path) -> subprocess.Popen:
        env_python = [sys.executable, "-m", "tests.ikev1.udp_driver", str(spec_path)]
        return self.spawn(self.ns["pyike"], *env_python)


def parse_driver_output(out: str) -> tuple[list[dict], dict, str]:
    events: list[dict] = []
    counters: dict = {}
    for line in out.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict) and "event" in item:
                events.append(item)
            elif isinstance(item, dict) and "counters" in item:
                counters = item["counters"]
    return events, counters, out


class Charon:
    """Debian's charon under its starter, with ipsec.conf/ipsec.secrets/strongswan.conf of our
    own bind-mounted in a private mount namespace and a tmpfs on /run (pid file, stroke socket)."""

    def __init__(self, pair: HostPair, conn: str, psk: str, secrets_line: str = "") -> None:
        """`conn` from charon_conn(); the secret is for the two addresses charon knows."""
        self.pair = pair
        self.dir = pair.tmp / "charon"
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / "charon.log"
        self.proc: subprocess.Popen | None = None
        (self.dir / "strongswan.conf").write_text(
            "charon {\n"
            "  load_modular = no\n"
            f"  load = {charon_plugins()}\n"
            "  install_routes = no\n"
            "  retransmit_tries = 3\n"
            # charon answers aggressive mode with a PSK only when told to (it exposes HASH_R).
            "  i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n"
            "  filelog {\n"
            f"    peerlog {{\n      path = {self.log}\n      default = 1\n      ike = 2\n"
            "      cfg = 1\n      knl = 1\n      enc = 1\n"
            "      chd = 4\n"  # level 4 logs the ESP keys: compared with pyike's KEYMAT
            "      flush_line = yes\n    }\n"
            "  }\n"
            "}\n"
        )
        (self.dir / "ipsec.conf").write_text("config setup\n\n" + conn)
        secrets = self.dir / "ipsec.secrets"
        ids = f"{pair.addr['peer']} {pair.seen['pyike']}"
        if pair.nat_inside == "pyike":
            ids = ""  # pyike's ID carries its inside address: any ID may use this PSK
        secrets.write_text(f'{ids} : PSK "{psk}"\n' + secrets_line)
        secrets.chmod(0o600)
        (self.dir / "run.sh").write_text(
            "set -e\n"
            "mount -t tmpfs tmpfs /run\n"
            f"mount --bind {self.dir}/ipsec.conf /etc/ipsec.conf\n"
            f"mount --bind {secrets} /etc/ipsec.secrets\n"
            f"mount --bind {self.dir}/strongswan.conf /etc/strongswan.conf\n"
            f"exec {STARTER} --nofork\n"
        )

    def start(self, timeout: float = 15) -> None:
        self.proc = self.pair.spawn(
            self.pair.ns["peer"], "unshare", "-m", "--propagation", "private",
            "sh", str(self.dir / "run.sh"), stdout=subprocess.DEVNULL,
        )
        self.wait_for("added configuration", timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        return needle in self.text()

    def stop(self) -> None:
        if self.proc is not None:
            self.pair.stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        """A peer that vanishes without a word (no DELETE): SIGKILL to every process in its
        namespace (charon does not share the starter's process group)."""
        self.pair.kill_all(self.pair.ns["peer"])
        if self.proc is not None:
            self.pair.stop(self.proc)
            self.proc = None

    def child_keys(self) -> dict[str, bytes]:
        """The ESP keys charon logged (chd level 4) for its last CHILD_SA, by label:
        "encryption initiator", "integrity responder", ..."""
        keys: dict[str, bytes] = {}
        label = None
        want = 0
        for line in self.text().splitlines():
            if "key =>" in line and "[CHD]" in line:
                label = line.split("[CHD]", 1)[1].split("key =>")[0].strip()
                want = int(line.split("=>", 1)[1].split()[0])
                keys[label] = b""
                continue
            if label is None:
                continue
            body = line.split("[CHD]", 1)[-1].strip()
            offset, _, rest = body.partition(": ")
            if not offset.isdigit():
                label = None
                continue
            hex_bytes = rest.split()[: min(16, want - len(keys[label]))]
            keys[label] += bytes.fromhex("".join(hex_bytes))
            if len(keys[label]) >= want:
                label = None
        return keys


def charon_conn(*, auto: str, ike: str = "aes128-sha1-modp2048!", esp: str = "aes128-sha1!",
                aggressive: bool = False, extra: str = "", left: str = PEER_ADDR,
                right: str = PYIKE_ADDR) -> str:
    """An ipsec.conf conn for the GRE transport policy of the seed article, IKEv1 PSK.

    PFS in IKEv1 is asked for by a DH group in `esp` (e.g. aes128-sha1-modp2048)."""
    return (
        "conn gre\n"
        "  keyexchange=ikev1\n"
        f"  aggressive={'yes' if aggressive else 'no'}\n"
        "  authby=secret\n"
        f"  left={left}\n"
        f"  right={right}\n"
        "  leftprotoport=gre\n"
        "  rightprotoport=gre\n"
        "  type=transport\n"
        f"  ike={ike}\n"
        f"  esp={esp}\n"
        # racoon's defaults; charon's `rekey=no` would announce a life duration of 0.
        "  ikelifetime=28800s\n"
        "  lifetime=3600s\n"
        "  keyingtries=1\n"
        f"  auto={auto}\n"
        + (extra or "  dpdaction=none\n")
    )
