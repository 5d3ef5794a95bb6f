"""python -m benchmarks [NAME ...] [--rounds N] [--out DIR | --docs] [--spokes N,...]
[--load FRACTION | --all-out] [--json] [--smoke]

Runs the named benchmarks (all when none is named), prints a table per benchmark, writes PNG
plots to DIR (with --docs to docs/perf/ of this checkout) and, with --json, prints every figure
as one JSON document at the end. Benchmarks assert nothing: they measure. Every namespace,
daemon and temporary file they create is removed on return, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import procs

DOCS_PLOTS = Path(__file__).resolve().parent.parent / "docs" / "perf"

# name -> (module, needs root and network namespaces)
BENCHMARKS = {
    "throughput": ("benchmarks.throughput", True),
    "hub": ("benchmarks.hub", True),
    "esp": ("benchmarks.esp_cost", False),
    "profile": ("benchmarks.profile_packet", True),
    "handshake": ("benchmarks.handshake", True),
    "memory": ("benchmarks.memory", False),
    "dh": ("benchmarks.dh_cost", False),
    "attack": ("benchmarks.attack", False),
}


def machine() -> dict:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
    }


def ensure_matplotlib() -> None:
    """Plots need matplotlib: install it into this Python when missing, else say how."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    command = [sys.executable, "-m", "pip", "install", "-q", "matplotlib"]
    print("benchmarks: installing matplotlib for the plots")
    if subprocess.run(command, capture_output=True, timeout=600).returncode != 0:
        print(f"benchmarks: no plots: run `{' '.join(command)}`")


def run_one(name: str, rounds: int, smoke: bool, out_dir: Path, **options: object) -> dict:
    """Run one benchmark; `options` are its own keyword arguments (e.g. the hub's spokes)."""
    module_name, needs_root = BENCHMARKS[name]
    if needs_root and os.geteuid() != 0:
        return {"name": name, "error": "needs root (network namespaces, TUN, raw sockets)"}
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return {"name": name, "error": f"not available: {exc}"}
    started = time.monotonic()
    try:
        result = module.run(rounds=rounds, smoke=smoke, out_dir=out_dir, **options)
    except procs.Missing as exc:
        return {"name": name, "error": str(exc)}
    finally:
        procs.cleanup_all()
    result.setdefault("name", name)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def spoke_counts(text: str) -> tuple[int, ...]:
    """`1,10,50` -> (1, 10, 50), each a spoke count the hub benchmark can build."""
    from benchmarks.netns import MAX_SPOKES

    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or not all(1 <= n <= MAX_SPOKES for n in counts):
        raise argparse.ArgumentTypeError(f"spoke counts from 1 to {MAX_SPOKES}, "
                                         f"comma-separated: {text!r}")
    return counts


def load_fraction(text: str) -> float:
    """The hub's fixed load as a fraction of one spoke's all-out aggregate: above 0, at most 1."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction above 0 and at most 1: {text!r}")
    return value


def hub_options(args: argparse.Namespace) -> dict:
    """The hub benchmark's own keyword arguments from the command line."""
    options: dict = {"all_out": args.all_out}
    if args.spokes:
        options["spokes"] = args.spokes
    if args.load:
        options["load"] = args.load
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="pyike benchmarks: figures beside anchors measured in the same run; "
        "only ratios are comparable across runs and machines.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (default 3)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path("bench-out"), help="plot directory")
    where.add_argument("--docs", action="store_const", const=DOCS_PLOTS, dest="out",
                       help="write the plots to docs/perf/ (throughput.png, packet_cost.png, "
                       "hub.png, ...)")
    parser.add_argument("--spokes", type=spoke_counts, metavar="N,...",
                        help="hub: the spoke counts (default 1,10,50; --smoke 2)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--load", type=load_fraction, metavar="FRACTION",
                      help="hub: every spoke count offers this fraction of one spoke's all-out "
                      "aggregate, split evenly over its spokes (default 0.5)")
    load.add_argument("--all-out", action="store_true",
                      help="hub: every spoke sends as fast as it can instead")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON at the end")
    parser.add_argument("--smoke", action="store_true", help="tiny bounded run (for the tests)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the figures as Markdown (README's Performance section)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    procs.install_handlers()
    ensure_matplotlib()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "caveat": "shared, noisy machine: only ratios are comparable"}
    try:
        for name in args.names or list(BENCHMARKS):
            print(f"\n== {name} ==", flush=True)
            options = hub_options(args) if name == "hub" else {}
            result = run_one(name, args.rounds, args.smoke, args.out, **options)
            if "error" in result:
                print(f"{name}: skipped: {result['error']}")
            results[name] = result
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("benchmarks: interrupted; cleaning up", file=sys.stderr)
        procs.cleanup_all()
        return 130
    if args.markdown:
        from benchmarks.summary import markdown

        # What was measured, not where files went: names, rounds, smoke.
        command = " ".join(["python -m benchmarks", *args.names, f"--rounds {args.rounds}",
                            *([f"--spokes {','.join(map(str, args.spokes))}"]
                              if args.spokes else []),
                            *([f"--load {args.load:g}"] if args.load else []),
                            *(["--all-out"] if args.all_out else []),
                            *(["--smoke"] if args.smoke else [])])
        args.markdown.write_text(markdown(results, command))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
