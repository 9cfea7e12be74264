"""Transient versus permanent failures.

Transient: the database or the broker is unreachable, or Postgres asks us to try again. The
work is retried with backoff and its offsets are never committed. Anything else a handler
raises about one record is permanent for that record: it is dead-lettered with the reason,
and the partition keeps flowing.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import errors as kafka_errors


class TransientError(Exception):
    """Raise to say: retry this later, it may well work then."""


class PermanentError(Exception):
    """Raise from a handler to dead-letter the record with this message as the reason."""

    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error or type(self).__name__


class DatabaseUnavailable(TransientError):
    """No connection could be had: the server is down, restarting, or refusing connections."""


# SQLSTATE classes and codes that say "try again": connection exception (08), insufficient
# resources (53), operator intervention (57, e.g. admin shutdown), system error (58),
# serialization failure, deadlock, lock not available.
_PG_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
_PG_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03"})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (TransientError, asyncpg.InterfaceError, ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _PG_TRANSIENT_CLASSES or state in _PG_TRANSIENT_CODES
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(
            exc, (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError, kafka_errors.NodeNotReadyError)
        )
    return False
