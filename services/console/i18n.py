"""Texts through gettext catalogues (Babel): the .po files under locale/ are compiled when the
console starts; dates, numbers and names are formatted for the reader's locale."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.console.search import mask_phone

HERE = Path(__file__).parent
LOCALES = {"zh-CN": "zh_CN", "en": "en"}  # the console's locale names -> Babel's
DOMAIN = "console"
DISPLAY_ZONE = ZoneInfo("Asia/Shanghai")


def N_(message: str) -> str:
    """Marks a text for the catalogue; translated where it is shown."""
    return message


# The words for the values the pages show (roles, kinds of call, outcomes, states …).
LABELS: dict[str, dict[str, str]] = {
    "role": {"agent": N_("agent"), "supervisor": N_("supervisor"), "quality": N_("quality inspector"),
             "department": N_("department")},
    "kind": {"first_visit": N_("first return visit after a pickup"), "second_visit": N_("second return visit"),
             "complaint_confirmation": N_("confirm a complaint's resolution"), "campaign_call": N_("campaign invitation"),
             "lost_customer": N_("lost customer: ask why"), "maintenance_reminder": N_("maintenance reminder"),
             "feedback_answer": N_("tell the customer the solution to their concern"),
             "feedback_confirmation": N_("confirm the customer is satisfied with the solution")},
    "outcome": {"reached": N_("reached"), "unreachable": N_("unreachable"), "wrong_number": N_("wrong number"),
                "call_back_later": N_("call back later")},
    "status": {"scheduled": N_("scheduled"), "due": N_("due"), "overdue": N_("overdue"), "escalated": N_("escalated"),
               "completed": N_("completed"), "expired": N_("expired")},
    "state": {"opened": N_("opened"), "acknowledged": N_("acknowledged"), "assigned": N_("assigned"),
              "pending_customer": N_("waiting for the customer"), "resolved": N_("resolved"), "closed": N_("closed"),
              "reopened": N_("reopened")},
    "event": {"ComplaintOpened": N_("case opened"), "ComplaintAcknowledged": N_("acknowledged"),
              "ComplaintAssigned": N_("assigned"), "ComplaintEscalated": N_("escalated"),
              "ComplaintResolved": N_("resolved"), "ComplaintClosed": N_("closed"), "ComplaintReopened": N_("reopened"),
              "ComplaintPended": N_("waiting for the customer"), "ComplaintResumed": N_("resumed")},
    "category": {"product_quality": N_("product quality"), "service_attitude": N_("service attitude"),
                 "repair_quality": N_("repair quality"), "parts_supply": N_("parts supply"), "delay": N_("delay"),
                 "price": N_("price"), "other": N_("other")},
    "severity": {"low": N_("low"), "medium": N_("medium"), "high": N_("high"), "critical": N_("critical")},
    "channel": {"sms": N_("SMS"), "email": N_("e-mail"), "letter": N_("letter")},
    "notification": {"sent": N_("sent"), "failed": N_("failed"), "suppressed": N_("not sent (suppressed)")},
    "inbound": {"consultation": N_("a consultation"), "request": N_("a request"), "complaint": N_("a complaint"),
                "other": N_("something else")},
    "service": {"maintenance": N_("maintenance"), "repair": N_("repair"), "warranty": N_("warranty repair"),
                "accident": N_("accident repair"), "recall": N_("recall")},
    "match": {"phone": N_("phone"), "plate": N_("plate"), "vin": N_("VIN"), "repair_order": N_("repair order"),
              "name": N_("name"), "pinyin": N_("pinyin")},
    "field": {"name": N_("name"), "phone": N_("phone"), "email": N_("e-mail"), "address": N_("address"),
              "region": N_("region"), "person_in_charge": N_("person in charge"), "locale": N_("language"),
              "timezone": N_("time zone"), "consent": N_("consent"), "customer_id": N_("customer id"),
              "contact_flags": N_("unusable contact values")},
    "tier": {"gold": N_("gold"), "silver": N_("silver")},
    "detail": {"assignee": N_("handler"), "level": N_("level"), "level_name": N_("escalated to"), "role": N_("role"),
               "person": N_("person"), "breach": N_("missed"), "deadline": N_("deadline"),
               "resolution": N_("resolution"), "reason": N_("reason"), "satisfied": N_("satisfied"),
               "confirmation": N_("confirmation"), "note": N_("note"), "severity": N_("severity"),
               "category": N_("category")},
    "level": {"0": N_("handler"), "1": N_("supervisor"), "2": N_("department head"), "3": N_("superior leader")},
    "department": {"customer_service": N_("customer service"), "quality_inspection": N_("quality inspection"),
                   "after_sales_service": N_("after-sales service"), "parts_warehouse": N_("parts warehouse"),
                   "sales": N_("sales")},
    "clock": {"acknowledge": N_("acknowledge"), "resolve": N_("resolve")},
    "breach": {"acknowledge": N_("acknowledge in time"), "resolve": N_("resolve in time")},
    "case_action": {"acknowledge": N_("Acknowledge"), "assign": N_("Assign"), "pend": N_("Wait for the customer"),
                    "resume": N_("Resume"), "resolve": N_("Resolve"), "close": N_("Close"), "reopen": N_("Reopen")},
    "case_done": {"acknowledge": N_("Acknowledged."), "assign": N_("Assigned."), "pend": N_("Waiting for the customer."),
                  "resume": N_("Resumed."), "resolve": N_("Resolved."), "close": N_("Closed."),
                  "reopen": N_("Reopened."), "document": N_("The document was attached.")},
    "document": {"photo": N_("photo"), "recording": N_("recording"), "inspection_report": N_("inspection report"),
                 "handling_report": N_("handling report"), "correspondence": N_("correspondence"),
                 "customer_statement": N_("customer statement"), "complaint_form": N_("complaint form"),
                 "other": N_("other")},
    "fact": {"filed": N_("filed"), "note": N_("note"), "acknowledged": N_("acknowledged"), "assigned": N_("assigned"),
             "comment": N_("comment"), "pended": N_("waiting for the customer"), "resumed": N_("resumed"),
             "resolved": N_("resolved"), "closed": N_("closed"), "reopened": N_("reopened"),
             "document": N_("document attached"), "escalated": N_("escalated"), "reclassified": N_("reclassified")},
    "alert_state": {"open": N_("open"), "raised": N_("raised"), "acknowledged": N_("acknowledged"),
                    "closed": N_("contained and closed")},
    "alert_rule": {"poisson": N_("more reports than expected"), "failure_mode_burst": N_("burst of one failure mode")},
    "alert_done": {"acknowledge": N_("The alert was acknowledged."), "close": N_("The alert was closed."),
                   "confirm": N_("The batch problem was confirmed and its recall announced.")},
    # rectification measures (measure_pages.py)
    "measure_status": {"open": N_("open"), "due": N_("due soon"), "overdue": N_("overdue"),
                       "verified": N_("verified")},
    "measure_change": {"decreased": N_("decreased"), "increased": N_("increased"),
                       "no_significant_change": N_("no significant change"),
                       "not_enough_data": N_("not enough data"),
                       "after_not_started": N_("not in place yet: no figures after it")},
    "measure_verdict": {"effective": N_("effective"), "not_effective": N_("not effective")},
    "measure_done": {"recorded": N_("The measure was recorded; its owner is reminded on the due date."),
                     "verified": N_("The measure was verified.")},
    "part_category": {"motor": N_("motor"), "controller": N_("controller"), "rear_axle": N_("rear axle"),
                      "differential": N_("differential"), "frame": N_("frame"),
                      "front_shock_absorber": N_("front shock absorber"), "rim_welding": N_("rim welding")},
    "target": {"warranty_return_visit_rate": N_("warranty return-visit rate"), "satisfaction_rate": N_("satisfaction"),
               "complaint_sla_compliance": N_("complaint SLA compliance"),
               "parts_accuracy": N_("parts-shipment accuracy")},
    "report": {"weekly": N_("Weekly report"), "monthly": N_("Monthly report")},
    "done": {"contact": N_("The correction was sent to the customer file; it shows here in a moment."),
             "complaint": N_("The complaint was raised; the case shows here in a moment."),
             "inbound": N_("The inbound call was logged."),
             "erasure": N_("The personal data were erased in the customer file; every service removes its copy "
                           "and this page shows the file as erased in a moment.")},
    "action": {"sign_in": N_("signed in"), "sign_in_failed": N_("wrong password"),
               "sign_in_locked": N_("sign-in refused: locked"), "sign_out": N_("signed out"),
               "read_customer": N_("read the customer file"), "read_vehicle": N_("read the vehicle"),
               "search": N_("searched"), "claim_call": N_("claimed a call"), "release_call": N_("released a call"),
               "record_call": N_("recorded a call"), "raise_complaint": N_("raised a complaint"),
               "correct_contact": N_("corrected contact data"), "erase_customer": N_("erased personal data"),
               "log_inbound_call": N_("logged an inbound call"),
               "read_case": N_("read a complaint case"), "case_acknowledge": N_("acknowledged a case"),
               "case_assign": N_("assigned a case"), "case_pend": N_("set a case to wait for the customer"),
               "case_resume": N_("resumed a case"), "case_resolve": N_("resolved a case"),
               "case_close": N_("closed a case"), "case_reopen": N_("reopened a case"),
               "case_document": N_("attached a document to a case"), "read_alert": N_("read a quality alert"),
               "alert_acknowledge": N_("acknowledged a quality alert"),
               "alert_close": N_("closed a quality alert"), "read_report": N_("read or exported a report"),
               "send_report": N_("issued a report to be mailed"),
               "read_feedback_item": N_("read a feedback item"),
               "feedback_solution": N_("recorded a feedback item's solution"),
               "record_consultation": N_("recorded a consultation"),
               "record_measure": N_("recorded a rectification measure"),
               "verify_measure": N_("verified a rectification measure")},
    # feedback items (the customers' concerns heard on return visits)
    "feedback_state": {"open": N_("waiting for a solution"), "escalated": N_("escalated to the supervisor"),
                       "answered": N_("answered, to be confirmed"), "closed": N_("closed")},
    "feedback_step": {"opened": N_("opened by the call"), "escalated": N_("escalated"),
                      "answered": N_("solution recorded"), "reopened": N_("reopened: not satisfied"),
                      "closed": N_("closed")},
    "closed_as": {"answered_on_call": N_("answered on the call"), "confirmed": N_("the customer confirmed"),
                  "unconfirmed": N_("not reached to confirm"), "complaint": N_("became a complaint case")},
    "reason": {"low_score": N_("low score"), "request": N_("a request")},
    "told_by": {"sms": N_("by SMS"), "call": N_("by a call today"), "on_call": N_("on the call")},
    "actor": {"system": N_("the deadline")},
    "consultation_channel": {"hotline": N_("hotline"), "showroom": N_("showroom"), "web": N_("web")},
    # lost customers: why they left (followup's fixed list) and the signs of leaving
    "lost_reason": {"moved_away": N_("moved away"), "switched_dealer": N_("goes to another dealer or workshop"),
                    "sold_the_car": N_("sold the car"), "price": N_("service is too expensive"),
                    "service_quality": N_("unhappy with the service or the repair"), "other": N_("another reason"),
                    "not_given": N_("reason not given")},
    "risk_sign": {"overdue_maintenance": N_("maintenance overdue"),
                  "falling_visit_frequency": N_("visits falling off")},
    # dealer scorecards: the measures with a target, and what went wrong with a shipped line
    "scorecard_measure": {"return_visit_reach": N_("return-visit reach"), "satisfaction": N_("satisfaction"),
                          "parts_accuracy": N_("parts-shipment accuracy")},
    "discrepancy": {"wrong_part": N_("wrong part"), "short": N_("short"), "damaged": N_("damaged"),
                    "late": N_("late")},
}


def translations(locale: str) -> Translations:
    """The locale's catalogue, compiled from its .po file in memory."""
    po = HERE / "locale" / LOCALES[locale] / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=LOCALES[locale], domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


