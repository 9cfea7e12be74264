"""The notifier's rule table, templates, staff directory and channels' message shape (no
infrastructure); quiet hours and dates in texts on the test moment's calendar."""

from __future__ import annotations

import uuid
from datetime import UTC, time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.notifier.channels import Address, EmailChannel, Message
from services.notifier.config import NotifierSettings
from services.notifier.directory import StaffDirectory, load_directory
from services.notifier.domain import next_retry, notification_id, outside_quiet_hours
from services.notifier.rules import Rule, fill, load_rules
from services.notifier.templating import Templates
from tests.support import day_at, zh_date

pytestmark = pytest.mark.dates

SETTINGS = NotifierSettings()
RULES = load_rules(SETTINGS.rules_file)
TEMPLATES = Templates(SETTINGS.templates_dir, "zh-CN")


def test_the_rule_table_covers_what_the_work_plan_asks_for() -> None:
    events = {r.event for r in RULES.rules}
    assert {"FollowUpScheduled", "FollowUpCompleted", "MaintenanceReminderDue", "ComplaintAcknowledged",
            "ComplaintEscalated", "QualityAlertRaised", "FollowUpWeeklyReport", "ComplaintWeeklyReport",
            "QualityWeeklyReport", "PartsAccuracyReport"} <= events


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda r: r.id)
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_rule_has_its_templates_in_both_locales(rule: Rule, locale: str) -> None:
    for channel in filter(None, (rule.channel, rule.fallback_channel)):
        name = TEMPLATES.resolve(rule.template, channel, locale)
        assert name == f"{locale}/{rule.template}.{channel}.j2", f"{rule.id}: no {locale} {channel} template"


def test_every_staff_recipient_in_the_rules_can_be_reached() -> None:
    directory = load_directory(SETTINGS.staff_file)
    for rule in RULES.rules:
        if rule.recipient_kind != "customer" and "{" not in rule.recipient:
            assert directory.people_for(rule.recipient), f"{rule.id}: nobody for {rule.recipient}"
        if rule.fallback_recipient and "{" not in rule.fallback_recipient:
            assert directory.people_for(rule.fallback_recipient)


def test_conditions_select_the_rules_that_apply() -> None:
    unreachable = {"outcome": "unreachable", "kind": "first_visit"}
    campaign = {"outcome": "reached", "kind": "campaign_call"}
    assert [r.id for r in RULES.matching("FollowUpCompleted", "aftersales.followup", unreachable)] == ["unreachable_notice"]
    assert [r.id for r in RULES.matching("FollowUpCompleted", "aftersales.followup", campaign)] == ["campaign_invitation"]
    assert RULES.matching("FollowUpCompleted", "aftersales.followup", {"outcome": "reached", "kind": "first_visit"}) == []


def test_a_recipient_can_name_a_field_of_the_event() -> None:
    assert fill("person:{person}", {"person": "as-head-01"}) == "person:as-head-01"
    assert fill("person:{person}", {"person": None}) is None
    assert fill("department:quality_inspection", {}) == "department:quality_inspection"


def test_bad_rules_are_refused_with_what_is_expected() -> None:
    with pytest.raises(ValidationError, match="must be 'customer', or 'person:'"):
        Rule(id="x", event="E", channel="sms", recipient="boss", template="t")
    with pytest.raises(ValidationError, match="must look like '2d'"):
        Rule(id="x", event="E", channel="sms", recipient="customer", template="t", delay="soon")


def test_the_staff_directory_refuses_unknown_people() -> None:
    with pytest.raises(ValidationError, match="lists ghost, who are not under people"):
        StaffDirectory.model_validate({"people": {"a": {"name": "A"}}, "roles": {"supervisor": ["ghost"]}})
    directory = StaffDirectory.model_validate({"people": {"a": {"name": "A", "email": "a@x.cn"}},
                                               "departments": {"qi": ["a"]}})
    assert [p for p, _ in directory.people_for("department:qi")] == ["a"]
    assert directory.people_for("person:nobody") == []


def test_one_notification_per_rule_source_event_and_recipient() -> None:
    event = uuid.uuid4()
    assert notification_id("r", event, "C1") == notification_id("r", event, "C1")
    assert notification_id("r", event, "C1") != notification_id("r", event, "C2")
    assert notification_id("r", event, "C1") != notification_id("s", event, "C1")


def test_customer_sms_waits_for_the_end_of_quiet_hours() -> None:
    assert outside_quiet_hours(day_at(22), "Asia/Shanghai", time(21), time(8)) == day_at(8, days=1)
    assert outside_quiet_hours(day_at(21), "Asia/Shanghai", time(21), time(8)) == day_at(8, days=1)
    assert outside_quiet_hours(day_at(7, 59), "Asia/Shanghai", time(21), time(8)) == day_at(8)
    for awake in (day_at(8), day_at(12), day_at(20, 59)):
        assert outside_quiet_hours(awake, "Asia/Shanghai", time(21), time(8)) == awake


def test_retries_back_off_1_min_5_min_30_min_2_h_6_h_then_give_up() -> None:
    now = day_at(12)
    waits = [next_retry(n, SETTINGS.retry_schedule_seconds, now) for n in range(1, 7)]
    assert [(w - now) if w else None for w in waits] == [
        timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=6), None]


