"""Drop reasons: the first of each reason is logged once, the rest only counted and summed up."""

import logging

from pyike.droplog import DropLog

REASONS = {"unknown_spi": "ESP with an unknown SPI", "malformed": "a malformed packet"}


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_first_occurrence_once_then_counted_only(caplog):
    caplog.set_level(logging.INFO)
    d = DropLog(logging.getLogger("t"), "ESP:", REASONS, summary_every_s=100)
    d.check({"unknown_spi": 0, "malformed": 0}, 0.0)
    assert _lines(caplog) == []
    for n in range(1, 50):
        d.check({"unknown_spi": n, "malformed": 0}, float(n) / 10)
    assert _lines(caplog) == [
        "ESP: dropped ESP with an unknown SPI; further ones are counted only [unknown_spi]"]
    d.check({"unknown_spi": 60, "malformed": 3}, 10.0, {"malformed": "bad GRE"})
    assert _lines(caplog)[1] == (
        "ESP: dropped a malformed packet (bad GRE); further ones are counted only [malformed]")
    assert len(caplog.records) == 2


def test_summary_reports_what_changed_since_the_last_one(caplog):
    caplog.set_level(logging.INFO)
    d = DropLog(logging.getLogger("t"), "ESP:", REASONS, summary_every_s=100)
    d.check({"unknown_spi": 5}, 0.0)
    d.check({"unknown_spi": 7}, 50.0)
    assert len(caplog.records) == 1  # not yet due
    d.check({"unknown_spi": 9, "malformed": 2}, 100.0)
    assert _lines(caplog)[-1] == "ESP: dropped in the last 100 s: unknown_spi=9 malformed=2"
    count = len(caplog.records)
    d.check({"unknown_spi": 9, "malformed": 2}, 200.0)
    assert len(caplog.records) == count  # nothing new: no summary
    d.check({"unknown_spi": 10, "malformed": 2}, 300.0)
    assert _lines(caplog)[-1] == "ESP: dropped in the last 100 s: unknown_spi=1"
