"""The monthly work summary's e-mail in zh-CN and en (labels, no field names) and what the
notifier accepts as a summary (a malformed month or an unknown figure is refused)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from services.notifier.config import NotifierSettings
from services.notifier.reports_api import MonthlySummaryIn
from services.notifier.rules import load_rules
from services.notifier.templating import Templates

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")
TEMPLATES = Templates(NotifierSettings().templates_dir, "zh-CN")
SUMMARY: dict[str, Any] = {
    "month": "2026-11",
    "targets": [
        {"name": "warranty_return_visit_rate", "value": 1.0, "target": 1.0, "met": True, "count": 40, "out_of": 40},
        {"name": "reach_rate", "value": 0.8, "target": None, "met": None, "count": 80, "out_of": 100},
        {"name": "satisfaction_rate", "value": 0.95, "target": 0.98, "met": False, "count": 95, "out_of": 100},
        {"name": "parts_accuracy", "value": None, "target": 0.98, "met": None, "count": 0, "out_of": 0},
    ],
    "categories": [{"category": "repair_quality", "count": 3, "before": 1, "change": 2, "share": 0.75},
                   {"category": "price", "count": 1, "before": 2, "change": -1, "share": 0.25}],
    "measures": [{"measure_id": "M-1", "category": "repair_quality", "action": "交车前复检刹车", "owner": "as-head-01",
                  "due_at": "2026-11-10T01:00:00+00:00", "status": "verified", "before": 4.2, "after": 1.1,
                  "change": "decreased"}],
    "complaints": 4, "complaints_before": 3,
}


def _mail(locale: str, summary: dict[str, Any]) -> Any:
    body = MonthlySummaryIn.model_validate(summary)
    data = {"month": body.month, "issued_by": "liu.yang", "issued_at": "2026-12-01T02:00:00+00:00",
            "figures": body.model_dump(exclude={"month"})}
    message, used = TEMPLATES.render("monthly_work_summary", "email", locale, {
        "data": data, "person": None, "event_type": "MonthlyWorkSummary", "occurred_at": "2026-12-01T02:00:00Z",
        "contact": {}, "campaign": None, "timezone": "Asia/Shanghai"})
    assert used == locale
    return message


def test_the_zh_cn_summary_reads_labels_and_figures() -> None:
    mail = _mail("zh-CN", SUMMARY)
    assert mail.subject == "【月度工作总结】2026-11"
    assert "- 满意率：95.0%（95/100，目标 98.0%，未达标）" in mail.text
    assert "- 保修回访率：100.0%（40/40，目标 100.0%，达标）" in mail.text
    assert "- 回访接通率：80.0%（80/100）" in mail.text and "- 配件发运准确率：—（0/0，目标 98.0%，—）" in mail.text
    assert "投诉类别（本月 4，上月 3）" in mail.text and "- 维修质量：3（占比 75.0%，上月 1，变化 +2）" in mail.text
    assert "维修质量 · 交车前复检刹车（负责人 as-head-01，到期 2026-11-10，已验证）：每百次进站 4.2 → 1.1，比率下降" in mail.text
    for part in (mail.text, mail.html):
        assert not SNAKE.search(part), SNAKE.search(part)


def test_the_en_summary_and_a_complaints_service_without_measures() -> None:
    mail = _mail("en", SUMMARY | {"measures": None})
    assert mail.subject == "[Monthly work summary] 2026-11"
    assert "- Satisfaction: 95.0% (95/100, target 98.0%, missed)" in mail.text
    assert "The complaints service does not list measures yet" in mail.text
    assert not SNAKE.search(mail.text) and not SNAKE.search(mail.html)


@pytest.mark.parametrize("change", [{"month": "2026-13"}, {"month": "November"},
                                    {"targets": [{"name": "made_up", "value": 0.5}]},
                                    {"categories": [{"category": "repair_quality", "count": -1, "before": 0, "change": 0}]}])
def test_a_malformed_summary_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MonthlySummaryIn.model_validate(SUMMARY | change)


def test_the_summary_goes_to_customer_service_and_the_superior_leader() -> None:
    rules = load_rules(NotifierSettings().rules_file)
    matched = rules.matching("MonthlyWorkSummary", "aftersales.notifier", {"month": "2026-11"})
    assert sorted(r.recipient for r in matched) == ["department:customer_service", "role:superior_leader"]
    assert rules.matching("MonthlyWorkSummary", "aftersales.followup", {}) == [], "only from the notifier's topic"
