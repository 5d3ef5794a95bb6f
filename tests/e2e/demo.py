"""The demo: the seed article's two routers, each running pyike on its racoon configuration,
join their LANs over GRE inside ESP transport mode. Run by scripts/demo.sh; tears everything
down on success, failure or Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time

from tests.e2e.netns import LAN, OUTER, Topology


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(title: str, out) -> None:
    step(title)
    print((out.stdout or "").rstrip() or "(nothing)")
    if out.returncode:
        print(out.stderr.rstrip(), file=sys.stderr)


def main() -> int:
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
        topo.write_configs()
        a_conf = topo.routers["a"].conf
        step(f"router a's {a_conf.name} and setkey.conf (router b's mirror them)")
        print(a_conf.read_text().rstrip())
        print("\n# --- setkey.conf")
        print((a_conf.parent / "setkey.conf").read_text().rstrip())
        for side, r in topo.routers.items():
            step(f"pyike -F -f {r.conf} in router {side}")
            r.start()
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
        if ok:
            step(f"LAN to LAN over GRE in ESP: works ({time.monotonic() - t0:.1f} s)")
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
