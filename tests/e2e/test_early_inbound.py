"""The initiator's first packets after quick mode reach the responder: the responder's inbound SA
is live from quick mode's message 2 on, not only once message 3 has gone through its IKE process
and the pipe into its forwarding process.

The race is made certain rather than likely: a filter in the responder's namespace holds back
the initiator's message 3 (a quick-mode message of under 100 bytes: HASH(3) alone), so the
initiator's queued ping, sent as soon as it has sent message 3, arrives while the responder has
only its early inbound SA. Once the ping is through, the filter goes; the responder's resent
message 2 brings message 3 again, the pair comes up and the reply, queued meanwhile, goes back.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.netns import LAN, OUTER, in_ns
from tests.e2e.test_pyike_pair import log_of, sad, wait_for

pytestmark = pytest.mark.netns

ISAKMP_EXCHANGE_BIT = (8 + 18) * 8  # the ISAKMP header's exchange type, after the UDP header
QUICK = 32  # RFC 2409 §5.5
HOLD_QM3 = f"""table inet hold_qm3 {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr {OUTER["a"]} udp dport 500 udp length < 100 @th,{ISAKMP_EXCHANGE_BIT},8 {QUICK} \
counter drop
  }}
}}
"""


def _quick_resends(side: str, text: str) -> str:
    """A resend of message 2 each second, so message 3 comes again soon once let through."""
    return text.replace("listen {", "timer {\n        interval 1 sec;\n}\n\nlisten {", 1) \
        if side == "b" else text


def test_the_first_ping_reaches_the_responder_before_its_pair_is_up(topo):
    topo.write_configs(racoon_edit=_quick_resends)
    for r in topo.routers.values():
        r.start()
    topo.route_lans()
    a, b = topo.routers["a"], topo.routers["b"]
    in_ns(topo.ns["b"], "nft", "-f", "-", input=HOLD_QM3)
    ping = subprocess.Popen(["ip", "netns", "exec", topo.ns["la"], "ping", "-n", "-c", "1",
                             "-w", "40", LAN["b"][1]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def held() -> bool:
            rules = in_ns(topo.ns["b"], "nft", "list", "table", "inet", "hold_qm3").stdout
            return "packets 0 " not in rules
        wait_for(held, 30, what="the initiator's message 3, held back")
        # the queued ping, under the initiator's new pair, is through before message 3
        wait_for(lambda: b.ctl_json("status")["dataplane"]["esp_in"] >= 1, 15,
                 what=f"the ping through the responder's early inbound SA\n{log_of(b)[-2000:]}")
        counters = b.ctl_json("status")["dataplane"]
        assert counters["unknown_spi"] == 0
        assert {e["direction"] for e in sad(b)} == {"in"}  # no outbound SA before message 3
        in_ns(topo.ns["b"], "nft", "delete", "table", "inet", "hold_qm3")
        out, _ = ping.communicate(timeout=45)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    assert ping.returncode == 0 and "icmp_seq=1 " in out, out
    assert b.ctl_json("status")["dataplane"]["unknown_spi"] == 0
    # the reply waited for the pair coming, no second pair was negotiated for it
    assert sorted(e["direction"] for e in sad(b)) == ["in", "out"]
    assert sorted(e["direction"] for e in sad(a)) == ["in", "out"]
