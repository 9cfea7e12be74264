"""Channels behind one small interface: send(notification id, address, message) → SendResult.

Transport errors and 5xx/408/429 answers are temporary (retried with backoff); other 4xx
answers are permanent (failed at once). Every request carries the notification id as its
idempotency key, so a retry after a crash is recognised by the provider.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

import httpx

from services.notifier.config import NotifierSettings
from services.notifier.domain import SendResult


@dataclass(frozen=True)
class Message:
    subject: str | None
    text: str
    html: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, notification_id: uuid.UUID, address: str, message: Message) -> SendResult: ...

    async def close(self) -> None: ...


class SmsChannel:
    name = "sms"

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.sms_timeout_seconds)

    async def send(self, notification_id: uuid.UUID, address: str, message: Message) -> SendResult:
        headers = {"Idempotency-Key": str(notification_id)}
        key = self.settings.sms_api_key.get_secret_value()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            response = await self.client.post(
                self.settings.sms_gateway_url,
                json={"to": address, "text": message.text, "sender": self.settings.sms_sender},
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
