"""`aftersales faults` draws a bar for its long phases: the records it publishes are counted
against the traffic's size (the real broker, a private topic prefix)."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from shared.events import UPSTREAM_TOPICS
from shared.kafka.clients import delete_topics, ensure_topics
from shared.settings import load_settings
from tools.faults import FaultOptions, FaultRun, build_traffic
from tools.simulate import CST

pytestmark = pytest.mark.infra


async def test_publishing_counts_every_record_of_the_traffic(infra: None, tmp_path: Path) -> None:
    fake_infra = SimpleNamespace(runs_dir=tmp_path, settings=load_settings())
    run = FaultRun(fake_infra, FaultOptions(events=500, rate=5_000, seed=3))  # type: ignore[arg-type]
    traffic = build_traffic(500, 3, datetime(2026, 11, 20, 10, 0, tzinfo=CST), publish_seconds=0.1)
    await ensure_topics(run.settings, UPSTREAM_TOPICS, partitions=2)
    out = io.StringIO()
    run.progress = progress = Progress(*columns(), console=Console(file=out, force_terminal=True, width=120))
    try:
        with progress:
            await run.publish(traffic)
    finally:
        await delete_topics(run.settings, [run.settings.topic(t) for t in UPSTREAM_TOPICS])
    [task] = progress.tasks
    assert (task.description, task.total, task.completed) == ("publishing upstream records", len(traffic.items),
                                                               len(traffic.items))
    assert run.stats.published == len(traffic.items) >= 500 and f"{len(traffic.items)}/{len(traffic.items)}" in out.getvalue()
