"""Router a behind a masquerading NAT: NAT traversal floats IKE to 4500 and ESP rides in UDP."""

from __future__ import annotations

import os

import pytest

from tests.e2e.netns import NATTED_A, OUTER, TUNNEL, Topology, capture
from tests.e2e.test_pyike_pair import log_of, sad

pytestmark = pytest.mark.netns


@pytest.fixture
def nat_topo():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    t = Topology(f"pk{os.getpid() % 100000}n", nat=True)
    try:
        t.create()
        yield t
    finally:
        t.destroy()


def behind_nat(side: str, text: str, after: str = "rekey on;") -> str:
    """racoon.conf with NAT traversal on (after the `after` line of the remote block), the
    NAT-T port listened on, and router a's own address the private one."""
    text = text.replace(after, f"{after}\n        nat_traversal on;")
    me = NATTED_A if side == "a" else OUTER["b"]
    listen = f"isakmp {OUTER[side]} [500];"
    text = text.replace(listen, f"{listen}\n        isakmp_natt {OUTER[side]} [4500];")
    if side == "a":  # a's own address is the private one; b still knows a by the NAT's
        text = text.replace(OUTER["a"], me)
    return text


def test_ping_through_a_nat(nat_topo, tmp_path):
    from scapy.all import IP, UDP, rdpcap

    t = nat_topo
    t.write_configs(racoon_edit=behind_nat)
    setkey_a = t.routers["a"].workdir / "setkey.conf"
    setkey_a.write_text(setkey_a.read_text().replace(OUTER["a"], NATTED_A))
    pcap = tmp_path / "b.pcap"
    with capture(t.ns["b"], "wan0", pcap):
        for r in t.routers.values():
            r.start()
        t.route_lans()
        out = t.ping(count=5, interval=0.3, deadline=30)
        assert out.returncode == 0, out.stdout + log_of(t.routers["a"])[-3000:]
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert {p[IP].proto for p in packets} == {17}, "ESP outside UDP on the NATted path"
    ports = {(p[UDP].sport, p[UDP].dport) for p in packets}
    assert any(4500 in pair for pair in ports)
    esp_in_udp = [p for p in packets if 4500 in (p[UDP].sport, p[UDP].dport)
                  and bytes(p[UDP].payload)[:4] != b"\0\0\0\0" and len(p[UDP].payload) > 8]
    assert len(esp_in_udp) >= 10
    b_sas = sad(t.routers["b"])
    assert {e["src"] for e in b_sas} == {OUTER["a"], OUTER["b"]}
    a_sas = sad(t.routers["a"])
    assert {e["src"] for e in a_sas} == {NATTED_A, OUTER["b"]}
    # The kernel's socket filter kept every ESP-in-UDP datagram away from the IKE processes.
    for router in t.routers.values():
        assert router.ctl_json("status")["daemon"]["esp_in_udp_woken"] == 0


def test_tunnel_mode_through_a_nat(nat_topo, tmp_path):
    """examples/tunnel with router a behind the NAT: UDP-encapsulated tunnel mode (RFC 3947
    encapsulation 3), the LANs' packets inside ESP inside UDP 4500 on the NATted path."""
    from scapy.all import IP, UDP, rdpcap

    t = nat_topo

    t.write_configs(source=TUNNEL,
                    racoon_edit=lambda side, text: behind_nat(side, text, "exchange_mode main;"))
    setkey_a = t.routers["a"].workdir / "setkey.conf"
    setkey_a.write_text(setkey_a.read_text().replace(OUTER["a"], NATTED_A))
    pcap = tmp_path / "b.pcap"
    with capture(t.ns["b"], "wan0", pcap):
        for r in t.routers.values():
            r.start()
        out = t.ping(count=5, interval=0.3, deadline=30)
        assert out.returncode == 0, out.stdout + log_of(t.routers["a"])[-3000:]
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert {p[IP].proto for p in packets} == {17}, "ESP outside UDP on the NATted path"
    esp_in_udp = [p for p in packets if 4500 in (p[UDP].sport, p[UDP].dport)
                  and bytes(p[UDP].payload)[:4] != b"\0\0\0\0" and len(p[UDP].payload) > 8]
    assert len(esp_in_udp) >= 10
    for router in t.routers.values():
        assert {e["mode"] for e in sad(router)} == {"tunnel"}
    assert {e["src"] for e in sad(t.routers["b"])} == {OUTER["a"], OUTER["b"]}
