"""pyike <-> pyike across network namespaces, each router on the seed article's configuration:
negotiated tunnel, traffic, the wire, the control socket, signals, DPD, INITIAL-CONTACT, rekey
and loss on the IKE port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.e2e.netns import LAN, OUTER, capture, in_ns

pytestmark = pytest.mark.netns

SCAPY_ENC = {"aes-cbc": "AES-CBC", "3des-cbc": "3DES"}
SCAPY_AUTH = {"hmac-sha1": "HMAC-SHA1-96", "hmac-sha256": "SHA2-256-128",
              "hmac-md5": "HMAC-MD5-96"}


def wait_for(predicate, timeout: float, step: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def bring_up(topo, racoon_edit=None, *, ping_deadline: int = 30, start_args=()) -> None:
    topo.write_configs(racoon_edit=racoon_edit)
    for r in topo.routers.values():
        r.start(*start_args)
    topo.route_lans()
    first_pings(topo, ping_deadline)


def first_pings(topo, deadline: int = 30) -> None:
    """Three pings from LAN a to LAN b (the first starts the negotiation); on failure, both
    routers' status and log tails in the assertion."""
    out = topo.ping(count=3, interval=0.5, deadline=deadline)
    if out.returncode != 0:
        details = [out.stdout]
        for side, r in topo.routers.items():
            details.append(f"--- router {side} status:\n{r.ctl('status').stdout}")
            details.append(f"--- router {side} log:\n{log_of(r)[-3000:]}")
        raise AssertionError("\n".join(details))


def sad(router) -> list[dict]:
    return router.ctl_json("sad")


def spis(router) -> set[tuple[int, str]]:
    return {(e["spi"], e["direction"]) for e in sad(router)}


def log_of(router) -> str:
    return router.log.read_text() if router.log.exists() else ""


@pytest.fixture
def up(topo):
    bring_up(topo)
    return topo


