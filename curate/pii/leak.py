"""The leak gate: an independent second pass over scrubbed text.

It shares no code with the Presidio-based detection: strict regexes plus
checksum validators for structured identifiers, so a recognizer bug or a
threshold set too high upstream cannot hide a leak from it too. Hits inside
text the scrubber itself inserted (placeholders, surrogates) are ignored;
surrogates are also drawn from reserved ranges that these detectors skip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from curate.pii.validators import VALIDATORS

_RESERVED_EMAIL = re.compile(r"@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|test|invalid|localhost)$", re.I)
_DOC_IPS = ("192.0.2.", "198.51.100.", "203.0.113.")


def _email_ok(s: str) -> bool:
    return not _RESERVED_EMAIL.search(s)


def _phone_ok(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    return not re.search(r"55501\d\d$", digits)


def _ip_ok(s: str) -> bool:
    return VALIDATORS["ipv4"](s) and not s.startswith(_DOC_IPS) and s not in ("0.0.0.0", "127.0.0.1")


DETECTORS: list[tuple[str, re.Pattern, object]] = [
    ("EMAIL_ADDRESS", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), _email_ok),
    ("US_SSN", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), VALIDATORS["us_ssn"]),
    (
        "PHONE_NUMBER",
        re.compile(r"(?<![\w+-])(?:\+?1[\s.-]?)?\(?[2-9]\d{2}\)?[\s.-][2-9]\d{2}[\s.-]\d{4}(?!\d)"),
        _phone_ok,
    ),
    ("CREDIT_CARD", re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"), VALIDATORS["luhn"]),
    ("IBAN_CODE", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), VALIDATORS["iban"]),
    ("IP_ADDRESS", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"), _ip_ok),
    ("UK_NINO", re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"), VALIDATORS["uk_nino"]),
    ("FR_INSEE", re.compile(r"\b[12] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}\b"), VALIDATORS["fr_insee"]),
    ("ES_NIF", re.compile(r"\b(?:\d{8}|[XYZ]\d{7})-?[A-Z]\b"), VALIDATORS["es_dni"]),
    ("IT_FISCAL_CODE", re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b"), VALIDATORS["it_codice_fiscale"]),
    (
        "MEDICAL_RECORD_NUMBER",
        re.compile(r"(?i)\b(?:mrn|medical record (?:number|no\.?))[:#\s]{1,4}([A-Z]{0,3}-?\d{5,10})\b"),
        None,
    ),
]


@dataclass(frozen=True)
class Leak:
    entity: str
    start: int
    end: int


def find_leaks(text: str, inserted: list[tuple[int, int]] = ()) -> list[Leak]:
    """Structured identifiers left in ``text``, outside the ``inserted`` (start, end) spans."""
    leaks = []
    for entity, pattern, valid in DETECTORS:
        for m in pattern.finditer(text):
            start, end = m.span(1) if m.groups() else m.span()
            if any(s < end and start < e for s, e in inserted):
                continue
            if valid is not None and not valid(m.group(1) if m.groups() else m.group()):
                continue
            leaks.append(Leak(entity, start, end))
    return leaks
