"""The weekly return-visit report's figures (headline rates, the trend against the 4 weeks
before, the customers' words split by department) and its e-mail in zh-CN and en: labels, no
field names, each department only its part."""

from __future__ import annotations

import re
from typing import Any

import pytest

from services.followup import weekly
from services.notifier.config import NotifierSettings
from services.notifier.rules import load_rules
from services.notifier.templating import Templates

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")
DEPARTMENTS = ["after_sales_service", "customer_service", "parts_warehouse", "quality_inspection", "sales"]
TEMPLATES = Templates(NotifierSettings().templates_dir, "zh-CN")


def _item(n: int, department: str, done: str, requests: str | None, **more: Any) -> dict[str, Any]:
    return {"item_id": f"I{n}", "customer_id": f"C{n}", "dealer_id": "D-SH-01", "region": "east",
            "department": department, "category": "repair_quality", "satisfaction": 2, "requests": requests,
            "low_score": True, "done": done, "answer": more.get("answer"), "answered_in_time": None,
            "complaint_ref": more.get("complaint_ref"), "opened_at": "2026-11-18T10:00:00+08:00"}


def test_headline_rates() -> None:
    h = weekly.rates(due=40, reached=30, scored=25, satisfied=20, score_sum=100)
    assert h["reach_rate"] == 0.75 and h["satisfaction_rate"] == 0.8
    assert h["dissatisfied"] == 5 and h["average_score"] == 4.0
    empty = weekly.rates(0, 0, 0, 0, 0)
    assert empty["reach_rate"] is None and empty["satisfaction_rate"] is None and empty["average_score"] is None


def test_trend_against_last_week_and_the_four_weeks_average() -> None:
    previous = [weekly.rates(10, 8, 10, 9, 45), weekly.rates(10, 9, 10, 8, 42),
                weekly.rates(0, 0, 0, 0, 0), weekly.rates(20, 10, 10, 10, 50)]
    current = weekly.rates(20, 18, 10, 7, 38)
    t = weekly.trend(current, previous)
    assert t["reach_rate"]["change_from_last_week"] == pytest.approx(0.9 - 0.5)
    # the week without calls has no rate: the average is of the three weeks that had one
    assert t["reach_rate"]["change_from_average"] == pytest.approx(0.9 - (0.8 + 0.9 + 0.5) / 3)
    assert t["satisfaction_rate"]["change_from_last_week"] == pytest.approx(0.7 - 1.0)
    assert t["dissatisfied"]["change_from_last_week"] == 3
    assert t["calls_due"]["change_from_average"] == pytest.approx(20 - 40 / 4)
    nothing = weekly.trend(current, [])
    assert nothing["reach_rate"] == {"change_from_last_week": None, "change_from_average": None}
    quiet = weekly.trend(weekly.rates(0, 0, 0, 0, 0), previous)
    assert quiet["reach_rate"]["change_from_last_week"] is None


@pytest.mark.parametrize(("row", "done"), [
    ({"serious": True, "closed_as": "complaint", "answered_at": None, "state": "closed"}, "complaint"),
    ({"serious": False, "closed_as": "answered_on_call", "answered_at": "x", "state": "closed"}, "answered_on_call"),
    ({"serious": False, "closed_as": "confirmed", "answered_at": "x", "state": "closed"}, "confirmed"),
    ({"serious": False, "closed_as": None, "answered_at": "x", "state": "answered"}, "answered"),
    ({"serious": False, "closed_as": "unconfirmed", "answered_at": "x", "state": "closed"}, "answered"),
    ({"serious": False, "closed_as": None, "answered_at": None, "state": "escalated"}, "escalated"),
    ({"serious": False, "closed_as": None, "answered_at": None, "state": "open"}, "open"),
])
def test_what_was_done_about_an_item(row: dict[str, Any], done: str) -> None:
    assert weekly.done(row) == done


