"""pyikectl: talk to a running pyike over its control socket.

    pyikectl [-s SOCK] VERB [ARGS...] [--json]

VERB is one of racoonctl's (show-sa|ss, delete-sa|ds, establish-sa|es, flush-sa, reload-config)
or status, spd (`setkey -DP` layout), sad (`setkey -D` layout, keys included).
"""

from __future__ import annotations

import argparse
import json
import sys

from pyike.admin import DEFAULT_SOCKET, request

VERBS = ("show-sa", "ss", "delete-sa", "ds", "establish-sa", "es", "flush-sa", "reload-config",
         "status", "spd", "sad")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyikectl", description="control a running pyike")
    p.add_argument("-s", dest="sock", default=DEFAULT_SOCKET, help="control socket path")
    p.add_argument("--json", action="store_true", help="print the reply's data as JSON")
    p.add_argument("verb", choices=VERBS)
    p.add_argument("args", nargs="*")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]  # allowed anywhere, also after the verb's args
    opts = build_parser().parse_args(argv)
    try:
        reply = request(opts.sock, opts.verb, opts.args, want_json)
    except (OSError, ValueError) as exc:
        print(f"pyikectl: {opts.sock}: {exc}", file=sys.stderr)
        return 2
    if not reply.get("ok"):
        print(f"pyikectl: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    if want_json:
        print(json.dumps(reply.get("data"), indent=2, default=str))
    else:
        sys.stdout.write(reply.get("text") or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
