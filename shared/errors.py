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


_PG_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.LockNotAvailableError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (TransientError, *_PG_TRANSIENT, ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(
            exc, (kafka_errors.KafkaConnectionError, kafka_errors.KafkaTimeoutError, kafka_errors.NodeNotReadyError)
        )
    return False
