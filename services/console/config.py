"""The console's rules, named as the people who use it would name them (AFTERSALES_CONSOLE_*)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.console.clients import Services


class ConsoleRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_CONSOLE_", extra="ignore")

    # Sign-in: after this many wrong passwords in a row the account is locked for a while.
    lock_after_failures: int = Field(5, ge=1)
    lock_minutes: float = Field(30, gt=0)
    # ...and one computer (client address) gets this many failed sign-ins in the window, whichever
    # accounts it tries, before it waits (429 with Retry-After): password spraying across accounts.
    signin_failures_per_client: int = Field(10, ge=1)
    signin_failure_window_minutes: float = Field(15, gt=0)
    session_hours: float = Field(10, gt=0)  # a working day and a bit; then sign in again
    # The person's token for one call to a service (DESIGN.md section 11: at most 15 minutes).
    token_minutes: float = Field(5, gt=0, le=15)
    # The desk
    queue_size: int = Field(30, ge=1, le=200)
    # The supervisors' workload view: what one agent can call in a day.
    calls_per_agent_per_day: int = Field(60, ge=1, le=500)
    default_locale: str = "zh-CN"
    # Dealer scorecards (docs/dealer-scorecards.md): a dealer is flagged below the target only when
    # an exact binomial test says so at this confidence; a repeat repair is the same VIN and item
    # again within these many days.
    scorecard_target: float = Field(0.98, gt=0, lt=1)
    scorecard_confidence: float = Field(0.95, ge=0.5, lt=1)
    repeat_repair_days: int = Field(30, ge=1, le=365)
    # Cookies go out with Secure unless the console is reached on the loopback address;
    # "always" or "never" overrides that (a TLS-terminating proxy that rewrites Host).
    secure_cookies: str = Field("auto", pattern="^(auto|always|never)$")


@dataclass(frozen=True)
class ConsoleDeps:
    rules: ConsoleRules
    services: Services  # the other services' APIs, called with the signed-in person's token
    templates: dict[str, Any]  # locale -> its Jinja2 environment
