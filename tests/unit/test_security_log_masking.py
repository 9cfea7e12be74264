"""Log masking holds against hostile input: it stays linear in the input's length (a producer's
700 kB field, quoted whole in a dead-letter reason, used to freeze the service on one log line:
the e-mail and phone patterns backtracked quadratically), and it still masks what it masked.
"""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.logging import _PHONE, mask_phone_digits, mask_phones, mask_text, mask_value

HOSTILE_SHAPES = {
    "one long word": "x" * 1_000_000,
    "a long local part, no @": "a." * 500_000,
    "a long domain after @": "a@" + "b." * 500_000,
    "a long digit run glued to a letter": "1" * 1_000_000 + "a",
    "digits and single separators": "1-" * 500_000 + "x",
    "spaced digits": "1 " * 500_000 + "x",
    "many short numbers": "+86 138 1234 5678 " * 50_000,
    "many addresses": "wang.wei@example.cn " * 50_000,
}


def _finishes(text: str, seconds: float = 10.0) -> str | None:
    """mask_text(text), or None if it did not finish in `seconds` (quadratic takes hours)."""
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(mask_text(text)), daemon=True)
    worker.start()
    worker.join(seconds)
    return result[0] if result else None


def test_masking_a_megabyte_of_hostile_text_finishes() -> None:
    masked = {}
    for label, text in HOSTILE_SHAPES.items():
        masked[label] = _finishes(text)
        assert masked[label] is not None, f"masking {label!r} did not finish: the patterns backtrack"
    assert "1234 5678" not in masked["many short numbers"] and "***5678" in masked["many short numbers"]
    assert "wang.wei@" not in masked["many addresses"] and "w***@example.cn" in masked["many addresses"]


_text = st.text(st.sampled_from("0123456789 -().+ab_@:"), max_size=64)


@settings(max_examples=400, derandomize=True, database=None)
@given(_text)
def test_phone_masking_is_unchanged_for_runs_a_phone_number_can_have(text: str) -> None:
    """Runs up to 64 characters are masked exactly as the original pattern masked them."""
    assert mask_phones(text) == _PHONE.sub(mask_phone_digits, text)


def test_what_is_masked_and_what_is_left() -> None:
    assert mask_text("call +86 138 1234 5678 now") == "call ***5678 now"
    assert mask_text("13812345678") == "***5678"
    assert mask_text("a digit run longer than any phone " + "1" * 100 + "x") == \
        "a digit run longer than any phone ***1111x"
    assert mask_text("email 'wang.wei@localhost' is not an address") == "email 'w***@localhost' is not an address"
    assert mask_text("wang.wei@example.cn, li@x.org") == "w***@example.cn, l***@x.org"
    for untouched in ("2026-11-20T10:00:00+08:00", "RO-1234567890", "6f1c7d3e-5a0b-4b8e-9d6a-2f4e8c1b7a90",
                      "LJ17KV3D6H68TUUPV", "offset 1234"):
        assert mask_text(untouched) == untouched
    assert mask_value("name", "王伟") == "王***"
    assert mask_value("phone", "+8613812345678") == "***5678"
    assert mask_value("to", ["a@b.cn", "+8613812345678"]) == ["a***@b.cn", "***5678"]
