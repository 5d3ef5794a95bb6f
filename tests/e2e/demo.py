"""The demo: the seed article's two routers, each running pyike on its racoon configuration,
join their LANs over GRE inside ESP transport mode; with --tunnel, a racoon site written in ESP
tunnel mode (examples/tunnel) joins them subnet to subnet, without GRE. Run by scripts/demo.sh;
tears everything down on success, failure or Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from tests.e2e.netns import LAN, OUTER, SEED, TUNNEL, Topology, in_ns


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(title: str, out) -> None:
    step(title)
    print((out.stdout or "").rstrip() or "(nothing)")
    if out.returncode:
        print(out.stderr.rstrip(), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.sh", description=__doc__)
    parser.add_argument("--tunnel", action="store_true",
                        help="ESP tunnel mode subnet to subnet (examples/tunnel) instead of GRE")
    args = parser.parse_args(argv)
    mode = "ESP tunnel mode" if args.tunnel else "GRE in ESP"
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces, TUN, raw sockets)", file=sys.stderr)
        return 1

    def interrupted(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    topo = Topology(f"pkdemo{os.getpid() % 10000}")
    code = 1
    try:
        step(f"namespaces {', '.join(topo.ns.values())}: routers {OUTER['a']} and {OUTER['b']} "
             f"on a veth, LANs {LAN['a'][2]} and {LAN['b'][2]} behind them")
        topo.create()
        topo.write_configs(source=TUNNEL if args.tunnel else SEED)
        a_conf = topo.routers["a"].conf
        names = ["pyike.conf", "racoon.conf", "setkey.conf"] if args.tunnel else [
            "racoon.conf", "setkey.conf"]
        step(f"router a's {', '.join(names)} (router b's mirror them)")
        for name in names:
            print(f"# --- {name}")
            print((a_conf.parent / name).read_text().rstrip())
        for side, r in topo.routers.items():
            step(f"pyike -F -f {r.conf} in router {side}")
            r.start()
        if not args.tunnel:
            topo.route_lans()
        step(f"ping {LAN['b'][1]} from {LAN['a'][1]} (the first packet starts the negotiation)")
        t0 = time.monotonic()
        out = topo.ping(count=5, interval=0.5, deadline=30)
        print(out.stdout.rstrip())
        ok = out.returncode == 0
        a = topo.routers["a"]
        show("pyikectl ss isakmp (router a)", a.ctl("ss", "isakmp"))
        show("pyikectl ss esp (router a)", a.ctl("ss", "esp"))
        show("pyikectl sad (router a)", a.ctl("sad"))
        show("pyikectl status (router a)", a.ctl("status"))
        if args.tunnel:
            show("ip route (router a): pyike routes the far LAN into its device",
                 in_ns(topo.ns["a"], "ip", "route", "show", check=False))
        if ok:
            step(f"LAN to LAN over {mode}: works ({time.monotonic() - t0:.1f} s)")
            code = 0
        else:
            step("the ping did not get through; router a's log:")
            print(a.log.read_text()[-4000:] if a.log.exists() else "(no log)")
    except KeyboardInterrupt:
        step("interrupted")
        code = 130
    except Exception as exc:
        step(f"failed: {exc}")
    finally:
        step("tearing down")
        topo.destroy()
    return code


if __name__ == "__main__":
    sys.exit(main())
