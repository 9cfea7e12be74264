"""The return-visit rules and their defaults, named as the work plan names them."""

from datetime import time

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class FollowUpRules(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERSALES_FOLLOWUP_", extra="ignore")

    # "within three days to one week after the customer picks up the car"
    first_visit_after_days: int = Field(3, ge=0)
    first_visit_within_days: int = Field(7, ge=1)
    # "within 7 days after the first tracking service"
    second_visit_within_days: int = Field(7, ge=1)
    # Calling hours, customer local time.
    calling_hours_start: time = time(9, 0)
    calling_hours_end: time = time(20, 0)
