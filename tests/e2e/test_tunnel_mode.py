"""pyike <-> pyike subnet to subnet in ESP tunnel mode across network namespaces, on a racoon
site's files (examples/tunnel: racoon.conf and setkey.conf as racoon reads them, plus pyike's
tunnel_device), over IPv4 and over IPv6 outer addresses: ping and iperf3 between the LAN hosts,
the wire shows only IKE and ESP, scapy opens the ESP with the keys pyike shows, and the routes
into the device come and go with pyike; and the seed's GRE set-up over IPv6 outer addresses."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.netns import LAN, OUTER, OUTER6, TUNNEL, capture, in_ns
from tests.e2e.test_pyike_pair import (
    SCAPY_AUTH,
    SCAPY_ENC,
    first_pings,
    log_of,
    sad,
    wait_for,
)

pytestmark = pytest.mark.netns

DEVICE = "ipsec0"  # examples/tunnel's tunnel_device


def bring_up(topo, outer: dict[str, str]) -> None:
    topo.write_configs(source=TUNNEL, outer=outer)
    for r in topo.routers.values():
        r.start()
    first_pings(topo)


def scapy_sas(router, header) -> dict:
    from scapy.layers.ipsec import ESP, SecurityAssociation

    return {e["spi"]: SecurityAssociation(
        ESP, spi=e["spi"], crypt_algo=SCAPY_ENC[e["enc"]["alg"]],
        crypt_key=bytes.fromhex(e["enc"]["key"]), auth_algo=SCAPY_AUTH[e["auth"]["alg"]],
        auth_key=bytes.fromhex(e["auth"]["key"]), tunnel_header=header)
        for e in sad(router)}


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_lan_to_lan_in_tunnel_mode(family, tmp_path):
    from scapy.all import ICMP, IP, UDP, IPv6, rdpcap

    from tests.e2e.conftest import _can_run
    from tests.e2e.netns import Topology

    if reason := _can_run():
        pytest.skip(reason)
    v6 = family == "ipv6"
    outer = OUTER6 if v6 else OUTER
    topo = Topology(f"pk{os.getpid() % 10000}{family}", ipv6=v6)
    pcap = tmp_path / "wan.pcap"
    try:
        topo.create()
        with capture(topo.ns["a"], "wan0", pcap):
            bring_up(topo, outer)
            out = topo.ping(count=5, interval=0.2, size=300)
            assert " 0% packet loss" in out.stdout, out.stdout
        a = topo.routers["a"]
        entries = sad(a)
        assert {e["mode"] for e in entries} == {"tunnel"} and len(entries) == 2
        assert {(e["src"], e["dst"]) for e in entries} == {(outer["a"], outer["b"]),
                                                          (outer["b"], outer["a"])}
        esp = a.ctl("ss", "esp").stdout
        assert esp.count("esp mode=tunnel") == 2, esp
        routes = in_ns(topo.ns["a"], "ip", "route", "show", LAN["b"][2]).stdout
        assert f"dev {DEVICE}" in routes, routes
        status = a.ctl_json("status")
        assert status["phase2"] == 1 and status["device"]["routes"] == [LAN["b"][2]]
        assert f"{DEVICE}: ESP tunnel mode" in a.ctl("status").stdout

        # the wire: IKE (UDP 500) and ESP between the routers' outer addresses, nothing else
        ip_layer = IPv6 if v6 else IP
        # IPv6's own link traffic aside: neighbour discovery (ICMPv6, 58) and MLD reports
        # (behind a hop-by-hop header, 0)
        packets = [p for p in rdpcap(str(pcap))
                   if ip_layer in p and not (v6 and p[IPv6].nh in (0, 58))]
        protos = {p[ip_layer].nh if v6 else p[ip_layer].proto for p in packets}
        assert protos <= {17, 50} and 50 in protos, protos
        assert all(p[UDP].sport == 500 and p[UDP].dport == 500 for p in packets if UDP in p)
        assert {p[ip_layer].src for p in packets} == {outer["a"], outer["b"]}
        keys = {}
        for e in entries:
            keys.update(scapy_sas(a, ip_layer(src=e["src"], dst=e["dst"])))
        echoes = set()
        for p in packets:
            if (p[ip_layer].nh if v6 else p[ip_layer].proto) != 50:
                continue
            spi = int.from_bytes(bytes(p[ip_layer].payload)[:4], "big")
            clear = keys[spi].decrypt(ip_layer(bytes(p[ip_layer])))
            assert IP in clear and ICMP in clear  # the whole inner IPv4 packet, nothing else
            echoes.add((clear[IP].src, clear[IP].dst, clear[ICMP].type))
        assert (LAN["a"][1], LAN["b"][1], 8) in echoes and (LAN["b"][1], LAN["a"][1], 0) in echoes

        # iperf3 TCP between the LAN hosts
        server = subprocess.Popen(["ip", "netns", "exec", topo.ns["lb"], "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: "5201" in in_ns(topo.ns["lb"], "ss", "-ltn").stdout, 10,
                     what="iperf3 listening")
            res = in_ns(topo.ns["la"], "iperf3", "-c", LAN["b"][1], "-t", "2", "-J",
                        check=False, timeout=30)
            report = json.loads(res.stdout)
            assert "error" not in report, report.get("error")
            assert report["end"]["sum_received"]["bytes"] > 100_000
        finally:
            server.kill()
            server.wait(5)

        # stopping pyike takes its routes along with the device it made
        a.stop()
        wait_for(lambda: DEVICE not in in_ns(topo.ns["a"], "ip", "route", "show",
                                             LAN["b"][2]).stdout, 10, what="route gone")
    finally:
        topo.destroy()


def test_gre_over_ipv6_outside(tmp_path):
    """The seed article's GRE set-up with IPv6 outer addresses: IKE, ESP and GRE (as ip6gre puts
    it on the wire) over IPv6, IPv4 LANs inside; the wire carries IKE and ESP only."""
    from scapy.all import UDP, IPv6, rdpcap

    from tests.e2e.conftest import _can_run
    from tests.e2e.netns import Topology

    if reason := _can_run():
        pytest.skip(reason)
    a6, b6 = OUTER6["a"], OUTER6["b"]
    setkey = {side: (f"spdadd {me}/128 {peer}/128 gre -P out ipsec esp/transport//require;\n"
                     f"spdadd {peer}/128 {me}/128 gre -P in ipsec esp/transport//require;\n")
              for side, me, peer in (("a", a6, b6), ("b", b6, a6))}
    topo = Topology(f"pk{os.getpid() % 10000}gre6", ipv6=True)
    pcap = tmp_path / "wan.pcap"
    try:
        topo.create()
        topo.write_configs(outer=OUTER6, setkey_text=setkey)
        with capture(topo.ns["a"], "wan0", pcap):
            for r in topo.routers.values():
                r.start()
            topo.route_lans()
            out = topo.ping(count=5, interval=0.2, deadline=30)
            assert " 0% packet loss" in out.stdout, out.stdout + log_of(topo.routers["a"])
        entries = sad(topo.routers["a"])
        assert {(e["src"], e["dst"], e["mode"]) for e in entries} == {
            (a6, b6, "transport"), (b6, a6, "transport")}
        packets = [p for p in rdpcap(str(pcap)) if IPv6 in p and p[IPv6].nh not in (0, 58)]
        assert {p[IPv6].nh for p in packets} == {17, 50}
        assert all(p[UDP].dport == 500 for p in packets if UDP in p)
    finally:
        topo.destroy()


def test_two_subnet_pairs_over_one_isakmp_sa(topo):
    """A second policy pair (10.0.1.0/24 <-> 10.0.3.0/24, a network behind lan-b's host) gets
    its own SA pair, negotiated over the same ISAKMP SA; each LAN's traffic rides its own."""
    far = "10.0.3.0/24"
    extra = {"a": (LAN["a"][2], far, OUTER["a"], OUTER["b"]),
             "b": (far, LAN["a"][2], OUTER["b"], OUTER["a"])}
    topo.write_configs(source=TUNNEL)
    for side, (mine, theirs, me, peer) in extra.items():
        setkey = topo.routers[side].workdir / "setkey.conf"
        setkey.write_text(setkey.read_text() + (
            f"spdadd {mine} {theirs} any -P out ipsec esp/tunnel/{me}-{peer}/require;\n"
            f"spdadd {theirs} {mine} any -P in ipsec esp/tunnel/{peer}-{me}/require;\n"))
        conf = topo.routers[side].workdir / "racoon.conf"
        conf.write_text(conf.read_text() + (
            f"\nsainfo address {mine} any address {theirs} any {{\n pfs_group 14;\n"
            " encryption_algorithm aes;\n authentication_algorithm hmac_sha1;\n"
            " compression_algorithm deflate;\n}\n"))
    in_ns(topo.ns["lb"], "ip", "addr", "add", "10.0.3.1/24", "dev", "eth0")
    in_ns(topo.ns["b"], "ip", "route", "add", far, "via", LAN["b"][1])
    for r in topo.routers.values():
        r.start()
    for dst in (LAN["b"][1], "10.0.3.1"):
        out = topo.ping(dst=dst, count=3, interval=0.3, deadline=30)
        assert " 0% packet loss" in out.stdout, out.stdout + log_of(topo.routers["a"])[-3000:]
    a = topo.routers["a"]
    status = a.ctl_json("status")
    assert status["phase1"] == 1 and status["phase2"] == 2
    assert len({e["spi"] for e in sad(a)}) == 4


def test_tunnel_device_changes_apply_on_sighup(topo):
    """SIGHUP with a changed `tunnel_device`: a new MTU in place, a new name made (with the
    routes) before the old device goes, the SAs kept; without the statement the reload is
    refused, as the tunnel policies need it."""
    from tests.e2e.test_reload_gre import _link, _reload

    topo.write_configs(source=TUNNEL)
    for r in topo.routers.values():
        r.start()
    assert topo.ping(count=3, interval=0.3, deadline=30).returncode == 0
    a, ns = topo.routers["a"], topo.ns["a"]
    sas = {e["spi"] for e in sad(a)}
    original = a.conf.read_text()
    index = _link(ns, DEVICE)["ifindex"]

    _reload(a, original.replace(f'tunnel_device "{DEVICE}";',
                                f'tunnel_device "{DEVICE}" {{ mtu 1300; }}'))
    assert "reload refused" not in log_of(a), log_of(a)[-2000:]
    changed = _link(ns, DEVICE)
    assert changed["ifindex"] == index and changed["mtu"] == 1300

    _reload(a, original.replace(f'"{DEVICE}"', '"ipsec1"'))
    assert "reload refused" not in log_of(a), log_of(a)[-2000:]
    assert _link(ns, DEVICE) is None and _link(ns, "ipsec1") is not None
    assert "dev ipsec1" in in_ns(ns, "ip", "route", "show", LAN["b"][2]).stdout
    assert {e["spi"] for e in sad(a)} == sas
    assert topo.ping(count=3, interval=0.2).returncode == 0

    without = "\n".join(line for line in original.splitlines()
                        if not line.startswith("tunnel_device"))
    _reload(a, without)
    assert "reload refused" in log_of(a) and "tunnel_device" in log_of(a)
    assert _link(ns, "ipsec1") is not None  # the old configuration stays in force


def test_a_responder_with_generate_policy_needs_no_policy_of_its_own(topo):
    """Router b's setkey.conf has no policy for a's LAN; with `generate_policy on` it takes a's
    tunnel-mode quick mode, makes the policy pair and the route back from a's selectors, and
    the LANs talk; the pair and the route go with the SAs."""
    topo.write_configs(source=TUNNEL)
    b = topo.routers["b"]
    (b.workdir / "setkey.conf").write_text("flush;\nspdflush;\n")
    conf = b.workdir / "racoon.conf"
    conf.write_text(conf.read_text().replace("exchange_mode main;",
                                             "exchange_mode main;\n        generate_policy on;"))
    for r in topo.routers.values():
        r.start()
    # The first pings start quick mode. Those a sends once its SAs are in reach b through its
    # inbound SA, live since message 2, but b's answers before its pair and its route back
    # (from a's last message, RFC 2409 §5.5) are lost: so the tunnel first, then every ping
    # answered.
    first_pings(topo)
    out = topo.ping(count=3, interval=0.3, deadline=30)
    assert " 0% packet loss" in out.stdout, out.stdout + log_of(b)[-3000:]
    spd = b.ctl_json("spd")
    assert len(spd) == 2, spd
    assert f"dev {DEVICE}" in in_ns(topo.ns["b"], "ip", "route", "show", LAN["a"][2]).stdout
    assert b.ctl("flush-sa", "ipsec").returncode == 0
    wait_for(lambda: not b.ctl_json("spd"), 10,
             what=f"the generated policies gone: {b.ctl('spd').stdout} {b.ctl('sad').stdout}")
    wait_for(lambda: DEVICE not in in_ns(topo.ns["b"], "ip", "route", "show",
                                         LAN["a"][2]).stdout, 10, what="the route gone")


def test_a_responder_takes_the_tunnel_policies_a_setkey_command_adds(topo):
    """Router b starts with an empty SPD and no generate_policy, so it refuses a's tunnel-mode
    quick mode (no policy covers it). `pyike-setkey -c` then adds b's policy pair while pyike
    runs: the responder takes it at once, without a reload, as racoon looks each quick mode up
    in the kernel's SPD, and the LANs talk. After a reload the setkey file's empty SPD is in
    force again, for the responder too."""
    from tests.e2e.test_control_commands import setkey
    from tests.e2e.test_reload_gre import _reload

    topo.write_configs(source=TUNNEL)
    b = topo.routers["b"]
    setkey_conf = b.workdir / "setkey.conf"
    policies = "".join(line + "\n" for line in setkey_conf.read_text().splitlines()
                       if line.startswith("spdadd"))
    assert policies.count("spdadd") == 2
    setkey_conf.write_text("flush;\nspdflush;\n")
    for r in topo.routers.values():
        r.start()

    def refusals() -> int:
        return b.ctl_json("status")["daemon"]["negotiation_failed"]

    topo.ping(count=2, interval=0.3, deadline=5)
    wait_for(lambda: refusals() >= 1, 20, what="b refusing a's quick mode")
    assert not sad(b)

    added = setkey(b, "-c", stdin=policies)
    assert added.returncode == 0 and not added.stderr, added.stderr
    first_pings(topo)
    out = topo.ping(count=3, interval=0.3, deadline=30)
    assert " 0% packet loss" in out.stdout, out.stdout + log_of(b)[-3000:]
    assert len(b.ctl_json("spd")) == 2 and len(sad(b)) == 2

    _reload(b, b.conf.read_text())  # setkey.conf applies again: no policy of b's
    assert "reload refused" not in log_of(b), log_of(b)[-2000:]
    wait_for(lambda: not b.ctl_json("spd"), 10, what="b's SPD as its setkey.conf says")
    before = refusals()
    assert b.ctl("flush-sa", "ipsec").returncode == 0
    topo.ping(count=2, interval=0.3, deadline=5)
    wait_for(lambda: refusals() > before, 20, what="b refusing a's quick mode again")
