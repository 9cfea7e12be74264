"""The dispatcher: claims due notifications, renders and sends them, records the outcome.

Claiming marks a row `sending` and commits before the send, so two replicas never send the
same notification at once. If the sender dies mid-send, the row's lease expires and it is
sent again with the same idempotency key: at most one duplicate attempt, which the provider
recognises. The outcome (sent, retry later, failed, suppressed) and its event are written in
one transaction.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from services.notifier import store
from services.notifier.channels import Address, Channel, Message
from services.notifier.config import NotifierSettings
from services.notifier.directory import StaffDirectory
from services.notifier.domain import SendResult, next_retry, outside_quiet_hours
from services.notifier.rules import RuleTable
from services.notifier.templating import Templates
from shared import metrics, tracing
from shared.db import acquire
from shared.errors import is_transient
from shared.events import canonical as c
from shared.events.types import Locale
from shared.runtime import ServiceRuntime
from shared.uow import UnitOfWork

log = structlog.get_logger("aftersales.notifier")


@dataclass(frozen=True)
class _Cause:
    event_id: uuid.UUID
    correlation_id: uuid.UUID


def publish_outcome(uow: UnitOfWork[Any], n: dict[str, Any], event_type: str, *, locale: str, error: str | None,
                    at: datetime) -> None:
    """NotificationSent / Failed / Suppressed of notification `n`, caused by its source event (one
    event id per notification and outcome, whoever records it: the dispatcher or an erasure)."""
    uow.publish(
        event_type,
        c.NotificationEvent(
            notification_id=str(n["notification_id"]), rule=n["rule"], channel=n["channel"],
            recipient=n["recipient"], recipient_kind=n["recipient_kind"], template=n["template"],
            locale=cast(Locale, locale),
            source_event_id=str(n["source_event_id"]), source_event_type=n["source_event_type"],
            attempts=n["attempts"], reason=error, at=at,
        ),
        cause=_Cause(n["source_event_id"], n["correlation_id"]),
        discriminator=n["notification_id"],
    )


class RateLimiter:
    """A token bucket per channel (per replica): providers throttle, and so do SMTP relays."""

    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.tokens = per_second
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.rate)
                self.tokens, self.updated = 1.0, time.monotonic()
            self.tokens -= 1


@dataclass
class Target:
    """Where one notification goes on one channel, or why it cannot."""

    channel: str
    to: list[Address]
    refusal: str | None = None
    # The refusal is a phone or postal address the contact lacks. Every sale and pickup carries
    # both (CustomerInfo requires them), so a customer's contact without one is a projection that
    # has not caught up yet (its CustomerUpdated is on another topic, read later): worth waiting for.
    catching_up: bool = False


class Dispatcher:
    def __init__(self, runtime: ServiceRuntime, settings: NotifierSettings, channels: dict[str, Channel],
                 templates: Templates) -> None:
        self.runtime = runtime
        self.settings = settings
        self.channels = channels
        self.templates = templates
        self.limits = {
            "sms": RateLimiter(settings.rate_limit_sms_per_second),
            "email": RateLimiter(settings.rate_limit_email_per_second),
            "letter": RateLimiter(settings.rate_limit_letter_per_second),
        }

    @property
    def rules(self) -> RuleTable:
        rules: RuleTable = self.runtime.deps.rules
        return rules

    @property
    def directory(self) -> StaffDirectory:
        directory: StaffDirectory = self.runtime.deps.directory
        return directory

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
                    conn, now, now - timedelta(days=self.settings.awaiting_contact_days))
        for n in expired:
            await self._give_up_waiting(n, now)
        async with acquire(pool) as conn:
            async with conn.transaction():
                claimed = await store.claim_due(
                    conn, now, now - timedelta(seconds=self.settings.sending_lease_seconds), self.settings.dispatch_batch
                )
        if claimed:  # a trace of its own (shared/tracing.py), carried by the events about the sends
            with tracing.firing(self.runtime.name, "dispatch", len(claimed)):
                await asyncio.gather(*(self._deliver(n, now) for n in claimed))
        return len(claimed)

    # -- one notification --------------------------------------------------------------------
    async def _deliver(self, n: dict[str, Any], now: datetime) -> None:
        pool = self.runtime.pool
        assert pool is not None
        async with acquire(pool) as conn:
            contact = await store.get_contact(conn, n["recipient"]) if n["recipient_kind"] == "customer" else None
            target = await self._target(conn, n, contact)
            campaign_id = n["context"]["data"].get("campaign_id")
            campaign = await store.campaign(conn, campaign_id) if campaign_id else None
        if target.refusal is not None:
            waited_until = n["created_at"] + timedelta(days=self.settings.awaiting_contact_days)
            if target.catching_up and now < waited_until:
                async with acquire(pool) as conn:
                    parked = await store.await_contact(conn, n["notification_id"], target.refusal,
                                                       claimed_at=n["sending_since"])
                if parked:
                    log.info("notification waits for the customer's file to catch up",
                             notification_id=str(n["notification_id"]), rule=n["rule"], reason=target.refusal)
                return
            await self._record(n, "suppressed", now, error=target.refusal)
            return
        if target.channel != n["channel"]:
            async with acquire(pool) as conn:
                await store.switch_channel(conn, n["notification_id"], target.channel)
            n = {**n, "channel": target.channel}
        if n["channel"] == "sms" and n["recipient_kind"] == "customer" and contact is not None:
            allowed = outside_quiet_hours(now, contact["timezone"], self.settings.quiet_hours_start,
                                          self.settings.quiet_hours_end)
            if allowed > now:  # quiet hours: it waits, and this was not an attempt
                async with acquire(pool) as conn:
                    await store.reschedule(conn, n["notification_id"], allowed, undo_attempt=True,
                                           claimed_at=n["sending_since"])
                return
        try:
            message, locale = self._render(n, contact, campaign)
        except Exception as exc:  # a template that cannot render will not render on retry either
            await self._record(n, "failed", now, error=f"template {n['template']}: {type(exc).__name__}: {exc}")
            return
        await self.limits[n["channel"]].acquire()
        result: SendResult = await self.channels[n["channel"]].send(n["notification_id"], target.to, message)
        if result.ok and self.runtime.settings.fault == "crash_after_send":
            log.warning("fault injection: SIGKILL after sending, before recording")
            os.kill(os.getpid(), signal.SIGKILL)
        shown = ", ".join(a.value for a in target.to)
        if result.ok:
            await self._record(n, "sent", now, provider_ref=result.provider_ref, address=shown, locale=locale)
            return
        retry_at = None if result.permanent else next_retry(n["attempts"], self.settings.retry_schedule_seconds, now)
        if retry_at is None:
            await self._record(n, "failed", now, error=result.error, locale=locale)
            return
        if n["channel"] == "sms" and n["recipient_kind"] == "customer" and contact is not None:
            retry_at = outside_quiet_hours(retry_at, contact["timezone"], self.settings.quiet_hours_start,
                                           self.settings.quiet_hours_end)
        async with acquire(pool) as conn:
            if not await store.reschedule(conn, n["notification_id"], retry_at, undo_attempt=False,
                                          error=result.error, claimed_at=n["sending_since"]):
                log.info("a stale attempt failed after its claim was lost; the notification is left as it is",
                         notification_id=str(n["notification_id"]), error=result.error)
                return
        metrics.NOTIFICATIONS.labels(n["channel"], "retry").inc()
        log.info("notification will be retried", notification_id=str(n["notification_id"]), attempts=n["attempts"],
                 retry_at=retry_at.isoformat(), error=result.error)

    async def _target(self, conn: Any, n: dict[str, Any], contact: dict[str, Any] | None) -> Target:
        """The first of the rule's channels (its own, then its fallback) that can reach the recipient.
        A channel refused because the customer's file has not caught up yet is waited for, not
        passed over for the fallback: a phone that is on its way is no reason to write a letter;
        one flagged as unusable on the file is."""
        if n["recipient_kind"] == "customer":
            erased_at = (await store.erasures(conn, [n["recipient"]])).get(n["recipient"])
            if erased_at is not None and (contact is None or contact["updated_at"] <= erased_at):
                # nothing of theirs is on file since the erasure: no address, nothing to wait for
                return Target(n["channel"], [], store.ERASED)
        rule = next((r for r in self.rules.rules if r.id == n["rule"]), None)
        channels = [n["channel"]]
        if rule is not None and rule.fallback_channel and rule.fallback_channel not in channels:
            channels.append(rule.fallback_channel)
        refused = []
        for channel in channels:
            target = await self._reach(conn, n, contact, channel)
            if target.refusal is None:
                return target
            refused.append(target)
            if target.catching_up:
                break
        return Target(n["channel"], [], "; ".join(t.refusal or "" for t in refused),
                      catching_up=any(t.catching_up for t in refused))

    async def _reach(self, conn: Any, n: dict[str, Any], contact: dict[str, Any] | None, channel: str) -> Target:
        if n["recipient_kind"] != "customer":
            people = self.directory.people_for(n["recipient"])
            if not people:
                return Target(channel, [], f"nobody is listed for {n['recipient']} in the staff directory")
            if channel == "letter":
                return Target(channel, [], "letters go to customers; staff are written to by e-mail")
            field = "email" if channel == "email" else "phone"
            to = [Address(getattr(p, field), p.name) for _, p in people if getattr(p, field)]
            return Target(channel, to, None if to else f"nobody for {n['recipient']} has a {field} in the staff directory")
        if contact is None:
            return Target(channel, [], "no contact on file for this customer")
        opt_out = await store.opted_out(conn, n["recipient"], channel)
        if opt_out is not None:
            return Target(channel, [], f"the customer opted out of {opt_out['channel']} on "
                                       f"{opt_out['recorded_at'].date().isoformat()} ({opt_out['reason'] or 'no reason given'})")
        if not (contact.get("consent") or {}).get(channel, True):
            return Target(channel, [], f"the customer has not consented to {channel}")
        value = {"sms": contact.get("phone"), "email": contact.get("email"), "letter": contact.get("address")}[channel]
        if not value:
            flagged = {"sms": "phone", "email": "email"}.get(channel)
            if flagged and flagged in (contact.get("contact_flags") or {}):  # known unusable: no use waiting
                return Target(channel, [], f"the customer's {flagged} on file failed its check (flagged on the file)")
            return Target(channel, [], f"the customer has no {'postal address' if channel == 'letter' else channel} on file",
                          catching_up=channel != "email")
        return Target(channel, [Address(value, contact.get("name"))])

    def _render(self, n: dict[str, Any], contact: dict[str, Any] | None,
                campaign: dict[str, Any] | None) -> tuple[Message, str]:
        ctx = n["context"]
        person = None
        locale = n["locale"] or (contact or {}).get("locale")
        if n["recipient_kind"] != "customer":
            people = self.directory.people_for(n["recipient"])
            person = people[0][1].model_dump() if len(people) == 1 else None
            locale = locale or (people[0][1].locale if people else None)
        context = {
            "data": ctx["data"], "occurred_at": ctx["occurred_at"], "event_type": n["source_event_type"],
            "contact": contact or {}, "person": person, "campaign": campaign,
            "timezone": (contact or {}).get("timezone") or "Asia/Shanghai",
        }
        return self.templates.render(n["template"], n["channel"], locale, context)

    async def _give_up_waiting(self, n: dict[str, Any], now: datetime) -> None:
        """A notification that waited `awaiting_contact_days` for the customer's file: with no
        file at all it failed; with a file still lacking the address it needs, it is suppressed."""
        pool = self.runtime.pool
        assert pool is not None
        async with acquire(pool) as conn:
            contact = await store.get_contact(conn, n["recipient"])
            target = await self._target(conn, n, contact) if contact is not None else None
        days = f"{self.settings.awaiting_contact_days:g}"
        if target is None:
            await self._record(n, "failed", now, error=f"no contact arrived for this customer in {days} days")
        elif target.refusal is not None:
            await self._record(n, "suppressed", now, error=f"{target.refusal} (waited {days} days for it)")
        else:  # the file caught up in the same moment: send it as usual
            async with acquire(pool) as conn:
                await store.reschedule(conn, n["notification_id"], now, undo_attempt=True, claimed_at=n["sending_since"])

    async def _record(self, n: dict[str, Any], status: str, now: datetime, *, error: str | None = None,
                      provider_ref: str | None = None, address: str | None = None, locale: str | None = None) -> None:
        pool = self.runtime.pool
        assert pool is not None
        event_type = {"sent": "NotificationSent", "failed": "NotificationFailed", "suppressed": "NotificationSuppressed"}[status]
        async with acquire(pool) as conn:
            async with conn.transaction():
                if not await store.finish(conn, n["notification_id"], status, now, error=error,
                                          provider_ref=provider_ref, address=address, claimed_at=n["sending_since"]):
                    # The lease expired mid-attempt and another dispatcher claimed it: its outcome counts.
                    log.info("outcome of a stale attempt not recorded; the notification was claimed again",
                             notification_id=str(n["notification_id"]), status=status)
                    return
                uow = self.runtime.uow(conn)
                publish_outcome(uow, n, event_type, locale=locale or n["locale"] or self.settings.default_locale,
                                error=error, at=now)
                await uow.flush()
        metrics.NOTIFICATIONS.labels(n["channel"], status).inc()
        log.info("notification " + status, notification_id=str(n["notification_id"]), rule=n["rule"],
                 channel=n["channel"], attempts=n["attempts"], reason=error)


async def close_channels(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        try:
            await channel.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.warning("closing a channel failed", channel=channel.name, error=type(exc).__name__)
