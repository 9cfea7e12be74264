"""The dispatcher: claims due notifications, renders and sends them, records the outcome.

Claiming marks a row `sending` and commits before the send, so two replicas never send the
same notification at once. If the sender dies mid-send, the row's lease expires and it is
sent again with the same idempotency key: at most one duplicate attempt, which the provider
recognises. The outcome (sent, retry later, failed, suppressed) and its event are written in
one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from shared import metrics
from shared.db import acquire
from shared.errors import is_transient
from shared.runtime import ServiceRuntime

from services.notifier import store
from services.notifier.channels import Channel, Message
from services.notifier.config import NotifierSettings
from services.notifier.domain import SendResult, next_retry, outside_quiet_hours
from services.notifier.templating import Templates

log = structlog.get_logger("aftersales.notifier")


@dataclass(frozen=True)
class _Cause:
    event_id: uuid.UUID
    correlation_id: uuid.UUID


class Dispatcher:
    def __init__(self, runtime: ServiceRuntime, settings: NotifierSettings, channels: dict[str, Channel],
                 templates: Templates) -> None:
        self.runtime = runtime
        self.settings = settings
        self.channels = channels
        self.templates = templates

    async def run(self) -> None:
        while not self.runtime.stopping:
            try:
                handled = await self.run_once()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("dispatcher failed")
                metrics.TRANSIENT_ERRORS.labels("notifier", "dispatcher").inc()
                await self.runtime.sleep(1)
                continue
            if handled == 0:
                await self.runtime.sleep(self.settings.dispatch_tick_seconds)

    async def run_once(self) -> int:
        pool = self.runtime.pool
        assert pool is not None
        now = self.runtime.clock.now()
        async with acquire(pool) as conn:
            async with conn.transaction():
                _, expired = await store.sweep_awaiting(
                    conn, now, now - timedelta(days=self.settings.awaiting_contact_days)
                )
        for n in expired:
            await self._record(n, "failed", now, error="no contact arrived for this customer in time")
        async with acquire(pool) as conn:
            async with conn.transaction():
                claimed = await store.claim_due(
                    conn, now, now - timedelta(seconds=self.settings.sending_lease_seconds), self.settings.dispatch_batch
                )
        if claimed:
            await asyncio.gather(*(self._deliver(n, now) for n in claimed))
        return len(claimed)

    async def _deliver(self, n: dict[str, Any], now: datetime) -> None:
        pool = self.runtime.pool
        assert pool is not None
        async with acquire(pool) as conn:
            contact = await store.get_contact(conn, n["recipient"]) if n["recipient_kind"] == "customer" else None
        address, refusal = self._address(n, contact)
        if refusal is not None:
            await self._record(n, "suppressed", now, error=refusal)
            return
        if n["channel"] == "sms" and n["recipient_kind"] == "customer" and contact is not None:
            allowed = outside_quiet_hours(now, contact["timezone"], self.settings.quiet_hours_start, self.settings.quiet_hours_end)
            if allowed > now:  # quiet hours: it waits, and this was not an attempt
                async with acquire(pool) as conn:
                    await store.reschedule(conn, n["notification_id"], allowed, undo_attempt=True)
                return
        try:
            message = self._render(n, contact)
        except Exception as exc:  # a template that cannot render will not render on retry either
            await self._record(n, "failed", now, error=f"template {n['template']} failed: {type(exc).__name__}: {exc}")
            return
        assert address is not None
        result: SendResult = await self.channels[n["channel"]].send(n["notification_id"], address, message)
        if result.ok:
            await self._record(n, "sent", now, provider_ref=result.provider_ref, address=address)
            return
        retry_at = None if result.permanent else next_retry(n["attempts"], self.settings.retry_schedule_seconds, now)
        if retry_at is None:
            await self._record(n, "failed", now, error=result.error)
            return
        if n["channel"] == "sms" and n["recipient_kind"] == "customer" and contact is not None:
            retry_at = outside_quiet_hours(retry_at, contact["timezone"], self.settings.quiet_hours_start,
                                           self.settings.quiet_hours_end)
        async with acquire(pool) as conn:
            await store.reschedule(conn, n["notification_id"], retry_at, undo_attempt=False, error=result.error)
        metrics.NOTIFICATIONS.labels(n["channel"], "retry").inc()
        log.info("notification will be retried", notification_id=str(n["notification_id"]), attempts=n["attempts"],
                 retry_at=retry_at.isoformat(), error=result.error)

    def _address(self, n: dict[str, Any], contact: dict[str, Any] | None) -> tuple[str | None, str | None]:
        if n["recipient_kind"] != "customer":
            return None, f"no directory entry for {n['recipient']}"
        if contact is None:
            return None, "no contact on file for this customer"
        if not (contact.get("consent") or {}).get(n["channel"], True):
            return None, f"the customer has not consented to {n['channel']}"
        address = {"sms": contact.get("phone"), "email": contact.get("email"), "letter": contact.get("address")}[n["channel"]]
        if not address:
            return None, f"the customer has no {n['channel']} address on file"
        return address, None

    def _render(self, n: dict[str, Any], contact: dict[str, Any] | None) -> Message:
        ctx = n["context"]
        data = ctx["data"]
        context = {
            "data": data, "contact": contact or {}, "timezone": (contact or {}).get("timezone") or "Asia/Shanghai",
            "due_from": data.get("due_from"), "due_by": data.get("due_by"), "event_type": n["source_event_type"],
        }
        locale = n["locale"] or (contact or {}).get("locale")
        text = self.templates.render(n["template"], n["channel"], locale, context)
        if text is None:
            raise LookupError(f"no template {n['template']}.{n['channel']} for locale {locale} or the default")
        return Message(subject=None, text=text)

    async def _record(self, n: dict[str, Any], status: str, now: datetime, *, error: str | None = None,
                      provider_ref: str | None = None, address: str | None = None) -> None:
        pool = self.runtime.pool
        assert pool is not None
        event_type = {"sent": "NotificationSent", "failed": "NotificationFailed", "suppressed": "NotificationSuppressed"}[status]
        async with acquire(pool) as conn:
            async with conn.transaction():
                await store.finish(conn, n["notification_id"], status, now, error=error, provider_ref=provider_ref,
                                   address=address)
                uow = self.runtime.uow(conn)
                uow.publish(
                    event_type,
                    {
                        "notification_id": str(n["notification_id"]), "rule": n["rule"], "channel": n["channel"],
                        "recipient": n["recipient"], "recipient_kind": n["recipient_kind"], "template": n["template"],
                        "locale": n["locale"] or self.settings.default_locale, "source_event_id": str(n["source_event_id"]),
                        "source_event_type": n["source_event_type"], "attempts": n["attempts"], "reason": error, "at": now,
                    },
                    cause=_Cause(n["source_event_id"], n["correlation_id"]),
                    discriminator=n["notification_id"],
                )
                await uow.flush()
        metrics.NOTIFICATIONS.labels(n["channel"], status).inc()
        log.info("notification " + status, notification_id=str(n["notification_id"]), rule=n["rule"],
                 channel=n["channel"], attempts=n["attempts"], reason=error)


async def close_channels(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        with contextlib.suppress(Exception):
            await channel.close()