def test_ping_and_iperf3_through_the_tunnel(up):
    out = up.ping(count=10, interval=0.1)
    assert " 0% packet loss" in out.stdout, out.stdout
    server = subprocess.Popen(["ip", "netns", "exec", up.ns["lb"], "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        res = in_ns(up.ns["la"], "iperf3", "-c", LAN["b"][1], "-t", "3", "-J", check=False,
                    timeout=30)
        report = json.loads(res.stdout)
        assert "error" not in report, report.get("error")
        assert report["end"]["sum_received"]["bytes"] > 100_000
    finally:
        server.kill()
        server.wait()
    counters = up.routers["a"].ctl_json("status")["dataplane"]
    assert counters["esp_out"] > 100 and counters["gre_clear_out"] == 0


def test_wire_shows_only_isakmp_and_esp_and_scapy_decrypts_it(topo, tmp_path):
    from scapy.all import GRE, ICMP, IP, UDP, rdpcap
    from scapy.layers.ipsec import ESP, SecurityAssociation

    pcap = tmp_path / "wan.pcap"
    with capture(topo.ns["a"], "wan0", pcap):
        bring_up(topo)
        out = topo.ping(count=5, interval=0.2, size=200)
        assert " 0% packet loss" in out.stdout
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert {p[IP].proto for p in packets} == {17, 50}
    assert all(p[UDP].sport == 500 and p[UDP].dport == 500 for p in packets if UDP in p)
    keys = {}
    for e in sad(topo.routers["a"]):
        keys[e["spi"]] = SecurityAssociation(
            ESP, spi=e["spi"], crypt_algo=SCAPY_ENC[e["enc"]["alg"]],
            crypt_key=bytes.fromhex(e["enc"]["key"]), auth_algo=SCAPY_AUTH[e["auth"]["alg"]],
            auth_key=bytes.fromhex(e["auth"]["key"]))
    echoes = set()
    esp_packets = [p for p in packets if p[IP].proto == 50]
    assert len(esp_packets) >= 10
    for p in esp_packets:
        clear = keys[p[ESP].spi].decrypt(p[IP])
        assert clear.proto == 47 and clear[GRE].proto == 0x0800
        inner = clear[GRE].payload
        if ICMP in inner:
            echoes.add((inner[IP].src, inner[IP].dst, inner[ICMP].type))
    assert (LAN["a"][1], LAN["b"][1], 8) in echoes and (LAN["b"][1], LAN["a"][1], 0) in echoes


def test_control_socket_verbs(up):
    a = up.routers["a"]
    isakmp = a.ctl("-ll", "ss", "isakmp").stdout.splitlines()
    assert len(isakmp) == 2 and OUTER["a"] + ".500" in isakmp[1] and OUTER["b"] in isakmp[1]
    esp = a.ctl("ss", "esp").stdout
    assert esp.count("esp mode=transport") == 2 and "E: aes-cbc" in esp and "A: hmac-sha1" in esp
    spd = a.ctl("spd").stdout
    assert f"{OUTER['a']}[any] {OUTER['b']}[any] gre" in spd or f"{OUTER['a']} {OUTER['b']} gre" \
        in spd, spd
    assert "esp/transport//require" in spd
    status = a.ctl_json("status")
    assert status["phase2"] == 1 and status["tunnels"][0]["name"] == "tun0"
    entries = sad(a)
    for e in entries:
        for field in ("src", "dst", "spi", "mode", "enc", "auth", "replay_window", "seq",
                      "counters", "created", "current", "lifetime"):
            assert field in e
    # delete-sa: both ends drop the pair; traffic brings up a new one
    old = spis(a)
    assert a.ctl("ds", "esp", OUTER["a"], OUTER["b"]).returncode == 0
    wait_for(lambda: not (spis(a) & old), 10, what="old SAs gone")
    out = up.ping(count=3, interval=0.5, deadline=30)
    assert out.returncode == 0
    assert spis(a) and not (spis(a) & old)
    bad = a.ctl("ss", "nonsense")
    assert bad.returncode == 1 and "nonsense" in bad.stderr


def test_sighup_keeps_matching_sas_and_drops_the_others(up):
    a, b = up.routers["a"], up.routers["b"]
    before = spis(a)
    setkey = a.workdir / "setkey.conf"
    original = setkey.read_text()
    setkey.write_text(original + "spdadd 10.9.9.1/32 10.9.9.2/32 any -P out discard;\n")
    a.send_signal(signal.SIGHUP)
    wait_for(lambda: len(a.ctl_json("spd")) == 3, 10, what="reloaded SPD")
    assert spis(a) == before
    assert up.ping(count=3, interval=0.2).returncode == 0
    assert spis(a) == before
    # Without the GRE policies the SAs no longer match anything: deleted, on both ends.
    setkey.write_text("flush;\nspdflush;\n")
    a.send_signal(signal.SIGHUP)
    wait_for(lambda: not spis(a), 10, what="SAs deleted after reload")
    wait_for(lambda: not spis(b), 10, what="peer told of the deletion")
    assert a.proc.poll() is None


def test_sigterm_deletes_at_the_peer_removes_tun_and_exits_0(up):
    a, b = up.routers["a"], up.routers["b"]
    assert spis(b)
    assert a.stop(signal.SIGTERM) == 0
    assert in_ns(up.ns["a"], "ip", "link", "show", "tun0", check=False).returncode != 0
    wait_for(lambda: not spis(b), 10, what="peer's SAs deleted")
    assert "ISAKMP-SA deleted" in log_of(b) or "deleted" in log_of(b)


def _fast_dpd(side: str, text: str) -> str:
    return (text.replace("dpd_delay 20;", "dpd_delay 2;")
                .replace("dpd_retry 2;", "dpd_retry 1;"))


def test_dpd_declares_a_killed_peer_dead_and_purges(topo):
    hook_out = topo.tmp / "dead.out"
    hook = topo.tmp / "dead.sh"
    hook.write_text(f'#!/bin/sh\necho "$1 $REMOTE_ADDR" >> {hook_out}\n')
    hook.chmod(0o700)

    def fast_dpd_with_hook(side: str, text: str) -> str:
        return _fast_dpd(side, text).replace(
            "rekey on;", f'rekey on;\n        script "{hook}" phase1_dead;')

    bring_up(topo, fast_dpd_with_hook)
    a, b = topo.routers["a"], topo.routers["b"]
    assert spis(a)
    b.stop(signal.SIGKILL)
    t0 = time.monotonic()
    # dpd_delay x (dpd_maxfail + 1)-ish: 2 s idle, then R-U-THERE every second, 2 failures.
    wait_for(lambda: "seems to be dead" in log_of(a), 20, what="DPD verdict")
    assert time.monotonic() - t0 < 15
    wait_for(lambda: not spis(a), 5, what="SAs purged")
    assert a.ctl_json("status")["phase1"] == 0
    wait_for(lambda: hook_out.exists(), 5, what="phase1_dead hook")
    assert hook_out.read_text().split() == ["phase1_dead", OUTER["b"]]


def test_restarted_peer_initial_contact_and_traffic_within_30s(topo):
    bring_up(topo)  # DPD at the article's 20 s: the stale SAs are still there at restart
    a, b = topo.routers["a"], topo.routers["b"]
    stale = spis(a)
    b.stop(signal.SIGKILL)
    b.start()
    topo.route_lans()
    t0 = time.monotonic()
    out = topo.ping(src="lb", dst=LAN["a"][1], count=3, interval=0.5, deadline=30)
    assert out.returncode == 0, out.stdout + log_of(a)[-2000:]
    assert time.monotonic() - t0 < 30
    wait_for(lambda: not (spis(a) & stale), 10, what="stale SAs cleared")
    assert "initial-contact" in log_of(a).lower()
    assert topo.ping(count=3, interval=0.2).returncode == 0


@pytest.mark.timeout(200)
def test_short_lifetimes_rekey_without_loss_or_clear_text(topo, tmp_path):
    def short(side: str, text: str) -> str:
        return text.replace("lifetime time 86400 seconds;", "lifetime time 30 seconds;")

    bring_up(topo, short)
    a = topo.routers["a"]
    first = spis(a)
    pcap = tmp_path / "leak.pcap"
    with capture(topo.ns["a"], "wan0", pcap, "ip and not esp and not udp port 500"):
        out = topo.ping(count=700, interval=0.1, deadline=90)
    loss = re.search(r"([\d.]+)% packet loss", out.stdout)
    assert loss and float(loss.group(1)) < 1.0, out.stdout
    established = log_of(a).count("IPsec-SA established")
    assert established >= 6, f"only {established // 2} SA pairs in 70 s of 30 s lifetimes"
    assert not (spis(a) & first)
    from scapy.all import rdpcap

    assert len(rdpcap(str(pcap))) == 0, "packets left in clear"


def test_negotiation_completes_with_20_percent_loss_on_udp_500(topo):
    def fast_retransmit(side: str, text: str) -> str:
        return text.replace("log notify;", "log notify;\n\ntimer {\n        counter 10;\n"
                            "        interval 2 sec;\n        phase1 60 sec;\n"
                            "        phase2 60 sec;\n}\n")

    rules = ("table inet pyikeloss {\n"
             " chain in { type filter hook input priority 0;"
             " udp dport 500 numgen random mod 100 < 20 drop; }\n"
             " chain out { type filter hook output priority 0;"
             " udp dport 500 numgen random mod 100 < 20 drop; }\n}\n")
    for side in ("a", "b"):
        in_ns(topo.ns[side], "nft", "-f", "-", input=rules)
    bring_up(topo, fast_retransmit, ping_deadline=90)
    listed = in_ns(topo.ns["a"], "nft", "list", "table", "inet", "pyikeloss").stdout
    assert "numgen random mod 100 < 20" in listed


def test_forwarding_never_waits_on_the_ike_process(up):
    """With the IKE process stopped outright (as if stuck in a DH computation), packets still
    flow: forwarding lives in its own process."""
    a = up.routers["a"]
    assert a.ctl_json("status")["forwarding_pid"] != a.proc.pid
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        out = up.ping(count=20, interval=0.05, deadline=10)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert " 0% packet loss" in out.stdout, out.stdout


def test_reload_applies_new_sainfo_to_the_next_negotiation(up):
    a = up.routers["a"]
    assert {e["lifetime"]["hard_s"] for e in sad(a)} == {86400}
    conf = a.conf
    conf.write_text(conf.read_text().replace("lifetime time 86400 seconds;",
                                             "lifetime time 600 seconds;"))
    assert a.ctl("reload-config").returncode == 0
    assert {e["lifetime"]["hard_s"] for e in sad(a)} == {86400}  # the live SAs stay
    assert a.ctl("ds", "esp", OUTER["a"], OUTER["b"]).returncode == 0
    wait_for(lambda: not sad(a), 10, what="SAs deleted")
    assert up.ping(count=3, interval=0.5, deadline=30).returncode == 0
    assert {e["lifetime"]["hard_s"] for e in sad(a)} == {600}


def test_flush_then_establish_without_traffic(up):
    a, b = up.routers["a"], up.routers["b"]
    assert a.ctl("fs", "ipsec").returncode == 0  # the peer told over the ISAKMP SA
    wait_for(lambda: not spis(a) and not spis(b), 10, what="SAs flushed on both ends")
    assert a.ctl("flush-sa", "isakmp").returncode == 0
    wait_for(lambda: a.ctl_json("status")["phase1"] == 0, 10, what="ISAKMP-SA flushed")
    out = a.ctl("es", "-w", "esp", "inet", OUTER["a"], OUTER["b"], "gre", timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"Phase 2 established : {OUTER['a']}[500] -> {OUTER['b']}[500]\n"
    assert len(spis(a)) == 2 and len(spis(b)) == 2
    assert a.ctl_json("status")["dataplane"]["acquires"] == 1  # only the bring-up's ping
    assert a.ctl("es", "esp", "inet", OUTER["a"], OUTER["b"]).returncode == 0  # EEXIST: done
    # racoon's flush-sa isakmp: a deletes its ISAKMP SAs alone, its IPsec SAs live on; b, as
    # racoon does on an ISAKMP delete (rekey on, DPD on), purges the pair it made and
    # negotiates a new one at once, so that a does not seal into a pair b no longer has
    old = spis(a)
    assert a.ctl("fs", "isakmp").returncode == 0
    wait_for(lambda: old < spis(a) and len(spis(b)) == 2 and not spis(b) & old, 10,
             what="the old pair kept on a, a new one negotiated by b")
    assert [p1["side"] for p1 in a.ctl_json("ss", "isakmp")] == ["responder"]
    assert up.ping(count=3, interval=0.2, deadline=10).returncode == 0
    # racoon's delete-sa isakmp purges the peer: ISAKMP and IPsec SAs
    assert a.ctl("ds", "isakmp", "inet", OUTER["a"], OUTER["b"]).returncode == 0
    wait_for(lambda: a.ctl_json("status")["phase1"] == 0 and not spis(a), 10,
             what="ISAKMP-SA and IPsec-SAs deleted")


def test_daemon_exits_non_zero_when_forwarding_dies(up):
    a = up.routers["a"]
    os.kill(a.ctl_json("status")["forwarding_pid"], signal.SIGKILL)
    assert a.proc.wait(10) == 1
    assert in_ns(up.ns["a"], "ip", "link", "show", "tun0", check=False).returncode != 0


def test_nat_traversal_force_carries_esp_in_udp_4500(topo, tmp_path):
    """`nat_traversal force`: IKE floats to 4500 and ESP rides in UDP (RFC 3948) there."""
    from scapy.all import GRE, ICMP, IP, UDP, Raw, raw, rdpcap
    from scapy.layers.ipsec import ESP, SecurityAssociation

    def natt(side: str, text: str) -> str:
        text = text.replace("rekey on;", "rekey on;\n        nat_traversal force;")
        listen = f"isakmp {OUTER[side]} [500];"
        return text.replace(listen, f"{listen}\n        isakmp_natt {OUTER[side]} [4500];")

    pcap = tmp_path / "wan.pcap"
    with capture(topo.ns["a"], "wan0", pcap):
        bring_up(topo, natt)
        out = topo.ping(count=5, interval=0.2)
        assert " 0% packet loss" in out.stdout
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert {p[IP].proto for p in packets} == {17}, "ESP outside UDP, or something in clear"
    keys = {e["spi"]: e for e in sad(topo.routers["a"])}
    opened = 0
    for p in packets:
        payload = bytes(p[UDP].payload)
        if p[UDP].dport != 4500 or p[UDP].sport != 4500 or len(payload) < 8 \
                or payload[:4] == b"\0\0\0\0":
            continue
        e = keys[int.from_bytes(payload[:4], "big")]
        sa = SecurityAssociation(ESP, spi=e["spi"], crypt_algo=SCAPY_ENC[e["enc"]["alg"]],
                                 crypt_key=bytes.fromhex(e["enc"]["key"]),
                                 auth_algo=SCAPY_AUTH[e["auth"]["alg"]],
                                 auth_key=bytes.fromhex(e["auth"]["key"]))
        clear = sa.decrypt(IP(raw(IP(src=p[IP].src, dst=p[IP].dst, proto=50) / Raw(payload))))
        assert clear.proto == 47 and ICMP in clear[GRE].payload
        opened += 1
    assert opened >= 10
    assert "[4500]->" in log_of(topo.routers["a"])


def test_without_listen_addresses_binds_every_address_and_natt(topo):
    """No `isakmp` lines: the wildcard sockets answer from the address the peer used."""
    def wildcard(side: str, text: str) -> str:
        text = text.replace(f"isakmp {OUTER[side]} [500];", "")
        return text.replace("rekey on;", "rekey on;\n        nat_traversal force;")

    bring_up(topo, wildcard)
    a = topo.routers["a"]
    listening = in_ns(topo.ns["a"], "ss", "-uln").stdout
    assert "0.0.0.0:500 " in listening and "0.0.0.0:4500 " in listening
    assert "[4500]->" in log_of(a)
    assert up_count(a) == 1


def up_count(router) -> int:
    return router.ctl_json("status")["phase2"]


def test_reload_of_a_broken_file_is_refused_and_nothing_changes(up):
    a = up.routers["a"]
    before = spis(a)
    good = a.conf.read_text()
    a.conf.write_text(good.replace("exchange_mode main;", "exchange_mode sideways;"))
    out = a.ctl("reload-config")
    assert out.returncode == 1 and f"{a.conf}:" in out.stderr
    setkey = a.workdir / "setkey.conf"
    a.conf.write_text(good)
    setkey.write_text(setkey.read_text() + "spddelete 10.9.9.1/32 10.9.9.2/32 any -P out;\n")
    out = a.ctl("reload-config")
    assert out.returncode == 1 and "setkey.conf" in out.stderr
    assert spis(a) == before and len(a.ctl_json("spd")) == 2
    assert up.ping(count=3, interval=0.2).returncode == 0
