"""Notifier: SMS, e-mail and letters from a rule table, with templates, quiet hours, consent and
opt-outs, retries, rate limits, and never the same message twice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.notifier import handlers
from services.notifier.api import router
from services.notifier.channels import EmailChannel, LetterChannel, SmsChannel
from services.notifier.config import NotifierDeps, NotifierSettings
from services.notifier.directory import load_directory
from services.notifier.dispatcher import Dispatcher, close_channels
from services.notifier.rules import load_rules
from services.notifier.templating import Templates
from shared.events import COMPLAINTS, FOLLOWUP, INTAKE, QUALITY
from shared.kafka.consumer import Handler, Subscription
from shared.replay import Comparison
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import secrets_file


def load_notifier_settings() -> NotifierSettings:
    env_file = secrets_file()
    return NotifierSettings(_env_file=env_file if env_file.exists() else None)  # type: ignore[call-arg]


def _subscriptions() -> list[Subscription]:
    """The event types the rule table names (on any aftersales.* topic, unless a rule pins one),
    plus the projections' sources."""
    rules = load_rules(load_notifier_settings().rules_file)
    by_topic: dict[str, dict[str, Handler]] = {t: {} for t in (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY)}
    for rule in rules.rules:
        for topic in [rule.topic] if rule.topic else (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY):
            by_topic.setdefault(topic, {})[rule.event] = handlers.on_event
    by_topic[INTAKE]["CustomerRegistered"] = handlers.on_customer_changed
    by_topic[INTAKE]["CustomerUpdated"] = handlers.on_customer_changed
    by_topic[INTAKE]["CustomerContactCorrected"] = handlers.on_customer_changed  # an agent's correction
    by_topic[INTAKE]["CustomerErased"] = handlers.on_customer_erased  # issue 19: erasure
    by_topic[INTAKE]["CampaignAnnounced"] = handlers.on_campaign
    by_topic[INTAKE]["VehicleSold"] = handlers.on_vehicle  # the customer's dealers and regions (agents' scope)
    by_topic[INTAKE]["VehiclePickedUp"] = handlers.on_vehicle
    by_topic[QUALITY]["CampaignAnnounced"] = handlers.on_campaign  # a recall from a confirmed batch problem
    return [Subscription(topic, subscribed) for topic, subscribed in by_topic.items()]


async def _deps(runtime: ServiceRuntime[NotifierDeps], overrides: Mapping[str, Any]) -> NotifierDeps:
    """The settings (overridable), and the rule table, directory, templates and channels they name."""
    settings: NotifierSettings = overrides.get("settings") or load_notifier_settings()
    assert runtime.pool is not None
    deps = NotifierDeps(
        settings=settings, rules=load_rules(settings.rules_file), directory=load_directory(settings.staff_file),
        templates=Templates(settings.templates_dir, settings.default_locale),
        channels={"sms": SmsChannel(settings), "email": EmailChannel(settings),
                  "letter": LetterChannel(runtime.pool, runtime.clock)},
    )
    return replace(deps, **{name: value for name, value in overrides.items() if name != "settings"})


async def dispatch(runtime: ServiceRuntime[NotifierDeps]) -> None:
    deps = runtime.deps
    await Dispatcher(runtime, deps.settings, deps.channels, deps.templates).run()


async def _close_channels(runtime: ServiceRuntime[NotifierDeps]) -> None:
    await close_channels(runtime.deps.channels)


REPLAY = (
    Comparison("notifications decided", "notifications", "notification_id::text",
               ("rule", "source_event_type", "recipient", "recipient_kind", "template", "locale", "correlation_id"),
               "SELECT notification_id::text FROM notifications WHERE source_event_id = ANY(:ids)",
               note="a replay never sends: the dispatcher does not run; the channel may differ when the "
                    "dispatcher fell back to another one"),
)


definition: ServiceDefinition[NotifierDeps] = ServiceDefinition(
    name="notifier",
    description="Customer and staff notifications by SMS, e-mail and letter, decided by a rule table.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=_subscriptions(),
    deps=_deps,
    router=router,
    workers=[dispatch],
    on_stop=_close_channels,
    replay=REPLAY,
    replay_keeps=("erased_customers",),
)
