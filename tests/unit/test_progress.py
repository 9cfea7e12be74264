"""aftersales.progress: bars only on a terminal (or when asked), never on a pipe or a CI log."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from aftersales.progress import QUIET, bars


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFTERSALES_PROGRESS", raising=False)
    out = io.StringIO()
    with bars(Console(file=out)) as progress:
        task = progress.add_task("reading", total=10)
        progress.advance(task, 10)
    assert progress is QUIET and out.getvalue() == ""


def test_a_bar_with_its_count_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AFTERSALES_PROGRESS", raising=False)
    out = io.StringIO()
    with bars(Console(file=out, force_terminal=True, width=100)) as progress:
        task = progress.add_task("reading dead letters", total=12)
        progress.advance(task, 12)
    assert isinstance(progress, Progress) and progress.tasks[0].finished
    assert "reading dead letters" in out.getvalue() and "12/12" in out.getvalue()


@pytest.mark.parametrize(("setting", "terminal", "drawn"), [
    ("never", True, False), ("always", False, True), ("auto", True, True), ("auto", False, False)])
def test_the_setting_overrides_the_terminal(monkeypatch: pytest.MonkeyPatch, setting: str, terminal: bool,
                                            drawn: bool) -> None:
    monkeypatch.setenv("AFTERSALES_PROGRESS", setting)
    with bars(Console(file=io.StringIO(), force_terminal=terminal)) as progress:
        assert isinstance(progress, Progress) is drawn


def test_always_draws_on_stderr_even_when_it_is_a_pipe(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AFTERSALES_PROGRESS", "always")
    with bars() as progress:
        progress.add_task("replaying", total=3, completed=3)
    captured = capsys.readouterr()
    assert captured.out == "" and "replaying" in captured.err and "3/3" in captured.err
