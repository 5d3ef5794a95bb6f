"""SPD semantics: ordering, selector matching, spdupdate/spddelete, all-or-nothing apply."""

from __future__ import annotations

import ipaddress

import pytest

from spd.db import SPD, SpdError
from spd.dump import format_spd, spd_json
from spd.parse import SetkeyError, parse_setkey
from spd.policy import MANUAL_REQID_MAX, PRIORITY_DEFAULT, PRIORITY_HIGH


def load(text: str, spd: SPD | None = None, now: float = 100.0) -> SPD:
    spd = spd or SPD()
    spd.apply(parse_setkey(text, "t.conf"), now=now)
    return spd


def label(policy) -> str | None:
    """Which test policy matched: its first rule's level, else its action; None if none."""
    if policy is None:
        return None
    return policy.rules[0].level if policy.rules else policy.action


def test_higher_priority_wins_regardless_of_order():
    spd = load("spdadd 10.0.0.0/8 10.0.0.0/8 any -P out none;\n"
               "spdadd 10.1.0.0/16 10.0.0.0/8 any -P out prio high discard;\n"
               "spdadd 10.1.2.0/24 10.0.0.0/8 any -P out prio low ipsec esp/transport//use;\n")
    assert label(spd.lookup("out", "10.1.2.3", "10.9.9.9", 6, 1, 2)) == "discard"
    assert label(spd.lookup("out", "10.2.2.3", "10.9.9.9", 6, 1, 2)) == "none"
    assert [p.priority for p in spd.policies("out")] == [PRIORITY_HIGH, PRIORITY_DEFAULT,
                                                        0xC0000000]


def test_equal_priorities_keep_insertion_order_not_specificity():
    spd = load("spdadd 10.0.0.0/8 10.0.0.0/8 any -P out none;\n"
               "spdadd 10.1.2.3 10.4.5.6 any -P out discard;\n")
    # The broader policy came first, so it shadows the host policy (no longest-prefix rule).
    assert label(spd.lookup("out", "10.1.2.3", "10.4.5.6", 6)) == "none"
    spd = load("spdadd 10.1.2.3 10.4.5.6 any -P out discard;\n"
               "spdadd 10.0.0.0/8 10.0.0.0/8 any -P out none;\n")
    assert label(spd.lookup("out", "10.1.2.3", "10.4.5.6", 6)) == "discard"


def test_numeric_priorities_interleave():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P out prio 5 ipsec esp/transport//use;\n"
               "spdadd 10.0.0.1 10.0.0.2 tcp -P out prio 6 ipsec esp/transport//require;\n"
               "spdadd 10.0.0.1 10.0.0.2 udp -P out prio -1 discard;\n")
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 6)) == "require"  # prio 6 first
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 17)) == "use"  # before prio -1
    assert [p.priority for p in spd.policies("out")] == [PRIORITY_DEFAULT - 6,
                                                        PRIORITY_DEFAULT - 5,
                                                        PRIORITY_DEFAULT + 1]


def test_ports_protocols_and_directions():
    spd = load("spdadd 10.0.0.1[any] 10.0.0.2[22] tcp -P out discard;\n"
               "spdadd 10.0.0.1[5000] 10.0.0.2 udp -P out none;\n"
               "spdadd 10.0.0.2 10.0.0.1 any -P in discard;\n"
               "spdadd 10.0.0.1 10.0.0.2 any -P fwd none;\n")
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 6, 40000, 22)) == "discard"
    assert spd.lookup("out", "10.0.0.1", "10.0.0.2", 6, 40000, 23) is None
    assert spd.lookup("out", "10.0.0.1", "10.0.0.2", 17, 40000, 22) is None
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 17, 5000, 53)) == "none"
    assert spd.lookup("out", "10.0.0.1", "10.0.0.2", 17, 5001, 53) is None
    assert label(spd.lookup("in", "10.0.0.2", "10.0.0.1", 50)) == "discard"
    assert label(spd.lookup("fwd", "10.0.0.1", "10.0.0.2", 47)) == "none"
    assert spd.lookup("sideways", "10.0.0.1", "10.0.0.2", 47) is None


@pytest.mark.parametrize("form", [
    lambda a: ipaddress.ip_address(a).packed,
    lambda a: a,
    lambda a: ipaddress.ip_address(a),
    lambda a: memoryview(ipaddress.ip_address(a).packed),
    lambda a: bytearray(ipaddress.ip_address(a).packed),
])
def test_address_forms_agree(form):
    spd = load("spdadd 2001:db8::/64 2001:db8:1::/48 any -P out discard;\n"
               "spdadd 198.18.0.0/15 198.18.0.0/15 gre -P out none;\n")
    assert label(spd.lookup("out", form("2001:db8::5"), form("2001:db8:1:2::1"), 6)) == "discard"
    assert spd.lookup("out", form("2001:db8:0:1::5"), form("2001:db8:1:2::1"), 6) is None
    assert label(spd.lookup("out", form("198.19.255.1"), form("198.18.0.1"), 47)) == "none"
    assert spd.lookup("out", form("198.20.0.1"), form("198.18.0.1"), 47) is None


def test_mixed_or_malformed_addresses_match_nothing():
    spd = load("spdadd 0.0.0.0/0 0.0.0.0/0 any -P out discard;\n"
               "spdadd ::/0 ::/0 any -P out discard;\n")
    assert spd.lookup("out", bytes(4), bytes(16), 6) is None
    assert spd.lookup("out", b"\x01\x02\x03", bytes(4), 6) is None
    assert spd.lookup("out", "not an address", "10.0.0.1", 6) is None
    assert label(spd.lookup("out", bytes(4), bytes(4), 6)) == "discard"


