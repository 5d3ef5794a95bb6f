"""tcpdump on the host side of the guest's tap, for as long as a `with` block runs."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.interop.vm import PeerVm


class Capture:
    """The pcap is written into `directory`, which the caller owns and removes."""

    def __init__(self, vm: PeerVm, directory: Path) -> None:
        self.vm = vm
        self.path = directory / "tap.pcap"
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Capture:
        self._proc = self.vm.ns.popen(
            ["tcpdump", "-i", self.vm.tap, "-n", "-U", "-s", "0", "-w", str(self.path),
             # over IPv6 outer addresses IPv4 too, which must then not be there at all
             "ip or ip6" if self.vm.outer == "ipv6" else "ip"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        line = self._proc.stderr.readline().decode(errors="replace")  # "listening on ..."
        if "listening" not in line:
            self._stop()
            raise RuntimeError(f"tcpdump did not start: {line}")
        return self

    def _stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)  # let the last packets reach the file
        self._stop()
