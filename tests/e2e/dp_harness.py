"""Run pyike's forwarding process alone, keyed by hand from a setkey.conf (`add ... esp` lines).

    python -m tests.e2e.dp_harness --setkey FILE [--key K]
        [--extra NAME,LOCAL,REMOTE,ADDRESS,PEER,MTU,KEY]... NAME LOCAL REMOTE ADDRESS PEER [MTU]

Prints `ready`, then answers `counters`, `sad_json` or `spd_json` lines on stdin with one JSON
line each. SIGTERM or EOF on stdin stops it (and the TUN device goes with it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from forward.specs import TunnelSpec
from pyike import pipe
from pyike.dataplane import start
from spd.parse import parse_setkey


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--setkey", required=True)
    p.add_argument("--key", type=int, default=None, help="GRE key of the first tunnel")
    p.add_argument("--extra", action="append", default=[], help="another tunnel, comma-separated")
    p.add_argument("tunnel", nargs="+")
    opts = p.parse_args()
    name, local, remote, address, peer, *rest = opts.tunnel
    specs = [TunnelSpec(name, local, remote, address, peer, int(rest[0]) if rest else 1400,
                        opts.key)]
    for extra in opts.extra:
        n, lo, re, ad, pe, mtu, key = extra.split(",")
        specs.append(TunnelSpec(n, lo, re, ad, pe, int(mtu), int(key)))
    with open(opts.setkey) as f:
        setkey = parse_setkey(f.read(), opts.setkey)
    pid, sock = start(specs, [setkey])
    if pipe.recv(sock) != ("ready",):
        print("forwarding process failed", flush=True)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    req = 0
    try:
        for line in sys.stdin:
            req += 1
            pipe.send(sock, "query", req, line.strip())
            while True:
                msg = pipe.recv(sock)
                if msg is None:
                    return 1
                if msg[0] == "reply" and msg[1] == req:
                    print(json.dumps(msg[2], default=str), flush=True)
                    break
    finally:
        pipe.send(sock, "stop")
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
