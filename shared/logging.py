"""JSON logs (structlog) carrying event_id / correlation_id, with personal data masked.

Masking is by key (name, phone, email, address, …) and by pattern (anything that looks like
a phone number or an e-mail address in any string), so a log line never holds a raw phone
number, e-mail address or customer name, whoever wrote it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, cast

import orjson
import structlog

from shared.tracing import add_trace_ids

PII_KEYS = frozenset({
    "name", "customer_name", "person_in_charge", "phone", "phones", "mobile", "email", "address",
    "recipient_address", "to", "to_addr", "contact",
})
# The local part starts where a run of its characters starts (the lookbehind): without it, a long
# run with no "@" (a 700 kB field a producer got wrong, quoted in a dead-letter reason) was tried
# from every position, quadratic time that froze the whole service on one log line. The domain
# needs no dot: an address a producer got wrong ("wang.wei@localhost", quoted in the reason that
# refuses it) is still the customer's address.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)")
# +86 138 1234 5678, 13812345678, 010-12345678, (650) 253-0000 …: 7+ digits with separators.
_PHONE = re.compile(r"(?<![\w-])\+?\d(?:[\s\-().]?\d){6,}(?![\w-])")
# A maximal run of digits with single separators, found in linear time (possessive: no backtracking).
# _PHONE backtracks through a run, quadratic in its length, so it only ever sees short runs.
_DIGIT_RUN = re.compile(r"\+?\d(?:[\s\-().]?\d)*+")
_PHONE_RUN_MAX = 64  # no phone number is longer; a longer run is masked whole
_UUIDISH = re.compile(r"^[0-9a-fA-F-]{32,36}$")


def mask_email(text: str) -> str:
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def mask_phone_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"***{digits[-4:]}" if len(digits) >= 7 else match.group(0)


def mask_phones(text: str) -> str:
    """What `_PHONE.sub(mask_phone_digits, text)` gives, in time linear in the text's length."""
    parts: list[str] = []
    done = 0
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        if end - start > _PHONE_RUN_MAX:
            parts += [text[done:start], mask_phone_digits(run)]
        else:
            # _PHONE within the run, seeing one character either side for its lookarounds.
            parts.append(text[done:start])
            at = start
            for match in _PHONE.finditer(text, start, min(len(text), end + 1)):
                parts += [text[at:match.start()], mask_phone_digits(match)]
                at = match.end()
            parts.append(text[at:end])
        done = end
    parts.append(text[done:])
    return "".join(parts)


def mask_text(text: str) -> str:
    """Mask e-mail addresses and phone-number-like digit runs inside free text."""
    if _UUIDISH.match(text):
        return text
    return mask_phones(mask_email(text))


def mask_name(value: str) -> str:
    value = value.strip()
    return f"{value[:1]}***" if value else value


def mask_value(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    if not isinstance(value, str):
        return value
    if key.lower() in PII_KEYS:
        if "@" in value:
            return mask_email(value)
        if sum(ch.isdigit() for ch in value) >= 7:
            return mask_text(value)
        return mask_name(value)
    return mask_text(value)


def mask_pii(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: (mask_value(k, v) if k not in ("timestamp", "level", "logger") else v) for k, v in event_dict.items()}


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "json", service: str | None = None) -> None:
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_pii,
        add_trace_ids,  # after the masking: ids, not personal data
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps) if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter that says nothing an operator acts on.
    for noisy, lvl in (("aiokafka", "WARNING"), ("uvicorn.access", "WARNING"), ("asyncio", "WARNING"), ("asyncpg.pool", "ERROR")):
        logging.getLogger(noisy).setLevel(lvl)
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return cast(structlog.stdlib.BoundLogger, structlog.get_logger(name))