def test_templates_render_in_the_customers_locale_and_fall_back_to_the_default(tmp_path: Path) -> None:
    # 07:30 in Shanghai is the evening before in UTC: the customer reads their own date
    due_from = day_at(7, 30, days=3)
    context = {"data": {"vin": "LJ1EEAUU5N0123456", "due_from": due_from.astimezone(UTC).isoformat(),
                        "due_by": day_at(7, 30, days=7).astimezone(UTC).isoformat()},
               "contact": {"name": "王伟"}, "timezone": "Asia/Shanghai",
               "occurred_at": day_at(7, 30).astimezone(UTC).isoformat()}
    zh, zh_locale = TEMPLATES.render("first_visit_notice", "sms", "zh-CN", context)
    en, en_locale = TEMPLATES.render("first_visit_notice", "sms", "en", context | {"contact": {"name": "Wei Wang"}})
    assert zh_locale == "zh-CN" and zh_date(due_from) in zh.text and "王伟" in zh.text and "123456" in zh.text
    assert en_locale == "en" and f"{due_from:%d %b %Y}" in en.text and "Wei Wang" in en.text
    (tmp_path / "zh-CN").mkdir()
    (tmp_path / "zh-CN" / "only.sms.j2").write_text("只有中文")
    assert Templates(tmp_path, "zh-CN").render("only", "sms", "en", {}) == (Message(None, "只有中文"), "zh-CN")
    with pytest.raises(LookupError, match="no template missing.sms"):
        TEMPLATES.render("missing", "sms", "en", {})


def test_customer_text_is_escaped_in_the_html_part_only() -> None:
    context = {"data": {"complaint_id": "CASE-1", "complaint_ref": "<script>alert(1)</script>", "level": 2,
                        "level_name": "department head", "role": "department_head", "breach": "resolve",
                        "deadline": "2026-11-22T02:00:00+00:00", "next_deadline": None, "department": "qi",
                        "customer_id": "C1"},
               "person": {"name": "孙强"}, "timezone": "Asia/Shanghai", "contact": {}}
    message, _ = TEMPLATES.render("complaint_escalated", "email", "en", context)
    assert message.html is not None and "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert "<script>alert(1)</script>" in message.text, "plain text is not HTML"
    assert message.subject and message.subject.startswith("[Complaint escalated]")


def test_an_email_carries_a_message_id_from_the_notification_and_both_parts() -> None:
    nid = uuid.UUID("6f1c7d3e-5a0b-4b8e-9d6a-2f4e8c1b7a90")
    mail = EmailChannel(SETTINGS).compose(nid, [Address("qi-head-01@aftersales.example", "孙强")],
                                          Message("Subject", "plain", "<p>rich</p>"))
    assert mail["Message-ID"] == f"<{nid}@aftersales.example>"
    assert mail.get_body(preferencelist=("plain",)).get_content().strip() == "plain"  # type: ignore[union-attr]
    assert mail.get_body(preferencelist=("html",)).get_content().strip() == "<p>rich</p>"  # type: ignore[union-attr]
    assert "qi-head-01@aftersales.example" in mail["To"]


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
@pytest.mark.parametrize(("cell", "named"), [
    ({"category": "controller", "batch": "B2606-3"}, "controller B2606-3"),
    ({"category": "controller", "supplier_id": "SUP-C", "model": "EV-100"}, "controller SUP-C EV-100"),
])
def test_a_quality_alert_email_renders_for_every_kind_of_cell(locale: str, cell: dict[str, str], named: str) -> None:
    """Found in the demo: a supplier × model cell has no batch, and the subject asked for one."""
    context = {"data": {"alert_id": "QA-1", "cell": cell, "rule": "poisson", "observed": 8, "expected": 2.38,
                        "p_value": 0.0033, "report_ids": ["R-1", "R-2"], "vins": ["LJ1EEAUU5N0123456"],
                        "updated": False},
               "person": None, "timezone": "Asia/Shanghai", "contact": {}}
    message, _ = TEMPLATES.render("quality_alert", "email", locale, context)
    assert message.subject is not None and named in message.subject
    assert "R-1, R-2" in message.text and "LJ1EEAUU5N0123456" in message.text


def test_a_due_measure_reminds_its_owner_in_words_not_codes() -> None:
    [rule] = [r for r in RULES.rules if r.id == "measure_due"]
    assert (rule.event, rule.channel, rule.recipient) == ("MeasureDue", "email", "person:{owner}")
    context = {"data": {"measure_id": "m-1", "target_kind": "category", "category": "repair_quality",
                        "title": "Torque check on every wheel change", "owner": "as-supervisor-01",
                        "due_at": "2026-11-22T02:00:00+00:00", "alert_id": None},
               "person": {"name": "刘洋"}, "timezone": "Asia/Shanghai", "contact": {}}
    zh, _ = TEMPLATES.render("measure_due", "email", "zh-CN", context)
    en, _ = TEMPLATES.render("measure_due", "email", "en", context)
    assert zh.subject == "【整改措施到期】Torque check on every wheel change"
    assert "维修质量" in zh.text and "repair_quality" not in zh.text and "刘洋" in zh.text and "2026" in zh.text
    assert "repair quality" in en.text and "repair_quality" not in en.text
    alert = context | {"data": context["data"] | {"target_kind": "alert", "category": "rear_axle", "alert_id": "A-7"}}
    zh_alert, _ = TEMPLATES.render("measure_due", "email", "zh-CN", alert)
    assert "质量预警 A-7（后桥）" in zh_alert.text and zh_alert.html is not None and "后桥" in zh_alert.html
