"""The forwarding process alone, keyed by hand (setkey `add` lines), across network namespaces:
TUN -> GRE -> ESP -> veth -> ESP -> GRE -> TUN, checked on the wire with scapy as the oracle."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.netns import INNER, LAN, OUTER, PYTHON, REPO, capture, in_ns

pytestmark = pytest.mark.netns

ENC = {"ab": bytes(range(1, 17)), "ba": bytes(range(101, 117))}
AUTH = {"ab": bytes(range(21, 41)), "ba": bytes(range(121, 141))}
SPI = {"ab": 0x1001, "ba": 0x1002}


def setkey_text(side: str, action: str = "ipsec esp/transport//require", sas: bool = True
                ) -> str:
    me, peer = OUTER[side], OUTER["b" if side == "a" else "a"]
    lines = ["flush;", "spdflush;",
             f"spdadd {me}/32[0] {peer}/32[0] gre -P out {action};",
             f"spdadd {peer}/32[0] {me}/32[0] gre -P in {action};"]
    pairs = {"ab": (OUTER["a"], OUTER["b"]), "ba": (OUTER["b"], OUTER["a"])} if sas else {}
    for d, (src, dst) in pairs.items():
        lines.append(f"add {src} {dst} esp {SPI[d]:#x} -m transport "
                     f"-E aes-cbc 0x{ENC[d].hex()} -A hmac-sha1 0x{AUTH[d].hex()};")
    return "\n".join(lines) + "\n"


class Harness:
    def __init__(self, topo, side: str, setkey: str, extra: tuple[str, ...] = ()) -> None:
        other = "b" if side == "a" else "a"
        path = topo.tmp / f"setkey-{side}.conf"
        path.write_text(setkey)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns[side], PYTHON, "-m", "tests.e2e.dp_harness",
             "--setkey", str(path), *extra, "tun0", OUTER[side], OUTER[other], INNER[side],
             INNER[other]], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + self.proc.stderr.read()

    def query(self, what: str):
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def manual(topo, request):
    action, sas = getattr(request, "param", ("ipsec esp/transport//require", True))
    harnesses = []
    try:
        for side in ("a", "b"):
            harnesses.append(Harness(topo, side, setkey_text(side, action, sas)))
        topo.route_lans()
        yield topo, harnesses
    finally:
        for h in harnesses:
            h.stop()


def test_ping_lan_to_lan(manual):
    topo, (ha, hb) = manual
    out = topo.ping(count=5)
    assert " 0% packet loss" in out.stdout, out.stdout + out.stderr
    a = ha.query("counters")["counters"]
    b = hb.query("counters")["counters"]
    assert a["esp_out"] >= 5 and a["esp_in"] >= 5 and b["esp_out"] >= 5
    assert a["gre_clear_out"] == 0 and b["gre_clear_out"] == 0


def test_wire_carries_only_esp_that_scapy_opens_to_gre(manual, tmp_path):
    from scapy.all import GRE, ICMP, IP, rdpcap
    from scapy.layers.ipsec import ESP, SecurityAssociation

    topo, _ = manual
    pcap = tmp_path / "wan.pcap"
    with capture(topo.ns["a"], "wan0", pcap):
        out = topo.ping(count=4, size=300)
    assert " 0% packet loss" in out.stdout, out.stdout
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert len(packets) >= 8
    assert {p[IP].proto for p in packets} == {50}, "something other than ESP on the wire"
    sas = {OUTER["a"]: SecurityAssociation(ESP, spi=SPI["ab"], crypt_algo="AES-CBC",
                                           crypt_key=ENC["ab"], auth_algo="HMAC-SHA1-96",
                                           auth_key=AUTH["ab"]),
           OUTER["b"]: SecurityAssociation(ESP, spi=SPI["ba"], crypt_algo="AES-CBC",
                                           crypt_key=ENC["ba"], auth_algo="HMAC-SHA1-96",
                                           auth_key=AUTH["ba"])}
    inner = []
    for p in packets:
        clear = sas[p[IP].src].decrypt(p[IP])
        assert clear.proto == 47 and GRE in clear and clear[GRE].proto == 0x0800
        inner.append(clear[GRE].payload)
    pairs = {(i[IP].src, i[IP].dst, i[ICMP].type) for i in inner}
    assert (LAN["a"][1], LAN["b"][1], 8) in pairs and (LAN["b"][1], LAN["a"][1], 0) in pairs
    assert all(len(i[IP]) == 328 for i in inner)


def test_plain_gre_under_a_require_policy_is_dropped(manual):
    """A GRE packet in clear from the peer's address never reaches tun0 when policy requires ESP."""
    from scapy.all import GRE, ICMP, IP, raw

    topo, (ha, _) = manual
    before = ha.query("counters")["counters"]
    pkt = raw(IP(src=OUTER["b"], dst=OUTER["a"]) / GRE() /
              IP(src=LAN["b"][1], dst=LAN["a"][1]) / ICMP())
    code = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,255);"
            "s.setsockopt(socket.IPPROTO_IP,socket.IP_HDRINCL,1);"
            f"[s.sendto(bytes.fromhex('{pkt.hex()}'),('{OUTER['a']}',0)) for _ in range(3)]")
    in_ns(topo.ns["b"], PYTHON, "-c", code)
    after = ha.query("counters")
    assert after["counters"]["gre_clear_dropped"] - before["gre_clear_dropped"] == 3
    assert after["counters"]["tun_out"] == before["tun_out"]


