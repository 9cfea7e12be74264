"""`aftersales bench console` at a small size: it loads the stories through the console's and
followup's consumers, then times every page and reports what it measured (the figures are
reported, not asserted: timings belong to the bench, not to a test)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from tools.bench.console import measure

pytestmark = pytest.mark.infra


async def test_the_console_bench_loads_the_stories_and_times_every_page(infra: None) -> None:
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        figures = await measure(customers=400, events=4_000, requests=12, seed=5, progress=progress)
    writing, consuming = progress.tasks
    assert writing.total == writing.completed == figures["events_written"], "the bar counts every event written"
    assert consuming.completed == consuming.total is not None, "the backlog seen, consumed to the end"
    assert figures["customers"] == 400 and figures["rows"]["vehicles"] == 400
    assert figures["events_written"] >= 4_000
    assert figures["events_consumed"] >= figures["events_written"], "the console read every event written"
    assert figures["calls_due"] >= 8, "the desk had calls to show (one customer in fifty was in this week)"
    assert set(figures["pages"]) == {"baseline: /health", "desk (queue from followup)", "customer page", "search",
                                     "complaint worklist (from complaints)", "complaint case page", "quality alerts",
                                     "parts accuracy, 8 weeks", "supervisor targets and workload",
                                     "weekly report as XLSX", "monthly report as XLSX", "targets by region",
                                     "SLA cases behind a week", "scored calls behind a week",
                                     "shipments behind a week"}
    for page, timing in figures["pages"].items():
        assert 0 < timing["p50"] <= timing["p95"] <= timing["max"], page
