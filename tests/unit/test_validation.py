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


# Mobile prefixes the Chinese numbering plan allocates (MIIT: China Mobile, Unicom, Telecom and
# Broadcast, data-only 14x and virtual-operator 17x blocks), written down here rather than taken
# from libphonenumber, so a normaliser that refuses a real number fails the property below.
ALLOCATED_MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "145", "147",
    "150", "151", "152", "153", "155", "156", "157", "158", "159", "166", "170", "171", "173", "175",
    "176", "177", "178", "180", "181", "182", "183", "184", "185", "186", "187", "188", "189", "191",
    "198", "199",
)


@given(st.sampled_from(ALLOCATED_MOBILE_PREFIXES), st.from_regex(r"[0-9]{8}", fullmatch=True),
       st.sampled_from(["", "+86", "0086", "+86 "]), st.sampled_from(["", " ", "-"]))
def test_chinese_mobiles_in_any_common_format_normalise_to_one_e164(allocated: str, rest: str, prefix: str,
                                                                    sep: str) -> None:
    number = allocated + rest
    written = prefix + sep.join([number[:3], number[3:7], number[7:]])
    e164 = normalize_phone(written)  # an allocated number: accepted in every way it is written
    assert e164 == "+86" + number
    assert normalize_phone(e164) == e164


@given(st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1), timezones=st.timezones()))
def test_timestamps_with_a_timezone_are_accepted_and_kept_as_instants(moment: object) -> None:
    from shared.events.upstream import ReceiptReturned

    receipt = ReceiptReturned.model_validate({"receipt_id": "R1", "repair_order_id": "RO1",
                                              "vin": "1M8GDM9AXKP042788", "returned_at": moment})
    assert receipt.returned_at == moment and receipt.returned_at.tzinfo is not None


@given(st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1)))
def test_timestamps_without_a_timezone_are_refused_naming_the_field(moment: object) -> None:
    from pydantic import ValidationError

    from shared.events.codec import describe_validation_error
    from shared.events.upstream import ReceiptReturned

    with pytest.raises(ValidationError) as caught:
        ReceiptReturned.model_validate({"receipt_id": "R1", "repair_order_id": "RO1", "vin": "1M8GDM9AXKP042788",
                                        "returned_at": moment.isoformat()})  # type: ignore[attr-defined]
    assert "data.returned_at" in describe_validation_error(caught.value, "data")
    assert "no timezone" in describe_validation_error(caught.value, "data")


def test_the_fast_path_for_chinese_mobiles_agrees_with_libphonenumber_on_every_number_it_sees() -> None:
    """normalize_phone skips libphonenumber's parse for an E.164 or national 11-digit number its
    own CN mobile pattern matches; on any other number the full path decides. Checked against
    the full path on random numbers (accepted or refused alike), in both forms."""
    import random

    import phonenumbers

    from shared.validation import normalize_phone

    rng = random.Random(20261202)
    accepted = 0
    for _ in range(5_000):
        digits = "1" + "".join(rng.choice("0123456789") for _ in range(10))
        for text in ("+86" + digits, digits):
            try:
                fast: str | None = normalize_phone.__wrapped__(text)
            except ValueError:
                fast = None
            try:
                number = phonenumbers.parse(text, "CN")
                full = (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                        if phonenumbers.is_valid_number(number) else None)
            except phonenumbers.NumberParseException:
                full = None
            assert fast == full, text
            accepted += fast is not None
    assert 2_000 < accepted < 9_000, "both valid and invalid numbers were drawn"
