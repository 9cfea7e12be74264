"""Classification from the keyword table (zh-CN and en), severity, routing to the responsible
department and the directory of role holders — all from the YAML files, validated on load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.complaints.config import ComplaintRules
from services.complaints.tables import CATEGORIES, load_tables

RULES = ComplaintRules()
TABLES = load_tables(RULES.classification_file, RULES.routing_file, RULES.directory_file)


@pytest.mark.parametrize(("description", "category"), [
    ("电机异响，开了三天就坏了", "product_quality"),
    ("The controller is faulty and the car stalls", "product_quality"),
    ("接待员态度很差，爱理不理", "service_attitude"),
    ("The advisor was rude to my wife", "service_attitude"),
    ("上次保养后刹车还是有问题，没修好", "repair_quality"),
    ("Still broken after repair, second visit", "repair_quality"),
    ("等配件等了两个星期", "parts_supply"),
    ("Waiting for parts since October", "parts_supply"),
    ("交车晚了三天，太慢", "delay"),
    ("The car was delayed by a week", "delay"),
    ("保养收费太贵，乱收费", "price"),
    ("I was overcharged for the oil change", "price"),
    ("想了解一下积分活动", "other"),
    ("Please call me back", "other"),
])
def test_the_keyword_table_classifies_chinese_and_english_complaints(description: str, category: str) -> None:
    assert TABLES.classify(description).category == category


def test_a_category_given_by_the_filer_wins_over_keywords() -> None:
    c = TABLES.classify("电机异响", category="price")
    assert (c.category, c.category_source) == ("price", "given")
    assert TABLES.classify("电机异响").category_source == "keywords"
    assert TABLES.classify("hello").category_source == "fallback"


def test_english_keywords_match_whole_words_only() -> None:
    assert TABLES.classify("the firewall of the dealer's wifi").category == "other"
    assert TABLES.classify("there was a fire under the seat").severity == "critical"


@pytest.mark.parametrize(("description", "severity"), [
    ("刹车失灵，差点出事故", "critical"),
    ("Smoke came out of the motor", "critical"),
    ("车子抛锚了，无法行驶", "high"),
    ("This is the third time the controller fails", "high"),
    ("建议增加周末营业时间", "low"),
    ("电机异响", "medium"),  # the category's default
    ("保养收费太贵", "low"),  # price complaints default to low
])
def test_severity_from_safety_and_urgency_keywords_else_the_category_default(description: str, severity: str) -> None:
    assert TABLES.classify(description).severity == severity


def test_a_severity_given_by_the_filer_wins() -> None:
    c = TABLES.classify("刹车失灵", severity="low")
    assert (c.severity, c.severity_source) == ("low", "given")


def test_routing_sends_every_category_to_its_department_and_honours_overrides() -> None:
    assert {c: TABLES.department_for(c, "medium") for c in CATEGORIES} == {
        "product_quality": "quality_inspection", "repair_quality": "after_sales_service",
        "service_attitude": "customer_service", "parts_supply": "parts_warehouse", "delay": "after_sales_service",
        "price": "sales", "other": "customer_service",
    }
    assert TABLES.department_for("service_attitude", "critical") == "after_sales_service"


def test_the_part_named_in_a_complaint_is_found_in_either_language() -> None:
    assert TABLES.classify("后桥漏油").part_category == "rear_axle"
    assert TABLES.classify("the rear axle is leaking").part_category == "rear_axle"
    assert TABLES.classify("frame cracked near the weld").part_category == "frame"
    assert TABLES.classify("后桥漏油", part_category="differential").part_category == "differential"


def test_the_directory_names_each_departments_role_holders_with_a_default() -> None:
    assert TABLES.person_for("quality_inspection", "supervisor") == "qi-supervisor-01"
    assert TABLES.person_for("quality_inspection", "superior_leader") == "aftersales-director-01"
    assert TABLES.person_for("no_such_department", "department_head") == "cs-head-01"


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_table_with_an_unknown_category_is_refused_naming_the_file_and_entry(tmp_path: Path) -> None:
    raw = yaml.safe_load(RULES.classification_file.read_text(encoding="utf-8"))
    raw["categories"][0]["category"] = "weather"
    bad = _write(tmp_path / "classification.yaml", raw)
    with pytest.raises(ValueError, match=r"classification.yaml: categories\.0\.category"):
        load_tables(bad, RULES.routing_file, RULES.directory_file)


def test_routing_must_name_a_department_for_every_category(tmp_path: Path) -> None:
    raw = yaml.safe_load(RULES.routing_file.read_text(encoding="utf-8"))
    del raw["departments"]["price"]
    bad = _write(tmp_path / "routing.yaml", raw)
    with pytest.raises(ValueError, match="missing: price"):
        load_tables(RULES.classification_file, bad, RULES.directory_file)


def test_the_directory_default_must_hold_every_ladder_role(tmp_path: Path) -> None:
    raw = yaml.safe_load(RULES.directory_file.read_text(encoding="utf-8"))
    del raw["default"]["superior_leader"]
    bad = _write(tmp_path / "directory.yaml", raw)
    with pytest.raises(ValueError, match="missing: superior_leader"):
        load_tables(RULES.classification_file, RULES.routing_file, bad)


def test_a_missing_table_file_says_which_setting_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_tables(tmp_path / "nope.yaml", RULES.routing_file, RULES.directory_file)