def environment(locale: str) -> Environment:
    """A Jinja2 environment for one locale: its translations and its formatting filters."""
    babel_locale = LOCALES[locale]
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    catalogue = translations(locale)
    env.install_gettext_translations(catalogue, newstyle=True)  # type: ignore[attr-defined]

    def when(value: datetime | None, style: str = "medium") -> str:
        if value is None:
            return "—"
        return format_datetime(value, style, tzinfo=DISPLAY_ZONE, locale=babel_locale)

    def span(value: timedelta | None) -> str:
        if value is None:
            return "—"
        return format_timedelta(value, threshold=1.5, locale=babel_locale)

    def number(value: Any) -> str:
        return "—" if value is None else format_decimal(value, locale=babel_locale)

    def percent(value: Any) -> str:
        return "—" if value is None else format_percent(value, locale=babel_locale)

    def person_name(customer: dict[str, Any] | None) -> str:
        """Chinese names as written; in English the pinyin follows, family name first."""
        if not customer or not customer.get("name"):
            return "—"
        name = str(customer["name"])
        spelled = customer.get("name_pinyin")
        if locale == "en" and spelled and spelled != name.lower():
            return f"{name} ({_spaced_pinyin(name)})"
        return name

    def label(value: Any, group: str) -> str:
        """The reader's word for a value the services use (a role, an outcome, a state …)."""
        text = LABELS.get(group, {}).get(str(value))
        return catalogue.gettext(text) if text else str(value)

    def message(text: str | None) -> str:
        """A message that may be the console's own (translated) or a service's (shown as it is)."""
        return catalogue.gettext(text) if text else ""

    env.filters.update(when=when, span=span, number=number, percent=percent, person_name=person_name,
                       masked=mask_phone, label=label, message=message,
                       format_message=lambda text, params: text % params if params else text)
    env.globals.update(locale=locale, html_lang=locale)
    return env


def _spaced_pinyin(name: str) -> str:
    from pypinyin import lazy_pinyin

    parts = [p.capitalize() for p in lazy_pinyin(name, errors="ignore") if p.strip()]
    if len(parts) <= 1:
        return "".join(parts)
    return f"{parts[0]} {''.join(parts[1:]).capitalize()}"
