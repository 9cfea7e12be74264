"""Notifier settings: channels, quiet hours, retries. Secrets come from the environment."""

from datetime import time
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

HERE = Path(__file__).parent


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_", extra="ignore")

    rules_file: Path = HERE / "rules.yaml"
    templates_dir: Path = HERE / "templates"
    default_locale: str = "zh-CN"

    # SMS through an HTTP gateway.
    sms_gateway_url: str = "http://127.0.0.1:8025/v1/sms"
    sms_api_key: SecretStr = SecretStr("")
    sms_sender: str = "Aftersales"
    sms_timeout_seconds: float = Field(10.0, gt=0)

    # Customer SMS never goes out in quiet hours (customer local time): it waits.
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)

    # Retries with exponential backoff; after the last, NotificationFailed.
    retry_schedule_seconds: list[float] = Field(default_factory=lambda: [60, 300, 1800, 7200, 21600])
    # A message stuck in "sending" longer than this (its sender crashed) is sent again with the same idempotency key.
    sending_lease_seconds: float = Field(120, gt=0)
    # A notification waits this long for the customer's contact to arrive before it fails.
    awaiting_contact_days: float = Field(7, gt=0)
    dispatch_batch: int = Field(50, ge=1)
    dispatch_tick_seconds: float = Field(0.5, gt=0)
