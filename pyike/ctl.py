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


EPILOG = """verbs:
  show-sa|ss isakmp|esp|ipsec        ISAKMP-SAs (racoonctl's table) or IPsec SAs (setkey -D)
  delete-sa|ds isakmp [SRC] DST      delete a phase-1 SA (the peer is told)
  delete-sa|ds esp SRC DST           delete the ESP SA pairs between two addresses
  establish-sa|es isakmp|esp [SRC] DST   negotiate now
  flush-sa [isakmp|esp|ipsec]        delete every SA
  reload-config                      reload racoon.conf and the SPD (as SIGHUP)
  status                             processes, tunnels, counters
  spd                                the SPD in setkey -DP layout
  sad                                the SAD in setkey -D layout, keys included
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyikectl", description="control a running pyike",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
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
