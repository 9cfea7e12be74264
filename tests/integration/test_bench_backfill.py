"""`aftersales bench backfill` at a small size: the import it times is complete and is history
(every visit filed by intake and followup, no return-visit call for a visit years old)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import columns
from tools.bench.backfill import measure

pytestmark = [pytest.mark.infra, pytest.mark.slow]


async def test_an_import_of_old_repair_orders_files_every_visit_and_calls_nobody(infra: None) -> None:
    progress = Progress(*columns(), console=Console(file=io.StringIO(), force_terminal=True))
    with progress:
        figures = await measure(3_000, seed=5, progress=progress)
    assert [(t.description, t.total, t.completed) for t in progress.tasks] == [
        (phase, 3_000, 3_000) for phase in ("baseline: publishing", "baseline: processed", "import: publishing",
                                            "import: processed")], "the bars count every order published and processed"
    filed = figures["filed"]
    assert filed["intake visits"] == filed["followup visits"] == 3_000  # type: ignore[index]
    assert 3_000 // 9 <= filed["intake customers"] <= 3_000 // 9 + 9, "a customer per vehicle, nine visits each"  # type: ignore[index,operator]
    assert filed["first-visit calls"] == 0, "pickups years old are history, not calls"  # type: ignore[index]
    assert filed["lost checks armed"] == filed["intake customers"], "each customer's lost-customer check is armed"  # type: ignore[index]
    assert figures["system"].seconds > 0 and figures["baseline"].seconds > 0  # type: ignore[attr-defined]
