"""Jinja2 templates per locale (zh-CN and en), falling back to the default locale.

`<template>.sms.j2` is the message itself. E-mail and letter templates are one file with
blocks: `subject`, `text` and (e-mail) `html`. Event data comes from customers and staff (a
complaint's description, a name, a complaint ref), so every value a template prints is cleaned
for its channel (`finalize`), the template's own text is not:
- HTML: autoescaped, control characters removed;
- e-mail text and letters: control characters removed (line breaks and tabs kept);
- SMS: control characters and line breaks removed, and no link taken from data: a company-branded
  SMS must not carry a URL or domain someone typed into a field (it is replaced by a marker).
The subject is one line (whitespace collapsed) and goes into a header object, not a string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from services.notifier.channels import Message
from shared.validation import LINK


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@pass_context
def _localdate(context: Context, value: Any) -> str:
    local = _moment(value).astimezone(ZoneInfo(context.get("timezone") or "Asia/Shanghai"))
    return f"{local.year}年{local.month}月{local.day}日" if context.get("locale") == "zh-CN" else local.strftime("%d %b %Y")


@pass_context
def _localtime(context: Context, value: Any) -> str:
    return _moment(value).astimezone(ZoneInfo(context.get("timezone") or "Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


# controls and bidi overrides go everywhere; tab and newline are handled per channel
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\s*[\r\n\t]+\s*")
LINK_REMOVED = {"zh-CN": "[链接已删除]", "en": "[link removed]"}


def clean_text(value: str) -> str:
    """E-mail text and letters: control characters out, line breaks and tabs kept."""
    return _CONTROLS.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


def clean_sms(value: str, locale: str | None = None) -> str:
    """SMS: one line, no control characters, and no link that came from data."""
    one_line = _LINE_BREAKS.sub(" ", _CONTROLS.sub("", value))
    return LINK.sub(LINK_REMOVED.get(locale or "", LINK_REMOVED["en"]), one_line)


def _finalizer(clean: Callable[[str, str | None], str]) -> Callable[..., Any]:
    @pass_context
    def finalize(context: Context, value: Any) -> Any:
        if value is None or isinstance(value, (int, float, bool)):
            return value
        if isinstance(value, Markup):  # already safe HTML (autoescape produced it): only controls go
            return Markup(_CONTROLS.sub("", str(value)))
        return clean(str(value), context.get("locale"))
    return finalize


class Templates:
    def __init__(self, directory: Path, default_locale: str) -> None:
        self.default_locale = default_locale
        self.text = self._environment(directory, False, lambda v, _: clean_text(v))
        self.sms = self._environment(directory, False, clean_sms)
        self.html = self._environment(directory, True, lambda v, _: clean_text(v))

    @staticmethod
    def _environment(directory: Path, autoescape: bool, clean: Callable[[str, str | None], str]) -> Environment:
        env = Environment(loader=FileSystemLoader(str(directory)), autoescape=autoescape, undefined=StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, finalize=_finalizer(clean))
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
        if channel == "sms":
            return Message(subject=None, text=self.sms.get_template(name).render(ctx).strip()), used
        text_template = self.text.get_template(name)
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
