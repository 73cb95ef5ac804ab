"""The leak gate: an independent second pass over scrubbed text.

It shares no code with the Presidio-based detection: strict regexes plus
checksum validators for structured identifiers, so a recognizer bug or a
threshold set too high upstream cannot hide a leak from it too. Hits inside
text the scrubber itself inserted (placeholders, surrogates) are ignored;
surrogates are also drawn from reserved ranges that these detectors skip.
"""

from __future__ import annotations

import functools
import ipaddress
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


def _ipv6_ok(s: str) -> bool:
    try:
        addr = ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return not (addr.is_unspecified or addr.is_loopback)


@functools.lru_cache(maxsize=1)
def _english_words():
    import lemminflect

    return lemminflect.getAllLemmas


def _name_ok(s: str) -> bool:
    """A labelled name field holding a word that is not an ordinary English word ("Name: JOHN SMITH")."""
    from spacy.lang.en.stop_words import STOP_WORDS

    first = s.split()[0].strip(".,;").lower()
    titles = {"dr", "mr", "mrs", "ms", "miss", "prof", "sir", "herr", "frau", "sr", "sra", "mme", "dott"}
    return len(first) > 1 and first not in STOP_WORDS and first not in titles and not _english_words()(first)


_STREET_WORDS = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Court|Ct|Boulevard|Blvd|Way|Place|Pl|Terrace|Circle|Parkway|"
    r"Highway|Square|Close|Crescent|Gardens|Grove|Mews"
)

DETECTORS: list[tuple[str, re.Pattern, object]] = [
    ("EMAIL_ADDRESS", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), _email_ok),
    # written out: "jdoe at gmail dot com", "jdoe [at] gmail [dot] com"
    (
        "EMAIL_ADDRESS",
        re.compile(
            r"(?i)[\w.+-]+\s?(?:\(at\)|\[at\]|\{at\}|<at>)\s?[\w-]+(?:(?:\s?(?:\(dot\)|\[dot\]|\{dot\}|<dot>)\s?|\.)[\w-]+)+"
            r"|[\w.+-]+\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)+"
        ),
        None,
    ),
    ("US_SSN", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), VALIDATORS["us_ssn"]),
    ("US_SSN", re.compile(r"(?<![\d.])\d{3}(?:\.\d{2}\.|\s{1,2}\d{2}\s{1,2})\d{4}(?![\d.])"), VALIDATORS["us_ssn"]),
    # nine digits in a row, an SSN only with the word near before it
    ("US_SSN", re.compile(r"(?i)(?:ssn|social security)\D{0,30}?(?<!\d)(\d{9})(?!\d)"), VALIDATORS["us_ssn"]),
    (
        "PHONE_NUMBER",
        re.compile(r"(?<![\w+-])(?:\+?1[\s.-]?)?\(?[2-9]\d{2}\)?[\s.-][2-9]\d{2}[\s.-]\d{4}(?!\d)"),
        _phone_ok,
    ),
    ("CREDIT_CARD", re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"), VALIDATORS["luhn"]),
    (
        "IBAN_CODE",
        re.compile(r"(?i)\b[A-Z]{2}\d{2}(?:[ .-]?[A-Z0-9]{4}){2,7}(?:[ .-]?[A-Z0-9]{1,4})?\b"),
        VALIDATORS["iban"],
    ),
    ("IP_ADDRESS", re.compile(r"(?i)(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])"), _ipv6_ok),
    (
        "PERSON",
        re.compile(
            r"(?i)\b(?:patient name|full name|name|nombre|apellidos|vorname|nachname|nom|prénom|cognome)\s*:[ \t]*"
            r"((?-i:[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'-]+|[A-ZÀ-ÖØ-Þ]{2,})(?:[ \t](?-i:[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'-]+|[A-ZÀ-ÖØ-Þ]{2,})){0,3})"
        ),
        _name_ok,
    ),
    (
        "STREET_ADDRESS",
        re.compile(
            r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:" + _STREET_WORDS + r")\b"
            r"|(?i:\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|allée|impasse|chemin|quai)\s+\w+)"
            r"|(?i:\b(?:calle|c/|avda\.?|avenida|paseo|plaza|via|viale|piazza|rua)\s)[A-ZÀ-Þ][\w'.-]*(?:\s[\w'.-]+){0,4},?\s\d{1,4}\b"
            r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|straat|laan|gracht)\s\d{1,4}[a-z]?\b"
        ),
        None,
    ),
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


# Regions whose phone numbers the gate recognises in any valid national or international format
# (its own list: the gate shares nothing with the scrubber's configuration).
PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PT", "AT", "CH", "BE", "IE", "CA", "AU")
# Runs of digits and separators that could be a phone number; amounts ("169.000") and dates are not.
_PHONE_RUN = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d \t().\/-]{5,24}\d(?!\w)")
_NOT_PHONE = re.compile(r"\d{1,3}(?:[.,]\d{3})+|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,3}(?:\.\d{1,3}){3}")


def _phone_leaks(text: str, inserted) -> list[Leak]:
    import phonenumbers

    found = []
    for m in _PHONE_RUN.finditer(text):
        raw = m.group()
        if _NOT_PHONE.fullmatch(raw) or sum(c.isdigit() for c in raw) < 7:
            continue
        if any(s < m.end() and m.start() < e for s, e in inserted) or not _phone_ok(raw):
            continue
        for region in PHONE_REGIONS:
            try:
                valid = phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
            except phonenumbers.NumberParseException:
                continue
            if valid:
                found.append(Leak("PHONE_NUMBER", m.start(), m.end()))
                break
    return found


def _broken(text: str, inserted) -> list[Leak]:
    """A replacement glued to letters, digits or "@" ("jdoe@[URL]ernal", "[PHONE]9"): the rest of an
    identifier the scrubber only partly replaced."""
    out = []
    for s, e in inserted:
        before = text[s - 1] if s > 0 else " "
        after = text[e] if e < len(text) else " "
        glued_after = after in ".:/" and e + 1 < len(text) and text[e + 1].isalnum()  # "[URL].example.com"
        glued_before = before in ".:/@" and s > 1 and text[s - 2].isalnum()  # "jdoe@[URL]"
        if before.isalnum() or before == "@" or after.isalnum() or after == "@" or glued_after or glued_before:
            out.append(Leak("BROKEN_IDENTIFIER", max(0, s - 1), min(len(text), e + 1)))
    return out


def find_leaks(text: str, inserted: list[tuple[int, int]] = ()) -> list[Leak]:
    """Identifiers left in ``text``, outside the ``inserted`` (start, end) spans."""
    leaks = _phone_leaks(text, inserted) + _broken(text, inserted)
    for entity, pattern, valid in DETECTORS:
        for m in pattern.finditer(text):
            start, end = m.span(1) if m.groups() else m.span()
            if any(s < end and start < e for s, e in inserted):
                continue
            if valid is not None and not valid(m.group(1) if m.groups() else m.group()):
                continue
            leaks.append(Leak(entity, start, end))
    return leaks
