"""pyikectl's output against racoonctl's layouts (racoonctl.c's dump_isakmp_sa, print_schedule
and print_evt, racoonctl(8)), and the --json document beside them."""

from __future__ import annotations

import time

import pytest

from pyike import feed, show


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


ROW = {"src": "198.18.0.1", "src_port": 500, "dst": "198.18.0.2", "dst_port": 500,
       "icookie": "a3e1b8ebf4926cc6", "rcookie": "0cc6ac95c4f8141e", "state": "established",
       "racoon_state": 9, "side": "initiator", "exchange": "main",
       "created": 1_000_000_000.0, "phase2": 2}
COOKIES = "a3e1b8ebf4926cc6:0cc6ac95c4f8141e"
CREATED = "2001-09-09 01:46:40"  # 1e9 seconds, in UTC

# racoonctl's three headers, as its source prints them
HEADER_0 = "Destination            Cookies                           Created"
HEADER_1 = ("Destination            Cookies                           ST S  V E Created     "
            "        Phase2")
HEADER_2 = ("Source                                        Destination                       "
            "            Cookies                           ST S  V E Created             Phase2")


def test_default_layout_is_destination_cookies_created():
    header, row = show.format_isakmp([ROW]).splitlines()
    assert header == HEADER_0
    # the address field is 22 wide, each field is followed by one blank (also the last)
    assert row == f"{'198.18.0.2.500':<22} {COOKIES} {CREATED} "
    assert row.split()[0] == "198.18.0.2.500"  # what scripts read from the first column


def test_l_adds_state_side_version_exchange_and_phase2_count():
    header, row = show.format_isakmp([ROW], 1).splitlines()
    assert header == HEADER_1
    assert row == f"{'198.18.0.2.500':<22} {COOKIES}  9 I 10 M {CREATED}      2 "
    # the columns start where the header's words do
    for word, value in (("ST", " 9"), ("Created", CREATED), ("Phase2", "     2")):
        at = header.index(word) if word != "ST" else header.index("ST")
        assert row[at:at + len(value)] == value


def test_ll_adds_the_source_and_widens_the_addresses():
    header, row = show.format_isakmp([dict(ROW, side="responder", exchange="aggressive")],
                                     5).splitlines()  # -lll and beyond are -ll
    assert header == HEADER_2
    assert row == (f"{'198.18.0.1.500':<45} {'198.18.0.2.500':<45} {COOKIES}  9 R 10 A "
                   f"{CREATED}      2 ")


def test_an_sa_without_a_creation_time_and_a_long_address():
    v6 = dict(ROW, dst="2001:db8:ffff:ffff:ffff:ffff:ffff:1", dst_port=4500, created=None)
    row = show.format_isakmp([v6]).splitlines()[1]
    # the address is cut so that `.port` fits in the 22 columns; 19 blanks for no time
    assert row == f"2001:db8:ffff:fff.4500 {COOKIES} {' ' * 19} "
    assert len(row.split(" ")[0]) == 22


def test_schedule_layout():
    rows = [{"timer": "phase1-lifetime", "peer": "198.18.0.2", "created": 1_000_000_000.0,
             "due": 1_000_000_100.0}]
    text = show.format_schedule(rows, mono_now=5000.0, wall_now=1_000_000_010.0)
    header, row = text.splitlines()
    assert header == "index    tick     xtime    created"
    assert row == f"{1:<8} {90:<8} {5090:<8} {CREATED} phase1-lifetime 198.18.0.2"


@pytest.mark.parametrize("code, text", [
    (feed.EVT_PHASE1_UP, "Phase 1 established"),
    (feed.EVT_PHASE2_UP, "Phase 2 established"),
    (feed.EVT_PHASE1_DPD_TIMEOUT, "Phase 1 error: dead peer detected"),
])
def test_event_lines(code, text):
    record = feed.event(code, ("198.18.0.1", 500), ("198.18.0.2", 4500))
    assert show.format_event(record) == f"{text} : 198.18.0.1[500] -> 198.18.0.2[4500]\n"


def test_an_event_racoonctl_has_no_words_for_and_one_without_addresses():
    record = feed.event(feed.EVT_PHASE1_PEER_DELETED, ("198.18.0.1", 500), ("198.18.0.2", 500))
    assert show.format_event(record) == "Event 262: 198.18.0.1[500] -> 198.18.0.2[500]\n"
    quit_line = show.format_event(feed.event(feed.EVT_RACOON_QUIT, None, None))
    assert quit_line == "Racoon terminated : unknown -> unknown\n"


def test_json_document_has_a_version_and_iso_times():
    doc = show.json_document("show-sa", [dict(ROW, expires=None, established=0)],
                             now=1_000_000_001.0)
    assert doc["version"] == show.JSON_VERSION and doc["verb"] == "show-sa"
    assert doc["time"] == "2001-09-09T01:46:41+00:00"
    row = doc["data"][0]
    assert row["created"] == "2001-09-09T01:46:40+00:00"
    assert row["expires"] is None and row["established"] is None  # never
    assert row["phase2"] == 2 and row["src_port"] == 500  # counts stay numbers
