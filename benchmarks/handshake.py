"""Handshake rate: IKEv1 negotiations per second a responder completes.

The load generator (benchmarks.ikeload, pyike's engine driving 1, 10 and 100 concurrent
initiators from one process, each from its own address) runs in one namespace; the responder in
another, joined by a veth:
- pyike: `pyike -F -f racoon.conf` with `remote anonymous`, psk.txt and setkey.conf listing
  every initiator address (as a racoon site with that many peers would);
- charon: Debian's strongSwan in IKEv1 mode (main mode, PSK; phase 1 only, since this kernel
  has no XFRM to take its phase-2 SAs).
Proposal: AES-128, SHA-1, pre-shared key, MODP-2048 (group 14) for phase 1 and PFS.
Tests: main mode (phase 1) against both, main + quick mode with PFS against pyike, and main
mode with the racoon article's MODP-1024 (group 2) from one initiator against both. Rounds
interleave the responders. Besides handshakes/s, the responder's CPU seconds per handshake are
reported (from /proc): the generator shares the machine's two cores with the responder, so when
the responder is fast the generator is what limits the rate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import netns, procs, report, setups, strongswan

RESPONDER = netns.ROUTER_B_WAN
FIRST_INITIATOR = "198.18.0.10"
PSK = setups.PSK


class Responder:
    key = ""
    label = ""

    def __init__(self, max_initiators: int) -> None:
        self.max_initiators = max_initiators
        self.left, self.right = netns.build_pair(f"h{self.key[:2]}")
        for address in initiator_addresses(max_initiators):
            netns.ip("addr", "add", f"{address}/24", "dev", "wan0", netns=self.left)
        self.dir = Path(tempfile.mkdtemp(prefix=f"pyike-bench-hs-{self.key}-"))
        workdir = self.dir
        procs.on_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
        (self.dir / "psk.key").write_text(PSK)
        self.proc: subprocess.Popen | None = None

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *procs.descendants(self.proc.pid)]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                total += procs.cpu_seconds(pid)
            except OSError:
                pass
        return total

    def stop(self) -> None:
        if self.proc is not None:
            procs.finish(self.proc)
            self.proc = None
        netns.delete_netns(self.left)
        netns.delete_netns(self.right)


def initiator_addresses(count: int) -> list[str]:
    from benchmarks.ikeload import address_range

    return address_range(FIRST_INITIATOR, count)


_PYIKE_RESPONDER_CONF = """\
path pre_shared_key "{dir}/psk.txt";
setkey "{dir}/setkey.conf";
listen {{
    isakmp {address} [500];
    adminsock "{dir}/admin.sock";
}}
remote anonymous {{
    exchange_mode main;
    passive on;
    initial_contact off;
    lifetime time 8 hours;
{proposals}}}
sainfo anonymous {{
    pfs_group 14;
    encryption_algorithm aes;
    authentication_algorithm hmac_sha1;
    lifetime time 3600 seconds;
    compression_algorithm deflate;
}}
"""


class PyikeResponder(Responder):
    key = "pyike"
    label = "pyike"

    def start(self) -> None:
        import pyike.cli  # noqa: F401 - fail early when the daemon has not landed

        peers = initiator_addresses(self.max_initiators)
        setups.write_psk(self.dir / "psk.txt", peers)
        (self.dir / "setkey.conf").write_text(setups.setkey_text(RESPONDER, peers))
        conf = self.dir / "racoon.conf"
        conf.write_text(_PYIKE_RESPONDER_CONF.format(
            dir=self.dir, address=RESPONDER,
            proposals=setups.racoon_proposal(14) + setups.racoon_proposal(2)))
        self.proc = procs.spawn([*setups.pyike_command(), "-F", "-f", str(conf)],
                                netns=self.right, log=str(self.dir / "pyike.log"),
                                env=setups.python_env())
        if not procs.wait_until(lambda: _udp_listening(self.right, 500) or
                                self.proc.poll() is not None, 15.0, 0.1) \
                or self.proc.poll() is not None:
            raise setups.SetupError(f"pyike responder did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.dir / "pyike.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""


class CharonResponder(Responder):
    key = "charon"
    label = "strongSwan charon (IKEv1)"

    def start(self) -> None:
        strongswan.require()
        self.charon = strongswan.Charon(self.right, "hs")
        self.charon.start_ikev1_responder(RESPONDER, PSK)
        self.proc = self.charon.proc
        if not procs.wait_until(lambda: _udp_listening(self.right, 500), 15.0, 0.1):
            raise setups.SetupError(f"charon did not start: {self.charon.log_text()[-1500:]}")

    def log_tail(self) -> str:
        return self.charon.log_text()[-1500:]


def _udp_listening(ns: str, port: int) -> bool:
    out = procs.run(["ss", "-lun"], netns=ns, check=False).stdout
    return f":{port} " in out


ARTICLE_GROUP_SUFFIX = "-modp1024"  # the racoon article's dh_group 2 (RFC 2409 §6.2)


def load(responder: Responder, mode: str, concurrency: int, seconds: float) -> dict:
    """One bounded load-generator run; adds the responder's CPU seconds over it.

    mode: "main", "quick" (main + quick mode with PFS), or "main-modp1024".
    """
    group = 2 if mode.endswith(ARTICLE_GROUP_SUFFIX) else 14
    cpu_before = responder.cpu()
    argv = [sys.executable, "-m", "benchmarks.ikeload", "--responder", RESPONDER,
            "--addresses", FIRST_INITIATOR, "--concurrency", str(concurrency),
            "--duration", str(seconds), "--mode", mode.removesuffix(ARTICLE_GROUP_SUFFIX),
            "--group", str(group),
            "--psk-file", str(responder.dir / "psk.key")]
    result = subprocess.run(
        ["ip", "netns", "exec", responder.left, *argv], capture_output=True, text=True,
        timeout=seconds + 60, env=setups.python_env(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"ikeload: {result.stderr.strip()[-800:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    cpu = responder.cpu() - cpu_before
    figures["responder_cpu_s"] = cpu
    figures["per_cpu_s"] = figures["completed"] / cpu if cpu > 0 else None
    return figures


def run(rounds: int, smoke: bool, out_dir: Path) -> dict:
    seconds = 1.0 if smoke else 5.0
    rounds = max(1, rounds)
    levels = (1, 4) if smoke else (1, 10, 100)
    tests = [("main", lvl) for lvl in levels] + [("quick", lvl) for lvl in levels]
    tests.append(("main" + ARTICLE_GROUP_SUFFIX, 1))
    info: dict[str, dict] = {}
    live: dict[str, Responder] = {}
    rates: dict[str, dict[str, list[float]]] = {}
    per_cpu: dict[str, dict[str, list[float]]] = {}
    failures: dict[str, dict[str, int]] = {}
    try:
        for cls in (PyikeResponder, CharonResponder):
            responder = None
            info[cls.key] = {"label": cls.label, "available": False, "error": None}
            try:
                responder = cls(max(levels))
                responder.start()
            except (ImportError, procs.Missing, setups.SetupError, RuntimeError, OSError) as exc:
                info[cls.key]["error"] = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
                print(f"handshake: {cls.key} unavailable: {str(exc)[:1500]}")
                if responder is not None:
                    responder.stop()
                continue
            info[cls.key]["available"] = True
            live[cls.key] = responder
        for _ in range(rounds):
            for mode, level in tests:
                name = f"{mode}@{level}"
                for key, responder in live.items():
                    if mode == "quick" and key == "charon":
                        continue  # no XFRM here: charon cannot install phase-2 SAs
                    try:
                        # A MODP-1024 key costs tens of ms: give it time for a few.
                        slow = mode.endswith(ARTICLE_GROUP_SUFFIX)
                        figures = load(responder, mode, level, max(seconds, 3.0) if slow
                                       else seconds)
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        print(f"handshake: {key} {name}: {exc}")
                        continue
                    rates.setdefault(name, {}).setdefault(key, []).append(figures["rate"])
                    if figures["per_cpu_s"] is not None:
                        per_cpu.setdefault(name, {}).setdefault(key, []).append(
                            figures["per_cpu_s"])
                    failures.setdefault(name, {}).setdefault(key, 0)
                    failures[name][key] += figures["failed"]
    finally:
        for responder in live.values():
            responder.stop()
    return summarize(info, tests, rates, per_cpu, failures, rounds, seconds, out_dir)


def summarize(info: dict, tests: list, rates: dict, per_cpu: dict, failures: dict, rounds: int,
              seconds: float, out_dir: Path) -> dict:
    names = [f"{m}@{lvl}" for m, lvl in tests]
    figures = {n: {k: report.summary(v) for k, v in rates.get(n, {}).items()} for n in names}
    cpu_figures = {n: {k: report.summary(v) for k, v in per_cpu.get(n, {}).items()}
                   for n in names}
    ratios = {}
    for n in names:
        if not n.startswith("main"):
            continue
        rate = {k: s["median"] for k, s in figures[n].items()}
        eff = {k: s["median"] for k, s in cpu_figures[n].items()}
        ratios[n] = {"pyike/charon": report.ratio(rate.get("pyike"), rate.get("charon")),
                     "pyike/charon per cpu-s": report.ratio(eff.get("pyike"), eff.get("charon"))}
    rows = []
    for n in names:
        for key in info:
            s = figures[n].get(key)
            if s is None:
                continue
            c = cpu_figures[n].get(key, report.summary([]))
            rows.append([n, info[key]["label"], report.fmt(s["median"]), report.fmt_range(s),
                         report.fmt(c["median"]), str(failures.get(n, {}).get(key, 0))])
    print(report.table(
        f"handshakes/s completed by the responder ({rounds} round(s) of {seconds:g} s; "
        "main = main mode, quick = main + quick mode with PFS; MODP-2048 unless named; "
        "@N concurrent initiators)",
        ["test", "responder", "median/s", "min-max", "per responder cpu-s", "failed"], rows,
    ))
    print(report.table(
        "handshake ratios (goal pyike/charon >= 1.0)",
        ["test", "pyike/charon", "per cpu-s"],
        [[n, report.fmt(r["pyike/charon"], 2), report.fmt(r["pyike/charon per cpu-s"], 2)]
         for n, r in ratios.items()],
    ))
    for key, meta in info.items():
        if not meta["available"]:
            print(f"  {key}: not measured ({meta['error']})")
    plots = []
    series = {}
    for key in info:
        for mode in ("main", "quick"):  # the MODP-1024 point stays in the table
            pts = [(lvl, figures[f"{m}@{lvl}"][key]["median"]) for m, lvl in tests
                   if m == mode and key in figures[f"{m}@{lvl}"]]
            if pts:
                label = f"{info[key]['label']} ({'main' if mode == 'main' else 'main+quick PFS'})"
                series[label] = ([p[0] for p in pts], [p[1] for p in pts])
    if series:
        plots.append(report.line_plot(
            out_dir / "handshake_rate.png", "IKEv1 handshakes/s vs concurrent initiators",
            "concurrent initiators", "handshakes/s", series, logx=True,
        ))
    return {
        "name": "handshake",
        "rounds": rounds,
        "seconds": seconds,
        "tests": names,
        "responders": info,
        "rates": figures,
        "per_cpu_s": cpu_figures,
        "failed": failures,
        "ratios": ratios,
        "plots": [str(p) for p in plots if p],
    }