def test_sad_dump_reports_the_manual_keys(manual):
    _, (ha, _) = manual
    sad = {(e["spi"], e["direction"]): e for e in ha.query("sad_json")}
    out = sad[(SPI["ab"], "out")]
    assert out["enc"]["key"] == ENC["ab"].hex() and out["auth"]["key"] == AUTH["ab"].hex()
    assert sad[(SPI["ba"], "in")]["src"] == OUTER["b"]


@pytest.mark.parametrize("manual", [("none", True)], indirect=True)
def test_policy_none_sends_plain_gre(manual, tmp_path):
    from scapy.all import GRE, ICMP, IP, rdpcap

    topo, (ha, _) = manual
    pcap = tmp_path / "wan.pcap"
    with capture(topo.ns["a"], "wan0", pcap):
        out = topo.ping(count=3, interval=0.2)
    assert " 0% packet loss" in out.stdout, out.stdout
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert packets and {p[IP].proto for p in packets} == {47}
    assert all(ICMP in p[GRE].payload for p in packets)
    counters = ha.query("counters")["counters"]
    assert counters["gre_clear_out"] >= 3 and counters["gre_clear_in"] >= 3
    assert counters["esp_out"] == 0


@pytest.mark.parametrize("manual", [("discard", True)], indirect=True)
def test_policy_discard_drops(manual):
    topo, (ha, _) = manual
    out = topo.ping(count=3, interval=0.2, deadline=3)
    assert out.returncode != 0
    counters = ha.query("counters")["counters"]
    assert counters["discarded"] >= 3 and counters["esp_out"] == counters["gre_clear_out"] == 0


@pytest.mark.parametrize("manual", [("ipsec esp/transport//require", False)], indirect=True)
def test_require_without_sa_acquires_queues_a_few_and_drops_the_rest(manual):
    topo, (ha, _) = manual
    out = topo.ping(count=20, interval=0.05, deadline=3)
    assert out.returncode != 0
    c = ha.query("counters")["counters"]
    assert c["queued"] == 8 and c["no_sa_dropped"] >= 12
    assert 1 <= c["acquires"] <= 4 and c["esp_out"] == c["gre_clear_out"] == 0
    assert ha.query("counters")["tunnels"][0]["queued"] == 8


@pytest.mark.parametrize("manual", [("ipsec esp/transport//use", False)], indirect=True)
def test_use_without_sa_sends_in_clear_and_acquires(manual):
    topo, (ha, _) = manual
    out = topo.ping(count=3, interval=0.2)
    assert " 0% packet loss" in out.stdout, out.stdout
    c = ha.query("counters")["counters"]
    assert c["gre_clear_out"] >= 3 and c["acquires"] >= 1 and c["esp_out"] == 0


def test_gre_keys_pick_the_tunnel(topo):
    """Two tunnels between the same routers, told apart by their GRE keys (RFC 2890)."""
    harnesses = []
    try:
        for side, other in (("a", "b"), ("b", "a")):
            me, peer = ("10.1.2.1", "10.1.2.2") if side == "a" else ("10.1.2.2", "10.1.2.1")
            extra = ("--key", "1", "--extra",
                     f"tun1,{OUTER[side]},{OUTER[other]},{me},{peer},1400,2")
            harnesses.append(Harness(topo, side, setkey_text(side), extra))
        topo.route_lans()  # makes sure tun0 exists on both; then the LANs go through tun1
        for side, other in (("a", "b"), ("b", "a")):
            in_ns(topo.ns[side], "ip", "route", "replace", LAN[other][2], "dev", "tun1")
        out = topo.ping(count=5, interval=0.2)
        assert " 0% packet loss" in out.stdout, out.stdout

        def rx_packets(side: str, dev: str) -> int:
            stats = json.loads(in_ns(topo.ns[side], "ip", "-j", "-s", "link", "show", dev).stdout)
            return stats[0]["stats64"]["rx"]["packets"]

        for side in ("a", "b"):
            assert rx_packets(side, "tun1") >= 5 and rx_packets(side, "tun0") == 0
    finally:
        for h in harnesses:
            h.stop()
