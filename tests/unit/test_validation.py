"""VIN and phone validators."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.validation import (
    check_vin_check_digit,
    normalize_email,
    normalize_phone,
    normalize_vin,
    vin_check_digit,
    with_check_digit,
)

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def test_a_known_vin_has_check_digit_x() -> None:
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert check_vin_check_digit("1M8GDM9AXKP042788") == "1M8GDM9AXKP042788"


def test_vins_are_upper_cased_and_trimmed() -> None:
    assert normalize_vin(" 1m8gdm9axkp042788 ") == "1M8GDM9AXKP042788"


@pytest.mark.parametrize(("raw", "message"), [
    ("1M8GDM9AXKP04278", "has 16 characters; a VIN has 17"),
    ("1M8GDM9AXKP0427888", "has 18 characters"),
    ("1M8GDM9AXKP04278O", "'O' at position 17; VINs never use I, O or Q"),
    ("1M8GDM9AXKP04278-", "'-' at position 17; a VIN uses only A-Z and 0-9"),
])
def test_bad_vins_say_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_vin(raw)


def test_a_wrong_check_digit_names_the_right_one() -> None:
    with pytest.raises(ValueError, match=r"check digit '5' at position 9; its characters give 'X'"):
        check_vin_check_digit("1M8GDM9A5KP042788")


@given(st.text(alphabet=VIN_CHARS, min_size=17, max_size=17))
def test_any_vin_with_its_computed_check_digit_passes(body: str) -> None:
    vin = with_check_digit(body)
    assert check_vin_check_digit(normalize_vin(vin)) == vin


@pytest.mark.parametrize(("raw", "e164"), [
    ("13812345678", "+8613812345678"),
    ("+86 138 1234 5678", "+8613812345678"),
    ("0086-138-1234-5678", "+8613812345678"),
    ("010 6552 9988", "+861065529988"),
    ("+1 (650) 253-0000", "+16502530000"),
])
def test_phones_are_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12", "not a phone", "+86 123", ""])
def test_bad_phones_are_refused_with_an_example(raw: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        normalize_phone(raw)


def test_email_domain_is_lower_cased_and_shape_checked() -> None:
    assert normalize_email("Li.Ming@Example.CN") == "Li.Ming@example.cn"
    with pytest.raises(ValueError, match="name@domain.tld"):
        normalize_email("li.ming@localhost")
