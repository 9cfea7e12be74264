"""Notifier: SMS, e-mail and letters from a rule table, with templates, quiet hours,
consent, retries, and never the same message twice."""

from __future__ import annotations

from pathlib import Path

from shared.events import COMPLAINTS, FOLLOWUP, INTAKE, QUALITY
from shared.kafka.consumer import Subscription
from shared.runtime import ServiceDefinition, ServiceRuntime
from shared.settings import secrets_file

from services.notifier import handlers
from services.notifier.channels import SmsChannel
from services.notifier.config import NotifierSettings
from services.notifier.dispatcher import Dispatcher, close_channels
from services.notifier.rules import load_rules
from services.notifier.templating import Templates

RULES = load_rules(NotifierSettings().rules_file)


def _subscriptions() -> list[Subscription]:
    by_topic: dict[str, dict[str, object]] = {t: {} for t in (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY)}
    for rule in RULES.rules:
        for topic in [rule.topic] if rule.topic else list(by_topic):
            by_topic.setdefault(topic, {})[rule.event] = handlers.on_event
    by_topic[INTAKE]["CustomerRegistered"] = handlers.on_customer_changed
    by_topic[INTAKE]["CustomerUpdated"] = handlers.on_customer_changed
    return [Subscription(topic, handlers_) for topic, handlers_ in by_topic.items()]  # type: ignore[arg-type]


def load_notifier_settings() -> NotifierSettings:
    env_file = secrets_file()
    return NotifierSettings(_env_file=env_file if env_file.exists() else None)  # type: ignore[call-arg]


async def _on_start(runtime: ServiceRuntime) -> None:
    settings: NotifierSettings = runtime.state.setdefault("settings", load_notifier_settings())
    runtime.state.setdefault("rules", load_rules(settings.rules_file))
    runtime.state.setdefault("templates", Templates(settings.templates_dir, settings.default_locale))
    runtime.state.setdefault("channels", {"sms": SmsChannel(settings)})


async def dispatch(runtime: ServiceRuntime) -> None:
    dispatcher = Dispatcher(runtime, runtime.state["settings"], runtime.state["channels"], runtime.state["templates"])
    try:
        await dispatcher.run()
    finally:
        await close_channels(runtime.state["channels"])


definition = ServiceDefinition(
    name="notifier",
    description="Customer and staff notifications by SMS, e-mail and letter, decided by a rule table.",
    migrations=Path(__file__).parent / "migrations",
    subscriptions=_subscriptions(),
    on_start=_on_start,
    workers=[dispatch],
)
