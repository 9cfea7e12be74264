"""AFTERSALES_TOPIC_RETENTION_DAYS (issue 19): the defaults, what may be named, and the refusals,
each naming the bad entry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.events import CANONICAL_TOPICS, DEADLETTER, UPSTREAM_TOPICS
from shared.kafka.clients import MAX_RECORD_BYTES, retention_summary, topic_config
from shared.settings import DEFAULT_TOPIC_RETENTION_DAYS, Settings, parse_topic_retention

DAY_MS = 86_400_000


def settings(raw: str) -> Settings:
    return Settings(_env_file=None, topic_retention_days=raw)


def test_by_default_raw_inputs_and_dead_letters_keep_30_days_and_the_canonical_topics_everything() -> None:
    retention = settings("").topic_retention()
    assert retention == DEFAULT_TOPIC_RETENTION_DAYS
    assert set(retention) == {*UPSTREAM_TOPICS, *CANONICAL_TOPICS, DEADLETTER}
    assert {retention[t] for t in UPSTREAM_TOPICS} == {30} and retention[DEADLETTER] == 30
    assert {retention[t] for t in CANONICAL_TOPICS} == {None}
    assert settings("").topic_retention_ms("upstream.dms") == 30 * DAY_MS
    assert settings("").topic_retention_ms("aftersales.intake") == -1


def test_named_topics_change_the_rest_keep_their_defaults() -> None:
    retention = parse_topic_retention(" upstream.dms=7 , deadletter=14,\naftersales.notifier=365")
    assert retention["upstream.dms"] == 7 and retention[DEADLETTER] == 14 and retention["aftersales.notifier"] == 365
    assert retention["upstream.sales"] == 30 and retention["aftersales.intake"] is None
    assert parse_topic_retention("aftersales.deadletter=3")[DEADLETTER] == 3


def test_upstream_star_sets_the_four_and_a_topics_own_entry_wins_in_any_order() -> None:
    for raw in ("upstream.*=5,upstream.crm=60", "upstream.crm=60,upstream.*=5"):
        retention = parse_topic_retention(raw)
        assert [retention[t] for t in UPSTREAM_TOPICS] == [5, 5, 5, 60], raw


def test_forever_and_minus_one_mean_no_limit() -> None:
    assert parse_topic_retention("deadletter=forever")[DEADLETTER] is None
    assert parse_topic_retention("upstream.dms=FOREVER")["upstream.dms"] is None
    assert parse_topic_retention("upstream.dms=-1")["upstream.dms"] is None
    assert settings("deadletter=-1").topic_retention_ms(DEADLETTER) == -1


@pytest.mark.parametrize(("raw", "entry", "why"), [
    ("upstream.dms=30,upstream.foo=3", "'upstream.foo=3'", "is no contract topic"),
    ("dms=3", "'dms=3'", "is no contract topic"),
    ("deadletter=0", "'deadletter=0'", "whole number from 1"),
    ("upstream.dms=-5", "'upstream.dms=-5'", "whole number from 1"),
    ("upstream.dms=1.5", "'upstream.dms=1.5'", "whole number from 1"),
    ("upstream.dms=thirty", "'upstream.dms=thirty'", "whole number from 1"),
    ("upstream.dms=36501", "'upstream.dms=36501'", "whole number from 1 to 36500"),
    ("upstream.dms", "'upstream.dms'", "give the days after '='"),
    ("upstream.dms=", "'upstream.dms='", "give the days after '='"),
    ("deadletter=1,aftersales.deadletter=2", "'aftersales.deadletter=2'", "given twice"),
    ("upstream.*=1,upstream.*=2", "'upstream.*=2'", "given twice"),
])
def test_a_bad_entry_is_refused_by_name(raw: str, entry: str, why: str) -> None:
    with pytest.raises(ValueError, match="is no contract topic|whole number|give the days|given twice") as refused:
        parse_topic_retention(raw)
    assert str(refused.value).startswith(f"{entry}: ") and why in str(refused.value)
    # ... and the settings refuse to load with it, from the environment as from an argument.
    with pytest.raises(ValidationError) as invalid:
        settings(raw)
    assert "topic_retention_days" in str(invalid.value) and entry in str(invalid.value)


def test_the_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFTERSALES_TOPIC_RETENTION_DAYS", "upstream.erp=2")
    assert Settings(_env_file=None).topic_retention()["upstream.erp"] == 2
    monkeypatch.setenv("AFTERSALES_TOPIC_RETENTION_DAYS", "upstream.erp=0")
    with pytest.raises(ValidationError, match="'upstream.erp=0'"):
        Settings(_env_file=None)


def test_topic_configs_carry_the_retention_and_the_dead_letters_keep_their_record_size() -> None:
    configured = settings("upstream.dms=7,deadletter=14")
    assert topic_config("upstream.dms", configured) == {"retention.ms": str(7 * DAY_MS), "retention.bytes": "-1"}
    assert topic_config("aftersales.intake", configured) == {"retention.ms": "-1", "retention.bytes": "-1"}
    assert topic_config(DEADLETTER, configured) == {
        "retention.ms": str(14 * DAY_MS), "retention.bytes": "-1", "max.message.bytes": str(MAX_RECORD_BYTES)}


def test_the_summary_infra_up_prints_names_each_limit() -> None:
    assert retention_summary(settings("")) == "upstream.* 30 d, aftersales.deadletter 30 d, the rest for ever"
    assert retention_summary(settings("upstream.dms=7,deadletter=forever")) == (
        "upstream.sales 30 d, upstream.dms 7 d, upstream.erp 30 d, upstream.crm 30 d, the rest for ever")
    assert retention_summary(settings("upstream.*=forever,deadletter=forever")) == "for ever"
