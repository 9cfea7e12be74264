"""Jinja2 templates per locale (zh-CN and en), falling back to the default locale."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context, select_autoescape
from jinja2.runtime import Context


@pass_context
def _localdate(context: Context, value: Any) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = ZoneInfo(context.get("timezone") or "Asia/Shanghai")
    local = moment.astimezone(zone)
    return local.strftime("%Y年%m月%d日") if context.get("locale") == "zh-CN" else local.strftime("%d %b %Y")


@pass_context
def _localtime(context: Context, value: Any) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = ZoneInfo(context.get("timezone") or "Asia/Shanghai")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


class Templates:
    def __init__(self, directory: Path, default_locale: str) -> None:
        self.default_locale = default_locale
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["localdate"] = _localdate
        self.env.filters["localtime"] = _localtime

    def resolve(self, template: str, part: str, locale: str | None) -> str | None:
        """The template file for this locale, else the default locale's; None if neither exists."""
        for candidate in dict.fromkeys((locale or self.default_locale, self.default_locale)):
            name = f"{candidate}/{template}.{part}.j2"
            try:
                self.env.get_template(name)
                return name
            except TemplateNotFound:
                continue
        return None

    def render(self, template: str, part: str, locale: str | None, context: dict[str, Any]) -> str | None:
        name = self.resolve(template, part, locale)
        if name is None:
            return None
        used_locale = name.split("/", 1)[0]
        return self.env.get_template(name).render({**context, "locale": used_locale}).strip()
