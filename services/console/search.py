"""Search that forgives: what an agent types is read every way it can mean something (the last
digits of a phone, part of a plate with or without its province character, a VIN fragment,
a repair order, a name in characters or in pinyin). Pure functions; the SQL is in the store."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pypinyin import Style, lazy_pinyin

MIN_PHONE_DIGITS = 4
MIN_FRAGMENT = 3  # plate, VIN and repair-order fragments: shorter ones match too much to be useful
MIN_VIN_FRAGMENT = 4

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PHONE_NOISE = re.compile(r"[\s\-().+]")
_PLATE_NOISE = re.compile(r"[\s\-·.•・_]")
_ASCII_ALNUM = re.compile(r"^[A-Z0-9]+$")


def is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def plate_key(plate: str | None) -> str | None:
    """The part of a plate people remember: upper case, no separators, no leading province
    character (粤B·12345 and b12345 are both B12345)."""
    if not plate:
        return None
    text = _PLATE_NOISE.sub("", unicodedata.normalize("NFKC", plate)).upper()
    while text and is_cjk(text[0]):
        text = text[1:]
    return text or None


def pinyin(name: str | None) -> tuple[str | None, str | None]:
    """("zhangwei", "zw") for 张伟; names without Chinese characters keep their letters."""
    if not name:
        return None, None
    syllables = [s.lower() for s in lazy_pinyin(name, errors="ignore") if s.strip()]
    if not syllables:
        return None, None
    letters = [re.sub(r"[^a-z]", "", s) for s in syllables]
    letters = [s for s in letters if s]
    if not letters:
        return None, None
    initials = "".join(s[0] for s in lazy_pinyin(name, style=Style.FIRST_LETTER, errors="ignore") if s.strip())
    return "".join(letters), re.sub(r"[^a-z]", "", initials.lower()) or None


def mask_phone(phone: str | None) -> str:
    """+8613812345678 -> 138****5678: enough to confirm with the customer, not to copy."""
    if not phone:
        return "—"
    digits = re.sub(r"\D", "", phone)
    if phone.startswith("+86") and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) <= 4:
        return "*" * len(digits)
    head = digits[:3] if len(digits) >= 10 else ""
    return f"{head}****{digits[-4:]}"


@dataclass(frozen=True)
class Query:
    text: str
    phone_suffix: str | None = None
    plate: str | None = None
    vin: str | None = None
    repair_order: str | None = None
    name: str | None = None
    pinyin: str | None = None

    @property
    def empty(self) -> bool:
        return not any((self.phone_suffix, self.plate, self.vin, self.repair_order, self.name, self.pinyin))


def parse(text: str) -> Query:
    """Every reading of the text that can match something."""
    # LIKE's wildcards are not search syntax here: an agent's "%" or "_" is dropped.
    raw = unicodedata.normalize("NFKC", text or "").replace("%", "").replace("_", "").strip()[:64]
    if not raw:
        return Query(text="")
    compact = _PHONE_NOISE.sub("", raw)
    phone = compact if compact.isdigit() and len(compact) >= MIN_PHONE_DIGITS else None
    key = plate_key(raw)
    ascii_key = key if key and _ASCII_ALNUM.match(key) else None
    has_cjk = any(is_cjk(ch) for ch in raw)
    plate = key if key and len(key) >= MIN_FRAGMENT and (ascii_key or has_cjk) and not _only_cjk(raw) else None
    vin = ascii_key if ascii_key and len(ascii_key) >= MIN_VIN_FRAGMENT and not has_cjk else None
    order = re.sub(r"[^A-Z0-9\-]", "", raw.upper()) if not has_cjk else ""
    repair_order = order if len(order) >= MIN_VIN_FRAGMENT else None
    name = raw if _only_cjk(raw.replace(" ", "").replace("·", "")) else None
    letters = re.sub(r"[\s']", "", raw.lower())
    spelled = letters if re.fullmatch(r"[a-z]{2,}", letters) else None
    return Query(text=raw, phone_suffix=phone, plate=plate, vin=vin, repair_order=repair_order, name=name or None,
                 pinyin=spelled)


def _only_cjk(text: str) -> bool:
    return bool(text) and all(is_cjk(ch) for ch in text)
