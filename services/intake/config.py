"""Intake's rules and their defaults (DESIGN.md §4, work plan "customer information management"),
and the dependencies its handlers and routes receive."""

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_INTAKE_", extra="ignore")

    # Position 9 of a VIN is a check digit for these first characters (ISO 3779 / FMVSS 115 /
    # GB 16735: North America 1-5, China L). Empty disables the check.
    vin_check_digit_regions: str = "12345L"
    # "Establish a file within two days" of a visit: older incomplete files are overdue.
    complete_file_within_days: int = Field(2, ge=0)
    # An event dated further than this in the future is refused (clock skew allowance).
    future_tolerance_hours: float = Field(24, ge=0)
    # Webhook: events per request and the replay window of a signature.
    webhook_max_events: int = Field(500, ge=1)
    webhook_max_age_seconds: int = Field(300, ge=1)


@dataclass(frozen=True)
class IntakeDeps:
    rules: IntakeRules
