"""The console's texts: every text its pages and code show is in the zh-CN catalogue,
translated, and formats as the reader's locale writes dates and numbers. Also the desk's
rules: my calls first, how late a call is, a script for every kind of call, the call form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from services.console import desk
from services.console.i18n import LOCALES, environment
from services.console.pages import attempt_body

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def _extracted() -> set[str]:
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(CONSOLE), [("**/templates/**.html", "jinja2"), ("**.py", "python")],
                                                 options_map=options):
        found.add(message[0] if isinstance(message, tuple | list) else message)
    return found


def _catalogue(locale: str) -> dict[str, object]:
    with (CONSOLE / "locale" / LOCALES[locale] / "LC_MESSAGES" / "console.po").open("rb") as fh:
        catalog = read_po(fh)
    return {(m.id[0] if isinstance(m.id, tuple) else m.id): m.string for m in catalog if m.id}


def test_every_text_the_console_shows_is_translated_into_chinese() -> None:
    texts = _extracted()
    assert len(texts) > 150, "the extraction found the pages' texts"
    zh = _catalogue("zh-CN")
    missing = sorted(texts - set(zh))
    untranslated = sorted(t for t in texts & set(zh) if not (zh[t][0] if isinstance(zh[t], tuple) else zh[t]))
    assert not missing, f"not in the zh_CN catalogue: {missing[:10]}"
    assert not untranslated, f"no Chinese for: {untranslated[:10]}"
    assert set(_catalogue("en")) >= texts, "the English catalogue lists every text (English is the source)"


def test_the_chinese_pages_read_chinese_dates_and_numbers() -> None:
    zh, en = environment("zh-CN"), environment("en")
    moment = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
    assert zh.filters["when"](moment) == "2026年11月20日 10:30:00"
    assert en.filters["when"](moment) == "Nov 20, 2026, 10:30:00\u202fAM"
    assert zh.filters["number"](47378) == "47,378"
    assert zh.filters["span"](timedelta(days=3)) == "3天" and en.filters["span"](timedelta(days=3)) == "3 days"
    assert zh.filters["label"]("reached", "outcome") == "已接通" and en.filters["label"]("reached", "outcome") == "reached"


def test_a_chinese_name_reads_as_written_and_in_english_with_its_pinyin() -> None:
    customer = {"name": "张伟明", "name_pinyin": "zhangweiming"}
    assert environment("zh-CN").filters["person_name"](customer) == "张伟明"
    assert environment("en").filters["person_name"](customer) == "张伟明 (Zhang Weiming)"


def test_my_calls_come_first_then_the_pool_in_the_queues_order() -> None:
    queue = [{"followup_id": "a", "claimed_by": None}, {"followup_id": "b", "claimed_by": "wang.fang"},
             {"followup_id": "c", "claimed_by": None}, {"followup_id": "d", "claimed_by": "wang.fang"}]
    assert [i["followup_id"] for i in desk.desk_order(queue, "wang.fang")] == ["b", "d", "a", "c"]


def test_how_late_a_call_is() -> None:
    late = desk.lateness(NOW - timedelta(hours=5), NOW)
    early = desk.lateness(NOW + timedelta(days=2), NOW)
    assert late.overdue and late.by == timedelta(hours=5)
    assert not early.overdue and early.by == timedelta(days=2)


@pytest.mark.parametrize("kind", desk.KINDS)
def test_every_kind_of_call_has_a_script_in_both_languages(kind: str) -> None:
    assert desk.script(kind, "zh-CN") and desk.script(kind, "en")
    assert desk.script(kind, "zh-CN") != desk.script(kind, "en")


def test_the_call_form_becomes_the_follow_up_apis_call_record() -> None:
    body = attempt_body({"outcome": "reached", "satisfaction": "4", "talking_points": " brakes fine ",
                         "complaint_description": "洗车没洗干净", "complaint_category": "service_attitude",
                         "complaint_severity": "nonsense"}, NOW)
    assert body == {"outcome": "reached", "satisfaction": 4, "talking_points": "brakes fine",
                    "complaint": {"description": "洗车没洗干净", "category": "service_attitude", "severity": None}}
    unreachable = attempt_body({"outcome": "unreachable", "satisfaction": "5", "complaint_description": "x"}, NOW)
    assert unreachable == {"outcome": "unreachable"}, "no score or complaint without reaching the customer"
    concern = attempt_body({"outcome": "reached", "satisfaction": "2", "requests": "a loaner car",
                            "answered_on_call": "yes"}, NOW)
    assert concern["feedback"] == {"answered_on_call": True} and concern["requests"] == "a loaner car"
    serious = attempt_body({"outcome": "reached", "satisfaction": "3", "feedback_serious": "yes"}, NOW)
    assert serious["feedback"] == {"serious": True}
    assert "feedback" not in attempt_body({"outcome": "unreachable", "answered_on_call": "yes"}, NOW)
    later = attempt_body({"outcome": "call_back_later", "call_back_at": "2026-11-20T15:30"}, NOW)
    assert later["call_back_at"] == "2026-11-20T15:30:00+08:00"


@pytest.mark.parametrize(("form", "message"), [
    ({}, "Choose what happened"), ({"outcome": "call_back_later"}, "Give the time"),
    ({"outcome": "call_back_later", "call_back_at": "2026-11-20T09:00"}, "later than now"),
])
def test_a_call_form_that_cannot_be_recorded_says_what_to_fix(form: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attempt_body(form, NOW)