def test_the_words_are_split_by_department_and_each_part_carries_only_its_own() -> None:
    items = [_item(1, "after_sales_service", "answered", "刹车异响", answer="免费复检"),
             _item(2, "sales", "open", "报价太贵"), _item(3, "sales", "complaint", None, complaint_ref="CRM-9"),
             _item(4, "after_sales_service", "escalated", "等待配件太久")]
    split = weekly.split_by_department(items, DEPARTMENTS)
    assert sorted(split) == DEPARTMENTS
    assert (split["sales"]["total"], split["sales"]["open"], split["sales"]["complaints"]) == (2, 1, 1)
    assert (split["after_sales_service"]["answered"], split["after_sales_service"]["open"]) == (1, 1)
    assert split["parts_warehouse"] == {"total": 0, "answered": 0, "open": 0, "complaints": 0, "items": []}
    figures = {"headline": weekly.rates(4, 4, 4, 1, 10), "trend": weekly.trend(weekly.rates(4, 4, 4, 1, 10), []),
               "voices": split}
    part = weekly.department_part(figures, "sales")
    assert part["voices"].keys() == {"sales"} and part["headline"] == figures["headline"]


def _figures() -> dict[str, Any]:
    items = [_item(1, "after_sales_service", "answered", "刹车异响没修好", answer="经销商免费复检"),
             _item(2, "sales", "complaint", "报价比别家贵", complaint_ref="CRM-2026-9")]
    current = weekly.rates(20, 18, 15, 13, 63)
    previous = [weekly.rates(20, 16, 10, 9, 40) | {"from": f"2026-10-{d:02d}T00:00:00+08:00"} for d in (19, 26)]
    previous += [weekly.rates(0, 0, 0, 0, 0) | {"from": "2026-11-02T00:00:00+08:00"},
                 weekly.rates(10, 9, 8, 8, 36) | {"from": "2026-11-09T00:00:00+08:00"}]
    return {"headline": current, "trend": weekly.trend(current, previous) | {"previous_weeks": previous},
            "voices": weekly.split_by_department(items, DEPARTMENTS)}


def _mail(figures: dict[str, Any], locale: str, department: str | None = None) -> Any:
    data = {"week": "2026-W47", "week_start": "2026-11-16", "figures": figures, "department": department}
    message, used = TEMPLATES.render("followup_weekly_report", "email", locale, {
        "data": data, "person": None, "event_type": "FollowUpWeeklyReport", "occurred_at": "2026-11-23T00:00:00Z",
        "contact": {}, "campaign": None, "timezone": "Asia/Shanghai"})
    assert used == locale
    return message


def test_the_zh_cn_mail_has_labels_the_figures_and_no_field_names() -> None:
    whole = _mail(_figures(), "zh-CN")
    assert whole.subject == "【回访周报】2026-W47"
    for text in (whole.text, whole.html):
        assert not SNAKE.search(text), SNAKE.search(text)
    assert "- 回访率：90.0%（较上周 +0.0 个百分点；较前4周平均 +6.7 个百分点）" in whole.text
    assert "- 不满意客户数：2（较上周 +2；较前4周平均 +1.5）" in whole.text
    assert "客户原话：刹车异响没修好" in whole.text and "已将解决方案告知客户 — 经销商免费复检" in whole.text
    assert "已转为投诉处理（投诉单号 CRM-2026-9）" in whole.text
    assert "== 配件仓库（共 0，已答复 0，处理中 0，转投诉 0）\n- 本周无" in whole.text
    assert "- 2026-11-02：应回访数 0，回访率 —" in whole.text, "a week without calls has no rate"


def test_a_department_mail_has_only_its_part_in_either_language() -> None:
    part = weekly.department_part(_figures(), "sales")
    zh = _mail(part, "zh-CN", "sales")
    assert zh.subject == "【回访周报】2026-W47 · 销售部"
    assert "报价比别家贵" in zh.text and "刹车异响" not in zh.text and "维修车间" not in zh.text
    assert "本周回访概况" in zh.text and not SNAKE.search(zh.text)
    en = _mail(part, "en", "sales")
    assert en.subject == "[Return-visit report] 2026-W47 · Sales"
    assert "- Reach rate: 90.0% (vs last week +0.0 pts; vs the 4 weeks' average +6.7 pts)" in en.text
    assert "Handled as a complaint case (complaint CRM-2026-9)" in en.text and "刹车异响" not in en.text
    assert not SNAKE.search(en.text) and not SNAKE.search(en.html)


