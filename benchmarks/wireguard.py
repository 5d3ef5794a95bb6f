"""Debian's wireguard-go as a benchmark anchor: a userspace tunnel in Go, one per router.

Each instance runs `wireguard-go -f DEV` inside the router's network namespace and in a mount
namespace of its own with a private tmpfs on /run, so its UAPI socket
(/run/wireguard/DEV.sock) is the instance's own and nothing on the host changes. `wg`
(wireguard-tools) configures it through that socket, run in the instance's mount namespace
with nsenter. Keys come from `wg genkey` and `wg pubkey`, new for every run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from benchmarks import procs

WIREGUARD_GO = "/usr/bin/wireguard-go"
WG = "/usr/bin/wg"
PORT = 51820  # WireGuard's customary port (wg(8) examples)
START_TIMEOUT_S = 10.0


def require() -> None:
    """Raise procs.Missing (with the install command) unless wireguard-go and wg are here."""
    procs.need_binary("wireguard-go", "wireguard-go", WIREGUARD_GO)
    procs.need_binary("wg", "wireguard-tools", WG)


def keypair() -> tuple[str, str]:
    """A fresh (private, public) key pair, base64 as wg(8) prints them."""
    private = procs.run([WG, "genkey"]).stdout.strip()
    public = procs.run([WG, "pubkey"], input=private + "\n").stdout.strip()
    return private, public


class WireguardGo:
    """One wireguard-go with its TUN device `dev` in a network namespace, private /run."""

    def __init__(self, netns: str, dev: str, workdir: Path) -> None:
        self.netns = netns
        self.dev = dev
        self.workdir = workdir
        self.log = workdir / f"wireguard-{dev}-{netns[-2:]}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the daemon and wait (bounded) until its UAPI socket is there."""
        script = ("set -e; mount --make-rprivate / ; mount -t tmpfs tmpfs /run; "
                  f"exec {WIREGUARD_GO} -f {self.dev}")
        # `ip netns exec`, unshare (without --fork) and sh's exec keep one pid: the daemon's.
        self.proc = procs.spawn(["unshare", "--mount", "sh", "-c", script], netns=self.netns,
                                log=str(self.log))
        socket_path = f"/proc/{self.proc.pid}/root/run/wireguard/{self.dev}.sock"
        if not procs.wait_until(lambda: os.path.exists(socket_path) or not self.running(),
                                START_TIMEOUT_S, 0.05) or not self.running():
            raise RuntimeError(f"wireguard-go {self.dev} did not start\n{self.log_text()}")

    def configure(self, private_key: str, peer_public_key: str, endpoint: str,
                  allowed_ips: list[str]) -> None:
        """Give the device its key, its listening port and its one peer (wg setconf)."""
        conf = self.workdir / f"{self.dev}-{self.netns[-2:]}.conf"
        conf.write_text(
            f"[Interface]\nPrivateKey = {private_key}\nListenPort = {PORT}\n\n"
            f"[Peer]\nPublicKey = {peer_public_key}\nEndpoint = {endpoint}:{PORT}\n"
            f"AllowedIPs = {', '.join(allowed_ips)}\n"
        )
        os.chmod(conf, 0o600)
        procs.run(["nsenter", "-t", str(self.proc.pid), "-m", WG, "setconf", self.dev,
                   str(conf)])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
