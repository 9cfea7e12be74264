"""Jinja2 templates per locale (zh-CN and en), falling back to the default locale.

`<template>.sms.j2` is the message itself. E-mail and letter templates are one file with
blocks: `subject`, `text` and (e-mail) `html`. The HTML part is rendered with autoescaping,
because event data (a complaint's description) comes from customers; the text parts are not
escaped, since they are not HTML.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, pass_context
from jinja2.runtime import Context

from services.notifier.channels import Message


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@pass_context
def _localdate(context: Context, value: Any) -> str:
    local = _moment(value).astimezone(ZoneInfo(context.get("timezone") or "Asia/Shanghai"))
    return f"{local.year}年{local.month}月{local.day}日" if context.get("locale") == "zh-CN" else local.strftime("%d %b %Y")


@pass_context
def _localtime(context: Context, value: Any) -> str:
    return _moment(value).astimezone(ZoneInfo(context.get("timezone") or "Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


class Templates:
    def __init__(self, directory: Path, default_locale: str) -> None:
        self.default_locale = default_locale
        self.text = self._environment(directory, autoescape=False)
        self.html = self._environment(directory, autoescape=True)

    @staticmethod
    def _environment(directory: Path, autoescape: bool) -> Environment:
        env = Environment(loader=FileSystemLoader(str(directory)), autoescape=autoescape, undefined=StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
        env.filters["localdate"] = _localdate
        env.filters["localtime"] = _localtime
        return env

    def resolve(self, template: str, channel: str, locale: str | None) -> str | None:
        """The template file for this locale, else the default locale's; None if neither exists."""
        for candidate in dict.fromkeys((locale or self.default_locale, self.default_locale)):
            name = f"{candidate}/{template}.{channel}.j2"
            try:
                self.text.get_template(name)
                return name
            except TemplateNotFound:
                continue
        return None

    def render(self, template: str, channel: str, locale: str | None, context: dict[str, Any]) -> tuple[Message, str]:
        """The message and the locale it was written in. LookupError when no template exists."""
        name = self.resolve(template, channel, locale)
        if name is None:
            raise LookupError(f"no template {template}.{channel} for locale {locale} or {self.default_locale}")
        used = name.split("/", 1)[0]
        ctx = {**context, "locale": used}
        text_template = self.text.get_template(name)
        if channel == "sms":
            return Message(subject=None, text=text_template.render(ctx).strip()), used
        subject = _block(text_template, "subject", ctx)
        text = _block(text_template, "text", ctx)
        html = _block(self.html.get_template(name), "html", ctx) if "html" in text_template.blocks else None
        if not subject or not text:
            raise LookupError(f"{name} needs a subject and a text block")
        return Message(subject=" ".join(subject.split()), text=text, html=html), used


def _block(template: Template, block: str, ctx: dict[str, Any]) -> str | None:
    render = template.blocks.get(block)
    if render is None:
        return None
    return "".join(render(template.new_context(ctx))).strip()
