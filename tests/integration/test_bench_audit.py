"""`aftersales bench audit` at a small size: the trail it times is the right one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from tools.bench.audit import measure

pytestmark = pytest.mark.infra


async def test_the_audited_trail_is_exactly_the_vehicles_events_and_reads_a_fraction_of_the_log(infra: None) -> None:
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        figures = await measure(events=30_000, seed=7, progress=progress)
    assert figures["events"] >= 30_000
    [writing] = progress.tasks
    assert writing.total == writing.completed == figures["events"], "the bar counts every event written"
    assert figures["trail"] == figures["expected"] > 20  # sale, three pickups with their calls, a complaint
    assert figures["missing"] == figures["extra"] == figures["sibling_leaked"] == 0
    assert figures["scan_records"] == figures["events"]
    assert figures["audit_records_read"] < figures["events"] / 4  # only the keys' partitions
