"""Intake's rules and their defaults (DESIGN.md §4, work plan "customer information management")."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_INTAKE_", extra="ignore")

    # Position 9 of a VIN is a check digit for these first characters (ISO 3779 / FMVSS 115 /
    # GB 16735: North America 1-5, China L). Empty disables the check.
    vin_check_digit_regions: str = "12345L"
    # "A complete file within 2 days of a visit."
    complete_file_within_days: int = Field(2, ge=0)
    # Webhook: batch size, replay window, body limit.
    webhook_max_events: int = Field(500, ge=1)
    webhook_max_age_seconds: int = Field(300, ge=1)
    webhook_max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
