"""Processes and other resources a benchmark starts, and their cleanup on any exit.

Every process runs in its own session (process group), so stopping it stops its children too.
Cleanup actions run in reverse order of registration from a `finally`, at interpreter exit,
and on SIGTERM/SIGHUP (turned into KeyboardInterrupt so `finally` blocks run).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

_cleanups: list[tuple[int, Callable[[], None]]] = []
_next_token = 0


def on_cleanup(action: Callable[[], None]) -> int:
    """Register an action for cleanup_all(); returns a token for forget()."""
    global _next_token
    _next_token += 1
    _cleanups.append((_next_token, action))
    return _next_token


def forget(token: int) -> None:
    """Drop a registered action (it was already done)."""
    _cleanups[:] = [(t, a) for t, a in _cleanups if t != token]


def cleanup_all() -> None:
    """Run and drop every registered action, newest first; errors never stop the rest."""
    while _cleanups:
        _, action = _cleanups.pop()
        try:
            action()
        except Exception as exc:  # cleanup must go on whatever one action hit
            print(f"benchmarks: cleanup: {exc}")


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_handlers() -> None:
    """Clean up at exit and turn SIGTERM/SIGHUP into KeyboardInterrupt."""
    atexit.register(cleanup_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_many(procs: Sequence[subprocess.Popen], grace: float = 5.0) -> None:
    """stop() for many processes at once: SIGTERM to every group first, then one shared grace
    period, then SIGKILL to what is left; their cleanup entries are dropped."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=2.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        token = getattr(proc, "cleanup_token", None)
        if token is not None:
            forget(token)


def spawn(
    argv: Sequence[str],
    netns: str | None = None,
    log: str | None = None,
    env: dict[str, str] | None = None,
    stdin_pipe: bool = False,
) -> subprocess.Popen:
    """Start argv (inside netns when given) in its own process group, stopped at cleanup;
    with stdin_pipe its standard input is a pipe from us (proc.stdin), else /dev/null."""
    cmd = list(argv)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        if log:
            out.close()
    token = on_cleanup(lambda: stop(proc))
    proc.cleanup_token = token  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen) -> None:
    """Stop a spawned process now and drop its cleanup entry."""
    stop(proc)
    token = getattr(proc, "cleanup_token", None)
    if token is not None:
        forget(token)


def run(
    argv: Sequence[str], netns: str | None = None, timeout: float = 30.0, check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """Run argv to completion (inside netns when given), bounded by timeout, output captured;
    `input` is its standard input."""
    cmd = list(argv)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-500:]}"
        )
    return result


class Missing(RuntimeError):
    """A tool a benchmark needs is not installed; the message says how to install it."""


def need_binary(name: str, deb_package: str, path: str | None = None) -> str:
    """The path of a program, installing its Debian package when running as root.

    Raises Missing with the exact install command when it cannot be had.
    """
    found = path if path and os.path.exists(path) else shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"benchmarks: installing {deb_package} for {name}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", deb_package],
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", deb_package],
        ):
            done = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
            if cmd[1] == "install" and done.returncode == 0:
                break
        found = path if path and os.path.exists(path) else shutil.which(name)
        if found:
            return found
    raise Missing(f"{name} is missing: run `apt-get install {deb_package}`")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate until it is true or timeout seconds pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def descendants(pid: int) -> list[int]:
    """All processes below pid (from /proc), breadth first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, queue = [], [pid]
    while queue:
        p = queue.pop(0)
        for c in children.get(p, []):
            out.append(c)
            queue.append(c)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_snapshot(pids: list[int]) -> dict[int, float]:
    """CPU seconds so far of each live process in pids."""
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            continue
    return out


def cpu_used(before: dict[int, float], after: dict[int, float], pids: list[int]) -> float:
    """CPU seconds the processes in pids spent between two snapshots; a process missing from
    either snapshot adds nothing."""
    return sum(after[p] - before.get(p, after[p]) for p in pids if p in after)


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of the processes together (a page shared by n processes counts
    1/n to each), from /proc/PID/smaps_rollup; processes gone or unreadable add nothing."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            continue
    return total


def busiest_percent(before: dict[int, float], after: dict[int, float], wall: float) -> float | None:
    """The highest CPU use (% of one core) of any one process between two snapshots."""
    if not after or wall <= 0:
        return None
    return max(after[p] - before.get(p, after[p]) for p in after) / wall * 100
