"""Progress bars for the commands that run for more than a few seconds (dead letters, audit,
replay, the benchmarks, the fault suite, the demo).

A bar is drawn on stderr, and only when stderr is a terminal: a run piped to a file or a CI log
stays quiet and stdout keeps only the command's result (`--json` stays parseable).
`AFTERSALES_PROGRESS=always` draws it anyway (on stderr), `never` never.

Code that reports progress takes a `Tracker`: rich's `Progress` has the three methods, and
`QUIET` is the one that draws nothing. Tests pass a `Progress` on a forced-terminal console (or
their own recorder) and read the tasks' totals and completion.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Tracker(Protocol):
    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID: ...

    def advance(self, task_id: TaskID, advance: float = 1) -> None: ...

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None: ...


class _Quiet:
    """A tracker that draws nothing (stderr is not a terminal)."""

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        return TaskID(0)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        return None

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        return None


QUIET: Tracker = _Quiet()


def wanted(console: Console) -> bool:
    """Draw bars on this console? Yes on a terminal, unless AFTERSALES_PROGRESS says otherwise."""
    setting = os.environ.get("AFTERSALES_PROGRESS", "auto").strip().lower()
    if setting in ("never", "0", "false", "no"):
        return False
    return setting in ("always", "1", "true", "yes") or console.is_terminal


def columns() -> tuple[Any, ...]:
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


@contextmanager
def bars(console: Console | None = None, extra: tuple[Any, ...] = ()) -> Iterator[Tracker]:
    """A live `Progress` on stderr when it is a terminal (or on `console`), else `QUIET`;
    `extra` columns after the standard ones (e.g. a task field)."""
    always = os.environ.get("AFTERSALES_PROGRESS", "").strip().lower() in ("always", "1", "true", "yes")
    target = console or Console(stderr=True, force_terminal=always or None)
    if not wanted(target):
        yield QUIET
        return
    with Progress(*columns(), *extra, console=target, transient=False) as progress:
        yield progress
