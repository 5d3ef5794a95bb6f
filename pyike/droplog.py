"""Drop reasons in the log without a line per packet.

Both processes count what they drop; this turns counters into log lines from a periodic check,
off the packet path: the first drop of each reason is logged once, later ones are only counted
(`pyikectl status` shows them), and a summary of what changed is logged now and then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

SUMMARY_EVERY_S = 300.0


class DropLog:
    def __init__(self, logger: logging.Logger, source: str, reasons: Mapping[str, str], *,
                 summary_every_s: float = SUMMARY_EVERY_S) -> None:
        """`source` starts each line (which process); `reasons` maps a counter name to what it
        counts, in words."""
        self.log = logger
        self.source = source
        self.reasons = dict(reasons)
        self.summary_every_s = summary_every_s
        self.first_seen: set[str] = set()
        self.at_summary: dict[str, int] = dict.fromkeys(self.reasons, 0)
        self.next_summary: float | None = None

    def check(self, counters: Mapping[str, int], now: float,
              detail: Mapping[str, str] | None = None) -> None:
        """Log the reasons seen for the first time, and the summary when it is due.

        `detail` adds words to a reason's first line (never packet contents or keys).
        """
        for name, words in self.reasons.items():
            if name not in self.first_seen and counters.get(name, 0):
                self.first_seen.add(name)
                extra = f" ({detail[name]})" if detail and name in detail else ""
                self.log.warning("%s dropped %s%s; further ones are counted only [%s]",
                                 self.source, words, extra, name)
        if self.next_summary is None:
            self.next_summary = now + self.summary_every_s
        elif now >= self.next_summary:
            self.next_summary = now + self.summary_every_s
            self.summary(counters)

    def summary(self, counters: Mapping[str, int]) -> None:
        """One line with what each reason dropped since the last summary, if anything."""
        changed = {name: counters.get(name, 0) - before for name, before in self.at_summary.items()
                   if counters.get(name, 0) != before}
        self.at_summary = {name: counters.get(name, 0) for name in self.reasons}
        if changed:
            self.log.info("%s dropped in the last %.0f s: %s", self.source, self.summary_every_s,
                          " ".join(f"{k}={v}" for k, v in changed.items()))
