"""Notifier settings: channels, quiet hours, retries, rate limits. Secrets come from the
environment (or `.local/secrets.env` on a developer machine), never from the repository."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.notifier.directory import StaffDirectory
    from services.notifier.rules import RuleTable
    from services.notifier.templating import Templates

HERE = Path(__file__).parent


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_", extra="ignore")

    rules_file: Path = HERE / "rules.yaml"
    staff_file: Path = HERE / "staff.yaml"
    templates_dir: Path = HERE / "templates"
    default_locale: str = "zh-CN"

    # SMS through an HTTP gateway.
    sms_gateway_url: str = "http://127.0.0.1:8025/v1/sms"
    sms_api_key: SecretStr = SecretStr("")
    sms_sender: str = "Aftersales"
    sms_timeout_seconds: float = Field(10.0, gt=0)

    # E-mail through SMTP (STARTTLS or implicit TLS, optional login).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_seconds: float = Field(15.0, gt=0)
    mail_from: str = "Aftersales customer service <service@aftersales.example>"
    message_id_domain: str = "aftersales.example"

    # Customer SMS never goes out in quiet hours (customer local time): it waits.
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)

    # Retries with exponential backoff (1 min, 5 min, 30 min, 2 h, 6 h); after the last, NotificationFailed.
    retry_schedule_seconds: list[float] = Field(default_factory=lambda: [60, 300, 1800, 7200, 21600])
    # A message stuck in "sending" longer than this (its sender crashed) is sent again with the same idempotency key.
    sending_lease_seconds: float = Field(120, gt=0)
    # A notification waits this long for the customer's contact to arrive before it fails.
    awaiting_contact_days: float = Field(7, gt=0)
    dispatch_batch: int = Field(50, ge=1)
    dispatch_tick_seconds: float = Field(0.5, gt=0)
    # Sends per second per channel and replica (providers throttle; an SMTP relay has limits too).
    rate_limit_sms_per_second: float = Field(20, gt=0)
    rate_limit_email_per_second: float = Field(10, gt=0)
    rate_limit_letter_per_second: float = Field(1000, gt=0)

    @field_validator("smtp_username", "smtp_password", mode="before")
    @classmethod
    def _blank_is_no_login(cls, value: Any) -> Any:
        """An empty login is no login (compose passes an unset AFTERSALES_SMTP_USERNAME on as '')."""
        return None if value == "" else value


@dataclass(frozen=True)
class NotifierDeps:
    settings: NotifierSettings
    rules: RuleTable
    directory: StaffDirectory
    templates: Templates
    channels: dict[str, Any]  # channel name -> its client (SmsChannel, EmailChannel, LetterChannel)
