"""`aftersales bench pipeline` at a small size: what it times is every pickup's FollowUpScheduled,
beside a baseline that copied every record and one that carried every record through two hops
with the kernel's guarantees (no speed is asserted: that is the bench's job), and what it
measures of the cost is there. The checks are of what was measured, each against a bound the
measurement must keep (a latency within its pass, a paced feed no faster than its pace), not of
the sizes and rates the bench was asked for."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from tests.support import TEST_NOW
from tools.bench.harness import Comparison, Pass
from tools.bench.pipeline import run

pytestmark = [pytest.mark.infra, pytest.mark.slow]

EVENTS, LATENCY_RATE, STEADY = 1_000, 200, 0.5


def check_pass(measured: Pass) -> None:
    """Every latency lies within the pass: an output is not seen before its input was sent, nor
    after the pass's last output."""
    assert measured.seconds > 0 and measured.latencies, measured.name
    assert min(measured.latencies) >= 0, f"{measured.name}: an output seen before its input"
    assert max(measured.latencies) <= measured.seconds + 1e-6, f"{measured.name}: a latency longer than the pass"
    assert 0 < measured.pct(0.5) <= measured.pct(0.99), measured.name


def check_comparison(result: Comparison) -> None:
    assert result.transactional is not None and result.usage is not None and result.transactional_usage is not None
    for measured in (result.baseline, result.transactional, result.system, result.baseline_at_rate,
                     result.system_at_rate):
        check_pass(measured)
    # The latency passes were paced, not a backlog: n records at the rate take (n - 1) / rate s to send.
    for measured in (result.baseline_at_rate, result.system_at_rate):
        assert measured.seconds >= (measured.events - 1) / result.rate - 0.001, \
            f"{measured.name} at {result.rate}/s took only {measured.seconds:.2f} s"
    assert set(result.peak_rss_mb) == {"intake", "followup"} and all(result.peak_rss_mb.values())
    # each hop committed at least one transaction, and the services did measurable work
    assert result.transactional_usage.transactions_per_event > 0 and result.usage.transactions_per_event > 0
    assert result.usage.cpu_us_per_event["intake"] > 0 and result.usage.cpu_us_per_event["followup"] > 0
    assert result.usage.cpu_us_per_event["postgres"] > 0
    # The steady feed is a fraction of the measured backlog rate, and its outputs come no faster
    # than it was fed (at least 1,000 records: within 1/999 of the feed rate).
    [steady] = result.steady
    assert steady.rate == round(result.system.rate * STEADY)
    assert 0 < steady.achieved <= steady.rate * 1000 / 999 * 1.001, (steady.achieved, steady.rate)
    assert steady.lag_seconds >= 0 and 0 < steady.p50_ms <= steady.p99_ms
    figures = result.figures()
    assert figures["ratio"] == round(result.system.rate / result.baseline.rate, 3)
    assert figures["ratio_to_transactional"] == round(result.system.rate / result.transactional.rate, 3)
    assert figures["system_p50_ms"] == round(result.system_at_rate.pct(0.5), 1) and figures["steady"]


async def test_the_pipeline_bench_waits_for_every_output_and_reports_both_sides(infra: None) -> None:
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        result = await run(EVENTS, latency_rate=LATENCY_RATE, record=False, steady=(STEADY,), now=TEST_NOW,
                           progress=progress)
    check_comparison(result)
    # A bar per pass, each counting that pass's outputs to the last one.
    bars = {t.description: (t.total, t.completed) for t in progress.tasks}
    assert bars["baseline: pass-through at full speed"] == (EVENTS, EVENTS)
    assert bars["baseline: the guarantees only, at full speed"] == (EVENTS, EVENTS)
    assert bars["pipeline at full speed"] == (EVENTS, EVENTS)
    latency = result.baseline_at_rate.events
    assert bars[f"pipeline: latency at {LATENCY_RATE:,} events/s"] == (latency, latency)
    [steady] = [v for k, v in bars.items() if k.startswith("fed steadily")]
    assert steady[0] == steady[1] >= 1_000, "at least the latency pass's count, fed to the end"
