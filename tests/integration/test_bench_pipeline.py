"""`aftersales bench pipeline` at a small size: what it times is every pickup's FollowUpScheduled,
beside a baseline that copied every record (no figures are asserted: speed is the bench's job)."""

from __future__ import annotations

import pytest

from aftersales.bench.pipeline import run

pytestmark = [pytest.mark.infra, pytest.mark.slow]


async def test_the_pipeline_bench_waits_for_every_output_and_reports_both_sides(infra: None) -> None:
    result = await run(1_000, latency_rate=200, record=False)
    for measured in (result.baseline, result.system):
        assert measured.events == 1_000 and len(measured.latencies) == 1_000 and measured.seconds > 0
        assert all(latency >= 0 for latency in measured.latencies), "an output is never seen before its input"
    assert len(result.system_at_rate.latencies) == len(result.baseline_at_rate.latencies) == 1_000
    assert result.rate == 200
    assert set(result.peak_rss_mb) == {"intake", "followup"} and all(result.peak_rss_mb.values())
    figures = result.figures()
    assert figures["events"] == 1_000 and 0 < figures["ratio"]  # type: ignore[operator]
