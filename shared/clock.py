"""The injected clock. Rules read time from here, never from `datetime.now()`.

`occurred_at` of an event is when it happened in the world; schedules are computed from it.
The clock only decides *when a timer fires* and what "now" is for an API call, so moving a
manual clock fires exactly what is due.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Wall time shifted by a fixed offset: a demo stack can live "next week"."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("ManualClock.set needs a timezone-aware time")
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


class FileClock:
    """Wall time shifted by an offset another process sets in a small JSON file,
    `{"offset_seconds": 86400.0}`: the demo runs a month through live services by moving it.

    The file is looked at no more than every `recheck` seconds (a stat; read only when it
    changed). A missing file means no offset; a file that cannot be read keeps the last offset
    rather than jumping back to wall time."""

    def __init__(self, path: Path, recheck: float = 0.05) -> None:
        self.path = path
        self.recheck = recheck
        self._offset = timedelta(0)
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")

    def now(self) -> datetime:
        if time.monotonic() - self._checked >= self.recheck:
            self._reload()
        return datetime.now(UTC) + self._offset

    def _reload(self) -> None:
        self._checked = time.monotonic()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._offset, self._stamp = timedelta(0), None
            return
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._offset = timedelta(seconds=float(json.loads(self.path.read_text())["offset_seconds"]))
            self._stamp = stamp
        except (OSError, ValueError, KeyError, TypeError):
            return  # being rewritten: keep the last offset, look again next time

    @staticmethod
    def write(path: Path, offset: timedelta) -> None:
        """Set the offset atomically (a rename), so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"offset_seconds": offset.total_seconds()}))
        os.replace(tmp, path)


def offset_to(moment: datetime) -> float:
    """Seconds to add to the wall clock for a clock that reads `moment` now (a stack started
    "on another day": tests, demos)."""
    if moment.tzinfo is None:
        raise ValueError("offset_to needs a timezone-aware moment")
    return (moment - datetime.now(UTC)).total_seconds()


def clock_from_offset(seconds: float) -> Clock:
    return OffsetClock(timedelta(seconds=seconds)) if seconds else SystemClock()


def clock_from_settings(offset_seconds: float, clock_file: Path | None) -> Clock:
    """The clock a running service uses: a clock file (demo) wins over a fixed offset."""
    if clock_file is not None:
        return FileClock(clock_file)
    return clock_from_offset(offset_seconds)