def test_the_rules_send_the_whole_report_to_customer_service_and_each_part_to_its_department() -> None:
    rules = load_rules(NotifierSettings().rules_file)
    [whole] = rules.matching("FollowUpWeeklyReport", "aftersales.followup", {})
    [part] = rules.matching("FollowUpDepartmentReport", "aftersales.followup", {"department": "sales"})
    assert whole.recipient == "department:customer_service" and part.recipient == "department:{department}"
    assert whole.template == part.template == "followup_weekly_report"


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_the_other_weekly_reports_name_their_figures_in_words_not_field_names(locale: str) -> None:
    counts = dict.fromkeys(("filed", "acknowledged", "resolved", "closed", "closed_confirmed", "closed_unconfirmed",
                            "reopened", "escalations", "ack_breaches", "resolve_breaches", "resolved_within_sla",
                            "open_at_report"), 1) | {"sla_compliance": 0.5, "mean_hours_to_resolve": None}
    complaints = {"totals": counts, "by_category": {"repair_quality": counts}, "by_department": {"sales": counts}}
    parts = {"accuracy": 0.97, "meets_target": False, "dealers_below_target": ["D-1"],
             "by_dealer": [{"dealer_id": "D-1", "lines": 50, "discrepant_lines": 3}], "discrepancies_by_kind": {}}
    for event_type, figures in (("ComplaintWeeklyReport", complaints), ("PartsAccuracyReport", parts)):
        message, _ = TEMPLATES.render("weekly_report", "email", locale, {
            "data": {"week": "2026-W47", "week_start": "2026-11-16", "figures": figures}, "person": None,
            "event_type": event_type, "occurred_at": "2026-11-23T00:00:00Z", "contact": {}, "campaign": None,
            "timezone": "Asia/Shanghai"})
        assert not SNAKE.search(message.text) and not SNAKE.search(message.html), SNAKE.search(message.text)
        if locale == "zh-CN" and event_type == "ComplaintWeeklyReport":
            assert "\n- 按类别：\n  - 维修质量：\n    - 受理：1" in message.text and "报告时未结案：1" in message.text
            assert "按部门：\n  - 销售部：" in message.text and "平均解决时长（小时）：—" in message.text
        if locale == "zh-CN" and event_type == "PartsAccuracyReport":
            assert "- 是否达标：否" in message.text and "\n  - 1：\n    - 经销商：D-1" in message.text


def test_customer_service_also_reads_the_reports_other_figures_in_words_and_a_department_does_not() -> None:
    other = {"lost_reasons": {"switched_dealer": 1}, "by_agent": {"agent-01": {"calls": 3, "reached": 2,
                                                                              "average_satisfaction": 3.5}},
             "feedback_items": {"answered_in_time_rate": 1.0, "by_department": {"sales": 1}}}
    figures = _figures() | other | {"period": {"from": "2026-11-16T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00"}}
    whole = _mail(figures, "zh-CN")
    assert ("其他统计\n\n- 流失原因：\n  - 改去其他经销商或维修厂：1\n"
            "- 按回访专员：\n  - agent-01：\n    - 通话数：3") in whole.text
    assert "  - 按时答复率：1.0\n  - 按部门：\n    - 销售部：1" in whole.text and "2026-11-16T" not in whole.text
    assert not SNAKE.search(whole.text) and not SNAKE.search(whole.html)
    part = _mail(weekly.department_part(figures, "sales") | other, "zh-CN", "sales")
    assert "其他统计" not in part.text and "流失原因" not in part.text
    assert "其他统计" not in _mail(_figures(), "zh-CN").text, "no heading over nothing"
