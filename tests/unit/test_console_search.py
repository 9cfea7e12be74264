"""The console's forgiving search, read every way a typed text can mean something, and the
masking of phone numbers on screen."""

from __future__ import annotations

import pytest

from services.console.search import mask_phone, parse, pinyin, plate_key


@pytest.mark.parametrize("typed", ["粤B·12345", "粤b12345", "B12345", "b 123-45", "ｂ１２３４５"])
def test_a_plate_is_the_same_with_or_without_its_province_character_in_any_case(typed: str) -> None:
    assert plate_key(typed) == "B12345"


def test_the_last_four_digits_of_a_phone_are_read_as_a_phone_suffix() -> None:
    q = parse("5678")
    assert q.phone_suffix == "5678"
    assert q.name is None and q.pinyin is None


def test_fewer_than_four_digits_are_not_a_phone() -> None:
    assert parse("678").phone_suffix is None


def test_a_full_phone_with_separators_is_still_its_digits() -> None:
    assert parse("138 1234-5678").phone_suffix == "13812345678"


def test_a_plate_fragment_is_read_as_a_plate_and_a_vin_fragment() -> None:
    q = parse("b123")
    assert q.plate == "B123" and q.vin == "B123"


def test_a_plate_with_its_province_character_is_not_read_as_a_name() -> None:
    q = parse("沪a1234")
    assert q.plate == "A1234" and q.name is None


def test_chinese_characters_are_read_as_a_name() -> None:
    q = parse("张伟")
    assert q.name == "张伟" and q.plate is None and q.pinyin is None


def test_latin_letters_are_read_as_pinyin_and_a_repair_order_fragment() -> None:
    q = parse("Zhang Wei")
    assert q.pinyin == "zhangwei"
    assert parse("RO-2026").repair_order == "RO-2026"


def test_wildcards_typed_by_the_agent_are_not_wildcards() -> None:
    q = parse("张%伟")
    assert q.name == "张伟"


def test_empty_text_searches_nothing() -> None:
    assert parse("   ").empty


def test_pinyin_of_a_name_and_its_initials() -> None:
    assert pinyin("张伟") == ("zhangwei", "zw")
    assert pinyin("刘洋") == ("liuyang", "ly")
    assert pinyin(None) == (None, None)


@pytest.mark.parametrize(("phone", "shown"), [
    ("+8613812345678", "138****5678"), ("13812345678", "138****5678"), ("+442071234567", "442****4567"),
    (None, "—"),
])
def test_a_phone_on_screen_shows_only_its_first_three_and_last_four_digits(phone: str | None, shown: str) -> None:
    assert mask_phone(phone) == shown
