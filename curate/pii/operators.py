"""What happens to each detected entity: redact, mask, placeholder, pseudonymize, and HIPAA rules.

Pseudonyms are consistent: the surrogate for a value is derived from
HMAC-SHA256(secret salt, entity type + value), so the same real value gets
the same surrogate in every record, shard and run with the same salt, and a
different one with another salt. The salt comes from an environment
variable or a file and is never written anywhere.

Surrogates are drawn from ranges that cannot belong to a real person where
such ranges exist (phones 555-01xx, example.com/.org/.net mail, SSN area
9xx, RFC 5737 documentation IPs, checksum-failing card/IBAN/national ids),
and otherwise keep the original's shape (digits for digits, letters for
letters, punctuation kept) so downstream parsers and models see realistic
text. Dates are shifted by a per-record (or per-patient) number of days, so
intervals inside a record survive.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from pathlib import Path

from curate.errors import RecipeError

OPERATORS = ("placeholder", "redact", "mask", "pseudonymize", "year_only", "zip3", "age_90plus", "keep")

PLACEHOLDERS = {
    "PERSON": "[NAME]", "LOCATION": "[LOCATION]", "STREET_ADDRESS": "[ADDRESS]", "ZIP_CODE": "[ZIP]",
    "PHONE_NUMBER": "[PHONE]", "EMAIL_ADDRESS": "[EMAIL]", "US_SSN": "[SSN]", "DATE_TIME": "[DATE]",
    "MEDICAL_RECORD_NUMBER": "[MRN]", "HEALTH_PLAN_ID": "[HEALTH_PLAN_ID]", "ACCOUNT_NUMBER": "[ACCOUNT]",
    "LICENSE_NUMBER": "[LICENSE]", "VEHICLE_ID": "[VEHICLE_ID]", "DEVICE_ID": "[DEVICE_ID]", "URL": "[URL]",
    "IP_ADDRESS": "[IP]", "MAC_ADDRESS": "[MAC]", "BIOMETRIC_ID": "[BIOMETRIC_ID]", "PHOTO": "[PHOTO]",
    "AGE": "[AGE]", "ID_NUMBER": "[ID]", "CREDIT_CARD": "[CARD]", "IBAN_CODE": "[IBAN]", "UK_NINO": "[NINO]",
    "DE_TAX_ID": "[TAX_ID]", "FR_INSEE": "[INSEE]", "ES_NIF": "[NIF]", "IT_FISCAL_CODE": "[FISCAL_CODE]",
    "ONLINE_ID": "[USERNAME]",
}  # fmt: skip

# 3-digit ZIP areas with 20,000 or fewer people (2000 census, per HHS Safe Harbor guidance): become 000.
RESTRICTED_ZIP3 = {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879",
                   "884", "890", "893"}  # fmt: skip

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip


_TITLES = {"dr", "mr", "mrs", "ms", "miss", "prof", "sir", "dame", "jr", "sr"}


@functools.lru_cache(maxsize=1)
def _first_names() -> frozenset[str]:
    from faker.providers.person.en_US import Provider

    names = Provider.first_names
    return frozenset(n.lower() for n in (names.keys() if isinstance(names, dict) else names))


def read_salt(salt_env: str | None, salt_file: str | None) -> bytes | None:
    if salt_file:
        path = Path(salt_file)
        if not path.exists():
            raise RecipeError(f"pii.scrub: salt_file '{salt_file}' does not exist.")
        data = path.read_bytes().strip()
        if data:
            return data
    if salt_env and os.environ.get(salt_env):
        return os.environ[salt_env].encode()
    return None


def placeholder(entity: str) -> str:
    return PLACEHOLDERS.get(entity, f"[{entity}]")


def mask(value: str) -> str:
    """Keep the last 4 characters of identifiers longer than 8, star out letters and digits."""
    keep = 4 if len(value) > 8 else 0
    head = re.sub(r"[\w]", "*", value[: len(value) - keep])
    return head + value[len(value) - keep :]


def year_only(value: str) -> str:
    """Safe Harbor keeps the year of a date and removes day and month."""
    m = re.search(r"\b(19|20)\d{2}\b", value)
    return m.group() if m else "[DATE]"


def zip3(value: str) -> str:
    """Safe Harbor ZIP rule: keep the first 3 digits ('000' for restricted areas), padded back to 5."""
    digits = re.sub(r"\D", "", value)[:3]
    return ("000" if digits in RESTRICTED_ZIP3 else digits) + "00"


def age_90plus(value: str) -> str:
    return "90+"


class Pseudonymizer:
    """Consistent, salted surrogates per entity type."""

    def __init__(self, salt: bytes):
        from faker import Faker

        self._salt = salt
        self._faker = Faker("en_US")

    def _digest(self, entity: str, value: str) -> bytes:
        key = " ".join(value.split()).lower() if entity in ("PERSON", "LOCATION", "EMAIL_ADDRESS") else value
        return hmac.new(self._salt, f"{entity}\x00{key}".encode(), hashlib.sha256).digest()

    def _seed(self, entity: str, value: str) -> int:
        return int.from_bytes(self._digest(entity, value)[:8], "big")

    def _name_token(self, m: re.Match) -> str:
        token = m.group()
        if token.lower() in _TITLES:
            return token
        f = self._faker
        f.seed_instance(self._seed("PERSON_TOKEN", token.lower()))
        out = f.first_name() if token.lower() in _first_names() else f.last_name()
        return out.upper() if token.isupper() and len(token) > 1 else out

    def days_shift(self, key: str) -> int:
        """A per-record/per-patient shift in [-180, 180] days, never 0."""
        n = self._seed("DATE_SHIFT", key) % 360
        return n - 180 if n < 180 else n - 179

    def surrogate(self, entity: str, value: str, shift_key: str = "") -> str:
        seed = self._seed(entity, value)
        f = self._faker
        f.seed_instance(seed)
        if entity == "PERSON":
            # token by token, so "Amanda Martinez", "Amanda" and "Ms Martinez" stay one person
            return re.sub(r"[^\W\d_]+(?:['-][^\W\d_]+)*", self._name_token, value)
        if entity == "LOCATION":
            return f.city()
        if entity == "ORGANIZATION":  # letters for letters would give "Vkasngf Wupwtg"
            return f.company()
        if entity == "STREET_ADDRESS":
            return f.street_address()
        if entity == "EMAIL_ADDRESS":
            return f"{f.user_name()}@" + ("example.com", "example.org", "example.net")[seed % 3]
        if entity == "PHONE_NUMBER":
            return _fill_digits(value, f"{200 + seed % 800:03d}55501{seed % 100:02d}")
        if entity == "US_SSN":
            return _fill_digits(value, f"9{seed % 10**8:08d}")
        if entity == "IP_ADDRESS":
            net = ("192.0.2", "198.51.100", "203.0.113")[seed % 3]
            return f"{net}.{seed % 254 + 1}"
        if entity == "MAC_ADDRESS":
            return "00:00:5E:00:53:%02X" % (seed % 256)
        if entity == "URL":
            return f"https://example.org/{self._digest(entity, value).hex()[:10]}"
        if entity == "ONLINE_ID":
            return ("@" if value.startswith("@") else "") + f"user_{self._digest(entity, value).hex()[:8]}"
        if entity == "PHOTO":
            ext = value.rsplit(".", 1)[-1] if "." in value else "jpg"
            return f"photo_{self._digest(entity, value).hex()[:8]}.{ext}"
        if entity == "DATE_TIME":
            return shift_date(value, self.days_shift(shift_key)) or "[DATE]"
        if entity == "AGE":
            return "90+"
        if entity == "ZIP_CODE":
            return zip3(value)
        # Structured ids keep their shape; checksummed ones are made to fail their checksum.
        return _shape_preserving(value, self._digest(entity, value), entity)


def _fill_digits(template: str, digits: str) -> str:
    """Put ``digits`` into the digit positions of ``template`` (keeps +1, brackets, dashes)."""
    out, i = [], 0
    lead = len(re.sub(r"\D", "", template)) - len(digits)
    for ch in template:
        if ch.isdigit():
            if lead > 0:
                out.append(ch)
                lead -= 1
            else:
                out.append(digits[i] if i < len(digits) else "0")
                i += 1
        else:
            out.append(ch)
    return "".join(out)


def _shape_preserving(value: str, digest: bytes, entity: str) -> str:
    from curate.pii.validators import VALIDATORS

    stream = iter(digest * 4)
    out = []
    for ch in value:
        b = next(stream)
        if ch.isdigit():
            out.append(str(b % 10))
        elif ch.isalpha():
            letter = chr(ord("A") + b % 26)
            out.append(letter if ch.isupper() else letter.lower())
        else:
            out.append(ch)
    result = "".join(out)
    check = {"CREDIT_CARD": "luhn", "IBAN_CODE": "iban", "UK_NINO": "uk_nino", "DE_TAX_ID": "de_steuer_id",
             "FR_INSEE": "fr_insee", "ES_NIF": "es_dni", "IT_FISCAL_CODE": "it_codice_fiscale",
             "VEHICLE_ID": "vin"}.get(entity)  # fmt: skip
    if entity == "IBAN_CODE" and len(value) >= 2:
        result = value[:2] + result[2:]
    if check and VALIDATORS[check](result):
        # flip the last digit (or letter) so the surrogate cannot be a valid identifier
        last = max(i for i, ch in enumerate(result) if ch.isalnum())
        ch = result[last]
        flipped = str((int(ch) + 1) % 10) if ch.isdigit() else ("A" if ch.upper() == "Z" else chr(ord(ch) + 1))
        result = result[:last] + flipped + result[last + 1 :]
    return result


_DATE_FORMATS = [
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "iso"),
    (re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{2,4})$"), "mdy"),
    (re.compile(r"^([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$"), "month_d_y"),
    (re.compile(r"^(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([A-Za-z]{3,9})\.?,?\s+(\d{4})$"), "d_month_y"),
]


def _month(name: str) -> int | None:
    for i, m in enumerate(_MONTHS, 1):
        if m.lower().startswith(name.lower()[:3]):
            return i
    return None


def shift_date(value: str, days: int) -> str | None:
    """Shift a date by ``days`` keeping its written format; None if the format is not understood."""
    v = value.strip()
    try:
        for pattern, kind in _DATE_FORMATS:
            m = pattern.match(v)
            if not m:
                continue
            if kind == "iso":
                d = dt.date(int(m[1]), int(m[2]), int(m[3])) + dt.timedelta(days)
                return d.isoformat()
            if kind == "mdy":
                year = int(m[4]) + (1900 if len(m[4]) == 2 and int(m[4]) > 30 else 2000 if len(m[4]) == 2 else 0)
                d = dt.date(year, int(m[1]), int(m[3])) + dt.timedelta(days)
                y = str(d.year)[-2:] if len(m[4]) == 2 else str(d.year)
                return (
                    f"{d.month:02d}{m[2]}{d.day:02d}{m[2]}{y}" if len(m[1]) == 2 else f"{d.month}{m[2]}{d.day}{m[2]}{y}"
                )
            month = _month(m[1] if kind == "month_d_y" else m[2])
            if month is None:
                return None
            day = int(m[2] if kind == "month_d_y" else m[1])
            d = dt.date(int(m[3]), month, day) + dt.timedelta(days)
            name = _MONTHS[d.month - 1]
            if len((m[1] if kind == "month_d_y" else m[2]).rstrip(".")) == 3:
                name = name[:3]
            return f"{name} {d.day}, {d.year}" if kind == "month_d_y" else f"{d.day} {name} {d.year}"
    except ValueError:
        return None
    return None


def operator_fn(name: str, entity: str, pseudonymizer: Pseudonymizer | None, shift_key: str) -> Callable[[str], str]:
    if name == "placeholder":
        text = placeholder(entity)
        return lambda value: text
    if name == "redact":
        return lambda value: ""
    if name == "mask":
        return mask
    if name == "year_only":
        return year_only
    if name == "zip3":
        return zip3
    if name == "age_90plus":
        return age_90plus
    if name == "keep":
        return lambda value: value
    if name == "pseudonymize":
        assert pseudonymizer is not None
        return lambda value: pseudonymizer.surrogate(entity, value, shift_key)
    raise ValueError(name)
