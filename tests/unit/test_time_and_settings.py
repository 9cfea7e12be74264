"""Calendar arithmetic, the clock, and settings parsing."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.clock import FileClock, ManualClock, SystemClock, clock_from_settings
from shared.settings import Settings
from shared.timeutil import add_months, iso_week, next_time_within


def test_add_months_clamps_to_the_last_day() -> None:
    assert add_months(datetime(2025, 1, 31, tzinfo=UTC), 1) == datetime(2025, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert add_months(datetime(2025, 11, 15, tzinfo=UTC), 36) == datetime(2028, 11, 15, tzinfo=UTC)


def test_iso_week() -> None:
    assert iso_week(datetime(2026, 11, 23)) == "2026-W48"
    assert iso_week(datetime(2027, 1, 1)) == "2026-W53"


def test_next_time_within_waits_for_the_window_in_local_time() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    late = datetime(2026, 11, 20, 22, 0, tzinfo=shanghai)
    assert next_time_within(late, "Asia/Shanghai", time(8), time(21)) == datetime(2026, 11, 21, 8, 0, tzinfo=shanghai)
    early = datetime(2026, 11, 20, 6, 30, tzinfo=shanghai)
    assert next_time_within(early, "Asia/Shanghai", time(8), time(21)) == datetime(2026, 11, 20, 8, 0, tzinfo=shanghai)
    inside = datetime(2026, 11, 20, 12, 0, tzinfo=shanghai)
    assert next_time_within(inside, "Asia/Shanghai", time(8), time(21)) == inside


def test_next_time_within_survives_a_daylight_saving_gap() -> None:
    # 2026-03-08 02:00-03:00 does not exist in New York.
    ny = ZoneInfo("America/New_York")
    moment = datetime(2026, 3, 8, 1, 30, tzinfo=ny)
    result = next_time_within(moment, "America/New_York", time(2, 30), time(20))
    assert result.astimezone(ny).hour == 3 and result > moment


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert clock.now() == clock.now()
    clock.advance(timedelta(hours=5))
    assert clock.now() == datetime(2026, 1, 1, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        ManualClock(datetime(2026, 1, 1))


def test_file_clock_follows_the_offset_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    clock = FileClock(path, recheck=0)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)  # no file: wall time

    FileClock.write(path, timedelta(days=-30))
    assert abs(clock.now() - (datetime.now(UTC) - timedelta(days=30))) < timedelta(seconds=5)
    FileClock.write(path, timedelta(days=-29, hours=-1))
    assert abs(clock.now() - (datetime.now(UTC) - timedelta(days=29, hours=1))) < timedelta(seconds=5)

    path.write_text("{half a fi")  # caught mid-write by another writer: the last offset holds
    assert abs(clock.now() - (datetime.now(UTC) - timedelta(days=29, hours=1))) < timedelta(seconds=5)
    path.unlink()
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_clock_file_setting_wins_over_a_fixed_offset(tmp_path: Path) -> None:
    assert isinstance(clock_from_settings(0.0, None), SystemClock)
    assert isinstance(clock_from_settings(3600.0, tmp_path / "c.json"), FileClock)
    assert Settings(clock_file=tmp_path / "c.json").clock_file == tmp_path / "c.json"


def test_api_tokens_and_webhook_secrets_parse_from_one_variable_each() -> None:
    settings = Settings(api_tokens="tok1=agent:alice, tok2=supervisor", webhook_secrets="dms=s3cret,crm=x")  # type: ignore[arg-type]
    assert settings.parsed_api_tokens() == {"tok1": ("agent", "alice"), "tok2": ("supervisor", "supervisor")}
    assert settings.parsed_webhook_secrets() == {"dms": "s3cret", "crm": "x"}


def test_topic_prefix_isolates_and_is_checked() -> None:
    assert Settings(topic_prefix="t1.").topic("upstream.dms") == "t1.upstream.dms"
    with pytest.raises(ValueError):
        Settings(topic_prefix="bad prefix")
