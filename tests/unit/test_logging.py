"""Logs never hold a raw phone number, e-mail address or customer name."""

from __future__ import annotations

import io
import logging

import orjson

from shared.logging import configure_logging, get_logger, mask_text


def _log_line(**fields: object) -> str:
    stream = io.StringIO()
    configure_logging("INFO", "json")
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    get_logger("test").info("customer contacted", **fields)
    return stream.getvalue()


def test_pii_fields_are_masked_by_name_and_by_pattern() -> None:
    line = _log_line(
        name="张伟", phone="+8613812345678", email="zhang.wei@example.cn",
        note="call back on 138 1234 5678 or write to li.ming@example.cn",
        customer={"name": "Li Ming", "phone": "13912345678"},
    )
    for raw in ("张伟", "+8613812345678", "zhang.wei@example.cn", "138 1234 5678", "li.ming@example.cn", "Li Ming",
                "13912345678"):
        assert raw not in line, raw
    record = orjson.loads(line)
    assert record["phone"] == "***5678" and record["name"] == "张***"
    assert record["email"] == "z***@example.cn"


def test_ids_and_vins_stay_readable() -> None:
    text = "event 0b6f1c7d-5a0b-4b8e-9d6a-2f4e8c1b7a90 vin LJ1EEAUU5N0123456 RO-2026-000123"
    assert mask_text(text) == text