def test_spdadd_twice_is_refused_and_nothing_of_the_file_is_applied():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P out none;\n")
    before = format_spd(spd, pid=1)
    text = ("spdflush;\n"
            "spdadd 10.0.0.3 10.0.0.4 any -P out discard;\n"
            "spdadd 10.0.0.3 10.0.0.4 any -P out prio high none;\n")
    with pytest.raises(SetkeyError) as err:
        load(text, spd)
    assert (err.value.line, err.value.col, err.value.token) == (3, 1, "spdadd")
    assert format_spd(spd, pid=1) == before
    assert spd.lookup("out", "10.0.0.3", "10.0.0.4", 6) is None
    with pytest.raises(SetkeyError) as err:
        load("spddelete 10.0.0.9 10.0.0.4 any -P out;", spd)
    assert err.value.line == 1 and "no policy" in err.value.msg


def test_spdupdate_replaces_in_place_of_spid_and_spddelete_removes():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P out none;\n"
               "spdadd 10.0.0.1 10.0.0.2 tcp -P out none;\n")
    first = spd.lookup("out", "10.0.0.1", "10.0.0.2", 6)
    load("spdupdate 10.0.0.1 10.0.0.2 any -P out discard;\n", spd, now=200.0)
    updated = spd.policies("out")
    assert [p.action for p in updated] == ["none", "discard"]  # moved to the group's end
    assert updated[1].spid == first.spid
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 6)) == "none"  # the tcp one now
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 17)) == "discard"
    load("spdupdate 10.0.0.5 10.0.0.6 any -P in none;\n", spd)  # update of nothing adds
    assert len(spd) == 3
    # spddelete names the selector and direction only; the action given does not matter.
    load("spddelete 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//require;\n", spd)
    assert spd.lookup("out", "10.0.0.1", "10.0.0.2", 17) is None
    assert len(spd) == 2


def test_spids_encode_the_direction_and_are_not_reused():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P in none;\n"
               "spdadd 10.0.0.1 10.0.0.2 any -P out none;\n"
               "spdadd 10.0.0.1 10.0.0.2 any -P fwd none;\n")
    spids = {p.direction: p.spid for p in spd.policies()}
    assert spids == {"in": 8, "out": 9, "fwd": 18}  # 8n + direction, never 0
    load("spdflush; spdadd 10.0.0.1 10.0.0.2 any -P out none;", spd)
    assert spd.policies()[0].spid == 25


def test_bare_unique_gets_a_kernel_style_reqid():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//unique;\n"
               "spdadd 10.0.0.2 10.0.0.1 any -P in ipsec esp/transport//unique:7;\n"
               "spdadd 10.0.0.3 10.0.0.1 any -P in ipsec esp/transport//unique;\n")
    reqids = [p.rules[0].reqid for p in spd.policies()]
    assert reqids == [7, MANUAL_REQID_MAX + 2, MANUAL_REQID_MAX + 1]
    assert "esp/transport//unique#16384" in format_spd(spd, pid=1)
    assert "esp/transport//unique:7" in format_spd(spd, pid=1)


def test_lookup_memo_follows_changes():
    spd = load("spdadd 10.0.0.1 10.0.0.2 any -P out none;\n")
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 47)) == "none"
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 47)) == "none"
    load("spdadd 10.0.0.1 10.0.0.2 gre -P out prio high discard;\n", spd)
    assert label(spd.lookup("out", "10.0.0.1", "10.0.0.2", 47)) == "discard"
    spd.flush()
    assert spd.lookup("out", "10.0.0.1", "10.0.0.2", 47) is None


def test_lookup_memo_is_bounded():
    spd = load("spdadd 10.0.0.0/8 10.0.0.0/8 any -P out none;\n")
    for i in range(5000):
        spd.lookup("out", (10 << 24 | i).to_bytes(4, "big"), b"\x0a\x00\x00\x01", 6)
    assert len(spd._cache) <= 4096


def test_touch_hold_release_and_the_json_view():
    spd = load("spdadd 10.0.0.1 10.0.0.2 gre 0.0.0.9 -P out prio def + 3 ipsec "
               "esp/tunnel/198.18.0.1-198.18.0.2/require;\n", now=1000.0)
    (p,) = spd.policies()
    spd.touch(p.spid, 1234.5)
    spd.touch(999, 1.0)  # an unknown spid is ignored
    spd.hold(999)
    spd.release(999)
    spd.hold(p.spid)
    spd.hold(p.spid)
    spd.release(p.spid)
    (j,) = spd_json(spd)
    assert j["spid"] == p.spid and j["direction"] == "out" and j["gre_key"] == 9
    assert (j["created"], j["lastused"], j["refcnt"]) == (1000.0, 1234.5, 2)
    assert j["priority_text"] == "prio def + 3" and j["priority"] == PRIORITY_DEFAULT - 3
    assert j["rules"] == [{"protocol": "esp", "mode": "tunnel", "src": "198.18.0.1",
                           "dst": "198.18.0.2", "sport": 0, "dport": 0, "level": "require",
                           "reqid": 0}]
    assert j["src"] == "10.0.0.1/32" and j["proto_name"] == "gre"


def test_direct_add_refuses_duplicates_and_remove_by_spid():
    spd = SPD()
    p = parse_setkey("spdadd 10.0.0.1 10.0.0.2 any -P out none;", "t").commands[0].policy
    installed = spd.add(p, now=5.0)
    with pytest.raises(SpdError):
        spd.add(p, now=6.0)
    assert spd.get(installed.spid) == installed
    assert spd.remove(installed.spid) == installed
    assert spd.remove(installed.spid) is None
    assert format_spd(spd) == "No SPD entries.\n"
