"""Field validators a data steward would trust. Every error names the value and what was expected."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers

VIN_LENGTH = 17
_VIN_FORBIDDEN = set("IOQ")
# ISO 3779 / FMVSS 115 / GB 16735 transliteration and position weights for the check digit.
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_vin(raw: str) -> str:
    """Upper-case, trimmed, 17 characters of A-Z/0-9 without I, O or Q."""
    vin = raw.strip().upper()
    if len(vin) != VIN_LENGTH:
        raise ValueError(f"VIN {raw!r} has {len(vin)} characters; a VIN has {VIN_LENGTH}")
    for position, char in enumerate(vin, start=1):
        if char in _VIN_FORBIDDEN:
            raise ValueError(f"VIN {raw!r} has {char!r} at position {position}; VINs never use I, O or Q")
        if char not in _VIN_VALUES:
            raise ValueError(f"VIN {raw!r} has {char!r} at position {position}; a VIN uses only A-Z and 0-9")
    return vin


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) that ISO 3779 / GB 16735 prescribe for this VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def check_vin_check_digit(vin: str) -> str:
    expected = vin_check_digit(vin)
    if vin[8] != expected:
        raise ValueError(f"VIN {vin!r} has check digit {vin[8]!r} at position 9; its characters give {expected!r}")
    return vin


def with_check_digit(vin17: str) -> str:
    """Return the VIN with position 9 replaced by its correct check digit (for simulators and tests)."""
    draft = vin17[:8] + "0" + vin17[9:]
    return draft[:8] + vin_check_digit(draft) + draft[9:]


# Chinese mobile numbers by libphonenumber's own metadata: one of them already in E.164 (or in the
# national 11-digit form, read in CN) is accepted without the parse, which costs some 50 µs;
# anything else takes the whole libphonenumber path, which decides.
def _cn_mobile_pattern() -> str:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    mobile = metadata.mobile if metadata is not None else None
    pattern = mobile.national_number_pattern if mobile is not None else None
    if not pattern:
        raise RuntimeError("libphonenumber has no CN mobile pattern")
    return pattern


_CN_MOBILE = re.compile(_cn_mobile_pattern())


# Parsing is the costliest check, and a customer's number recurs within an import or a burst.
# 16,384 entries is about 5 MB; 200,000 held some 60 MB and was most of intake's peak RSS.
@lru_cache(maxsize=16_384)
def normalize_phone(raw: str, default_region: str = "CN") -> str:
    """E.164 form (`+8613812345678`); national numbers are read in `default_region`."""
    text = raw.strip()
    national = text[3:] if text.startswith("+86") else text if default_region == "CN" else ""
    if len(national) == 11 and national.isdigit() and _CN_MOBILE.fullmatch(national):
        return "+86" + national
    if not text:
        raise ValueError("phone is empty; expected E.164 such as +8613812345678")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"phone {raw!r} is not a phone number ({exc._msg}); expected E.164 such as +8613812345678") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(
            f"phone {raw!r} is not a valid number for region "
            f"{phonenumbers.region_code_for_number(number) or default_region}; expected E.164 such as +8613812345678"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    email = raw.strip()
    if not _EMAIL.match(email):
        raise ValueError(f"email {raw!r} is not an address of the form name@domain.tld")
    local, _, domain = email.partition("@")
    return f"{local}@{domain.lower()}"


# Text that reaches a customer's SMS or a mail header. A complaint ref is printed in the
# company's SMS and a name in the To header, so both take only what such values hold.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
LINK = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://\S+"  # any scheme
    r"|www\.\S+"
    r"|\b[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"\.(?:[a-z]{2,}/\S*|(?:com|cn|net|org|info|io|ly|me|top|xyz|cc|co|tk|site|online|link|click|app|biz|vip|shop"
    r"|example)\b\S*))",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_/-]{0,63}$")
# letters of any script, digits, spaces (also the ideographic one) and the punctuation names use
_PERSON_NAME = re.compile(r"^[^\W_](?:[^\W_]|[ \u3000.·•'’\-()（）&])*$")


def check_reference(raw: str) -> str:
    """A reference a customer is told (a complaint ref): ASCII letters, digits, '-', '_', '/'."""
    ref = raw.strip()
    if not _REFERENCE.match(ref):
        raise ValueError(
            f"reference {raw[:80]!r} is not a reference: use 1 to 64 of the letters A-Z, digits, '-', '_' or '/', "
            "starting with a letter or digit, such as 'CRM-2026-00042' (it is printed in SMS to the customer)"
        )
    return ref


def check_person_name(raw: str) -> str:
    """A person's or company's name: letters, digits, spaces and . · ' - ( ) &; no link, no markup."""
    name = " ".join(raw.split())
    if CONTROL_CHARACTERS.search(raw.replace("\n", " ").replace("\t", " ")) or "\n" in raw or "\t" in raw:
        raise ValueError(f"name {raw[:80]!r} holds control characters or line breaks; a name is one line of text")
    if not name or len(name) > 200:
        raise ValueError(f"name {raw[:80]!r} has {len(name)} characters; a name has 1 to 200")
    if not _PERSON_NAME.match(name):
        bad = sorted({c for c in name if not _PERSON_NAME.match("A" + c)})
        raise ValueError(
            f"name {raw[:80]!r} holds {' '.join(repr(c) for c in bad) or 'a leading symbol'}; a name may hold "
            "letters, digits, spaces and . · ' - ( ) &"
        )
    if LINK.search(name):
        raise ValueError(f"name {raw[:80]!r} looks like a web address; a name may not hold a link")
    return name


_ZONES: frozenset[str] | None = None


def check_timezone(name: str) -> str:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones())
    if name not in _ZONES:
        raise ValueError(f"timezone {name!r} is not an IANA zone name such as 'Asia/Shanghai'")
    try:
        ZoneInfo(name)
    except ZoneInfoNotFoundError:  # pragma: no cover - listed but not loadable
        raise ValueError(f"timezone {name!r} cannot be loaded") from None
    return name


def nul_path(value: object, root: str = "") -> str | None:
    """Where the first U+0000 (NUL) sits in a decoded JSON document (`data.customer.name`,
    `body[1].event_type`), or None. Postgres text cannot hold the character, so input holding
    it is refused with this path rather than failing in the store."""

    def join(path: str, key: str | int) -> str:
        if isinstance(key, int):
            return f"{path}[{key}]"
        return f"{path}.{key}" if path else key

    def walk(item: object, path: str) -> str | None:
        if isinstance(item, str):
            return (path or "the value") if "\x00" in item else None
        if isinstance(item, dict):
            for key, inner in item.items():
                if "\x00" in key:
                    return join(path, key.replace("\x00", "<NUL>"))
                found = walk(inner, join(path, key))
                if found is not None:
                    return found
        elif isinstance(item, list):
            for index, inner in enumerate(item):
                found = walk(inner, join(path, index))
                if found is not None:
                    return found
        return None

    return walk(value, root)
