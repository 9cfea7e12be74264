"""Issue 19, injection: what data may put into a customer's SMS, a mail header or an HTML part,
and what the edge refuses (no infrastructure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from email.utils import getaddresses

import pytest
from pydantic import BaseModel, ValidationError

from services.complaints.api import FileComplaint
from services.notifier.channels import Address, EmailChannel, Message
from services.notifier.config import NotifierSettings
from services.notifier.domain import ConsentFact, consent_changes
from services.notifier.templating import Templates, clean_sms, clean_text
from shared.events.upstream import ComplaintFiled, CustomerInfo, PersonName, Reference
from shared.validation import check_person_name, check_reference

pytestmark = pytest.mark.dates

SETTINGS = NotifierSettings()
TEMPLATES = Templates(SETTINGS.templates_dir, "zh-CN")
PHISHING_REF = "CRM-1 请登录 https://evil.example/refund 领取赔偿"
HEADER_NAME = 'Li" <x@evil.example>, "'


def _acknowledged(ref: str, locale: str) -> str:
    context = {"data": {"complaint_id": "CASE-1", "complaint_ref": ref}, "contact": {}, "timezone": "Asia/Shanghai"}
    message, _ = TEMPLATES.render("complaint_acknowledged", "sms", locale, context)
    return message.text


@pytest.mark.parametrize("ref", [PHISHING_REF, "CRM-1 bit.ly/3xYz", "CRM-1 www.evil.example", "CRM-1 refund-now.top"])
def test_a_link_in_data_never_reaches_a_customer_sms(ref: str) -> None:
    text = _acknowledged(ref, "zh-CN")
    assert "evil" not in text and "bit.ly" not in text and ".top" not in text and "http" not in text
    assert "[链接已删除]" in text and "CRM-1" in text
    assert "[link removed]" in _acknowledged(ref, "en")


def test_the_template_text_itself_keeps_its_own_punctuation_and_hotline() -> None:
    text = _acknowledged("CRM-2026-00042", "zh-CN")
    assert "编号CRM-2026-00042" in text and "400-800-0000" in text and "[链接已删除]" not in text


def test_an_sms_is_one_line_without_control_characters() -> None:
    text = _acknowledged("CRM-1\r\n\x1b[2J\u202eevil\x00", "en")
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u202e" not in text and "\x00" not in text
    assert clean_sms("王伟\n\t先生") == "王伟 先生"


def test_email_text_keeps_line_breaks_but_loses_controls_and_html_is_escaped() -> None:
    assert clean_text("第一行\r\n第二行\x07\u2066") == "第一行\n第二行"
    context = {"data": {"complaint_id": "CASE-1", "complaint_ref": "<img src=x onerror=alert(1)>\x1b", "level": 2,
                        "level_name": "department head", "role": "department_head", "breach": "resolve",
                        "deadline": "2026-11-22T02:00:00+00:00", "next_deadline": None, "department": "qi",
                        "customer_id": "C1"},
               "person": {"name": "孙强"}, "timezone": "Asia/Shanghai", "contact": {}}
    message, _ = TEMPLATES.render("complaint_escalated", "email", "en", context)
    assert message.html is not None and "<img" not in message.html and "&lt;img" in message.html
    assert "\x1b" not in message.text and "\x1b" not in message.html and "\x1b" not in (message.subject or "")


def test_a_name_with_quotes_and_a_second_address_stays_one_recipient_in_the_to_header() -> None:
    mail = EmailChannel(SETTINGS).compose(uuid.uuid4(), [Address("li@example.cn", HEADER_NAME)],
                                          Message("Subject", "text"))
    parsed = message_from_bytes(mail.as_bytes(), policy=default)
    assert getaddresses(parsed.get_all("To")) == [(HEADER_NAME, "li@example.cn")]
    assert [a.addr_spec for a in parsed["To"].addresses] == ["li@example.cn"]


@pytest.mark.parametrize("ref", [PHISHING_REF, "https://evil.example", "evil.example", "CRM 1", "CRM<1>", "-CRM", "x" * 65])
def test_a_complaint_ref_outside_letters_digits_and_dashes_is_refused_with_the_rule(ref: str) -> None:
    with pytest.raises(ValueError, match="letters A-Z, digits, '-', '_' or '/'"):
        check_reference(ref)


@pytest.mark.parametrize("ref", ["CRM-2026-00042", "CS-0f3a9b", "IC-1a2b3c4d", "WEB_7", "DLR/2026/17"])
def test_real_complaint_refs_pass(ref: str) -> None:
    assert check_reference(ref) == ref


@pytest.mark.parametrize("name", ["王伟", "欧阳·娜娜", "Anna Berger", "O'Brien", "Jean-Luc Picard", "A. Smith",
                                  "上海某某汽车服务有限公司（一分公司）", "Smith & Sons"])
def test_real_names_pass(name: str) -> None:
    assert check_person_name(name) == name


@pytest.mark.parametrize(("name", "why"), [
    (HEADER_NAME, "holds"), ("王伟 evil.example", "web address"), ("王伟\n请点击", "line breaks"),
    ("<b>王伟</b>", "holds"), ("王伟@x", "holds"), ("", "1 to 200"), ("张" * 201, "1 to 200"),
])
def test_a_name_with_markup_links_or_line_breaks_is_refused(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_person_name(name)


def test_the_edge_models_refuse_them_with_the_field_named() -> None:
    with pytest.raises(ValidationError) as refused:
        FileComplaint.model_validate({"complaint_ref": PHISHING_REF, "customer_id": "C1", "description": "x"})
    assert refused.value.errors()[0]["loc"] == ("complaint_ref",)
    with pytest.raises(ValidationError, match="complaint_ref"):
        ComplaintFiled.model_validate({"complaint_ref": "evil.example/x", "customer_id": "C1", "channel": "web",
                                       "description": "x", "filed_at": "2026-11-20T09:00:00+08:00"})
    with pytest.raises(ValidationError, match="name"):
        CustomerInfo.model_validate({"name": HEADER_NAME, "phone": "+8613800138001", "address": "上海", "region": "east"})

    class Both(BaseModel):
        name: PersonName
        ref: Reference

    assert Both(name=" 王  伟 ", ref="CRM-1").model_dump() == {"name": "王 伟", "ref": "CRM-1"}


# -- the consent log's rule (services/notifier/domain.py), issue 19 -------------------------------

def _fact(consent: dict[str, bool], hours: int, customer: str = "C1") -> ConsentFact:
    return ConsentFact(customer_id=customer, consent=consent, at=datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=hours),
                       by="intake", reason=None, source="CustomerUpdated", event_id=uuid.uuid4())


def test_consent_changes_are_per_channel_and_a_plain_registration_logs_nothing() -> None:
    plain, no_sms = _fact({"sms": True, "email": True, "letter": True}, 0, "C2"), _fact({"sms": False}, 0)
    both = _fact({"sms": True, "email": False, "letter": False}, 1)
    changes = consent_changes({}, [plain, no_sms, both])
    assert [(f.customer_id, ch, granted) for f, ch, granted in changes] == [
        ("C1", "sms", False), ("C1", "sms", True), ("C1", "email", False), ("C1", "letter", False)]


def test_a_late_older_fact_changes_nothing_now_and_is_not_logged() -> None:
    newer = _fact({"sms": False}, 5)
    current = {"C1": ({"sms": False, "email": True, "letter": True}, newer.at)}
    assert consent_changes(current, [_fact({"sms": True}, 2)]) == []
    assert [(ch, g) for _, ch, g in consent_changes(current, [_fact({"sms": True}, 6)])] == [("sms", True)]
