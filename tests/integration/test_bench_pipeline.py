"""`aftersales bench pipeline` at a small size: what it times is every pickup's FollowUpScheduled,
beside a baseline that copied every record and one that carried every record through two hops
with the kernel's guarantees (no speed is asserted: that is the bench's job), and what it
measures of the cost is there."""

from __future__ import annotations

import pytest

from tools.bench.pipeline import run
from tests.support import TEST_NOW

pytestmark = [pytest.mark.infra, pytest.mark.slow]


async def test_the_pipeline_bench_waits_for_every_output_and_reports_both_sides(infra: None) -> None:
    result = await run(1_000, latency_rate=200, record=False, steady=(0.5,), now=TEST_NOW)
    assert result.transactional is not None and result.usage is not None and result.transactional_usage is not None
    for measured in (result.baseline, result.transactional, result.system):
        assert measured.events == 1_000 and len(measured.latencies) == 1_000 and measured.seconds > 0
        assert all(latency >= 0 for latency in measured.latencies), "an output is never seen before its input"
    assert len(result.system_at_rate.latencies) == len(result.baseline_at_rate.latencies) == 1_000
    assert result.rate == 200
    assert set(result.peak_rss_mb) == {"intake", "followup"} and all(result.peak_rss_mb.values())
    # each hop committed at least one transaction, and the services did measurable work
    assert result.transactional_usage.transactions_per_event > 0 and result.usage.transactions_per_event > 0
    assert result.usage.cpu_us_per_event["intake"] > 0 and result.usage.cpu_us_per_event["followup"] > 0
    assert result.usage.cpu_us_per_event["postgres"] > 0
    [steady] = result.steady
    assert steady.rate == round(result.system.rate * 0.5) and steady.achieved > 0
    figures = result.figures()
    assert figures["events"] == 1_000 and figures["steady"] and "ratio_to_transactional" in figures
