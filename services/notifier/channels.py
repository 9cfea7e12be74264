"""Channels behind one small interface: send(notification id, addresses, message) → SendResult.

- SMS: an HTTP gateway. Transport errors, timeouts and 5xx/408/425/429 are temporary
  (retried with backoff); other 4xx are permanent (failed at once). The notification id is the
  Idempotency-Key, so a retry after a crash is recognised by the provider.
- E-mail: SMTP (aiosmtplib) with STARTTLS or TLS and login as configured; the Message-ID is
  derived from the notification id; plain text and HTML parts. 4xx replies and connection
  failures are temporary, 5xx permanent.
- Letter: the letter is rendered into the register for printing (GET /v1/letters).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address as MailAddress
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol

import aiosmtplib
import asyncpg
import httpx

from services.notifier.config import NotifierSettings
from services.notifier.domain import SendResult


@dataclass(frozen=True)
class Message:
    subject: str | None
    text: str
    html: str | None = None


@dataclass(frozen=True)
class Address:
    """Where a message goes: a phone, an e-mail address or a postal address, and to whom."""

    value: str
    name: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, notification_id: uuid.UUID, to: list[Address], message: Message) -> SendResult: ...

    async def close(self) -> None: ...


class SmsChannel:
    name = "sms"

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.sms_timeout_seconds)

    async def send(self, notification_id: uuid.UUID, to: list[Address], message: Message) -> SendResult:
        refs = []
        for n, address in enumerate(to):
            # one key per number, stable across retries of this notification
            key = str(notification_id) if len(to) == 1 else f"{notification_id}:{n}"
            result = await self._one(key, address.value, message.text)
            if not result.ok:
                return result
            refs.append(result.provider_ref or "")
        return SendResult(ok=True, provider_ref=",".join(refs) or None)

    async def _one(self, key: str, phone: str, text: str) -> SendResult:
        headers = {"Idempotency-Key": key}
        api_key = self.settings.sms_api_key.get_secret_value()
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        try:
            response = await self.client.post(
                self.settings.sms_gateway_url, json={"to": phone, "text": text, "sender": self.settings.sms_sender},
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return SendResult(ok=False, permanent=False, error=f"{type(exc).__name__}: {exc}"[:500])
        if response.is_success:
            try:
                ref = str(response.json().get("message_id") or "")
            except ValueError:
                ref = ""
            return SendResult(ok=True, provider_ref=ref or None)
        temporary = response.status_code in (408, 425, 429) or response.status_code >= 500
        return SendResult(
            ok=False, permanent=not temporary, error=f"gateway answered {response.status_code}: {response.text[:300]}"
        )

    async def close(self) -> None:
        await self.client.aclose()


class EmailChannel:
    name = "email"

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings

    def compose(self, notification_id: uuid.UUID, to: list[Address], message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.settings.mail_from
        # header objects, not string formatting: a name with quotes or commas stays a display name
        mail["To"] = [MailAddress(display_name=a.name or "", addr_spec=a.value) for a in to]
        mail["Subject"] = message.subject or ""
        mail["Message-ID"] = f"<{notification_id}@{self.settings.message_id_domain}>"
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def send(self, notification_id: uuid.UUID, to: list[Address], message: Message) -> SendResult:
        s = self.settings
        try:
            mail = self.compose(notification_id, to, message)
            # recipients passed explicitly: never parsed back out of a header that data helped to write
            await aiosmtplib.send(
                mail, sender=parseaddr(s.mail_from)[1], recipients=[a.value for a in to], hostname=s.smtp_host, port=s.smtp_port,
                username=s.smtp_username, password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls, use_tls=s.smtp_tls, timeout=s.smtp_timeout_seconds,
            )
        except ValueError as exc:  # an address the header registry will not take: no retry makes it valid
            return SendResult(ok=False, permanent=True, error=f"unusable address: {exc}"[:500])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return SendResult(ok=False, permanent=all(c >= 500 for c in codes),
                              error=f"recipients refused: {', '.join(f'{r.recipient} {r.code}' for r in exc.recipients)}")
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(ok=False, permanent=exc.code >= 500, error=f"SMTP {exc.code}: {exc.message}"[:500])
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(ok=False, permanent=False, error=f"{type(exc).__name__}: {exc}"[:500])
        return SendResult(ok=True, provider_ref=f"<{notification_id}@{s.message_id_domain}>")

    async def close(self) -> None:
        return None


class LetterChannel:
    """Letters are printed and posted by the customer-service office: sending means putting the
    rendered letter into the register."""

    name = "letter"

    def __init__(self, pool: asyncpg.Pool, clock: object) -> None:
        self.pool = pool
        self.clock = clock

    async def send(self, notification_id: uuid.UUID, to: list[Address], message: Message) -> SendResult:
        address = to[0]
        # Only while the notification is still being sent: an erasure that cancelled it meanwhile
        # (its row lock orders the two) leaves no letter with the customer's name and address.
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO letters (letter_id, addressee, postal_address, subject, body, registered_at)
                   SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::timestamptz
                    WHERE EXISTS (SELECT 1 FROM notifications WHERE notification_id = $1 AND status = 'sending'
                                     FOR SHARE)
                   ON CONFLICT (letter_id) DO NOTHING""",
                notification_id, address.name, address.value, message.subject, message.text,
                self.clock.now(),  # type: ignore[attr-defined]
            )
        return SendResult(ok=True, provider_ref=f"letter:{notification_id}")

    async def close(self) -> None:
        return None
