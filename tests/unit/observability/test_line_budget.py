"""LineBudget: a client cannot make the server write more than a bounded number of lines."""

from __future__ import annotations

import logging
import time

from ferry.observability.logging import LineBudget


def test_past_the_budget_lines_are_counted_and_the_next_window_says_how_many(caplog):
    logger = logging.getLogger("ferry.test.budget")
    budget = LineBudget(logger, "refusals", lines=3, seconds=0.05)
    with caplog.at_level(logging.INFO, logger="ferry.test.budget"):
        allowed = [budget.allow() for _ in range(10)]
        assert allowed == [True] * 3 + [False] * 7
        assert not caplog.records  # nothing written yet: the count waits for the next window
        time.sleep(0.06)
        assert budget.allow()
    summary = [r for r in caplog.records if "not logged" in r.getMessage()]
    assert len(summary) == 1
    assert summary[0].getMessage().startswith("7 more refusals were not logged")
    assert summary[0].not_logged == 7
