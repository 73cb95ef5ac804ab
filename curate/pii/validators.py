"""Checksum and structure validators for identifiers, by name (profiles refer to them).

Each takes the matched text and returns True when it is a valid identifier.
A pattern match whose validator fails is not reported, which is what keeps
random digit runs from being redacted as SSNs or card numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

VALIDATORS: dict[str, Callable[[str], bool]] = {}


def validator(name: str):
    def register(fn: Callable[[str], bool]) -> Callable[[str], bool]:
        VALIDATORS[name] = fn
        return fn

    return register


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@validator("luhn")
def luhn(text: str) -> bool:
    """Payment cards (13-19 digits) and other Luhn-checked numbers."""
    digits = _digits(text)
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@validator("us_ssn")
def us_ssn(text: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000; no all-same digits."""
    d = _digits(text)
    if len(d) != 9 or len(set(d)) == 1:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


@validator("iban")
def iban(text: str) -> bool:
    """ISO 13616 mod-97 check, with per-country lengths for the common countries."""
    s = re.sub(r"[\s.-]", "", text).upper()
    lengths = {"DE": 22, "FR": 27, "ES": 24, "IT": 27, "GB": 22, "NL": 18, "BE": 16, "AT": 20, "CH": 21, "IE": 22,
               "PT": 25, "PL": 28, "SE": 24, "DK": 18, "FI": 18, "NO": 15, "LU": 20, "GR": 27, "CZ": 24}  # fmt: skip
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s) or lengths.get(s[:2], len(s)) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


@validator("uk_nino")
def uk_nino(text: str) -> bool:
    """HMRC format rules: forbidden first/second letters and prefixes, suffix A-D."""
    s = re.sub(r"\s", "", text).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{6}[A-D]", s):
        return False
    if s[0] in "DFIQUV" or s[1] in "DFIOQUV":
        return False
    return s[:2] not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")


@validator("de_steuer_id")
def de_steuer_id(text: str) -> bool:
    """German tax id (Steuerliche Identifikationsnummer): 11 digits, ISO 7064 MOD 11,10 check digit."""
    d = _digits(text)
    if len(d) != 11 or d[0] == "0":
        return False
    counts = [d[:10].count(c) for c in set(d[:10])]
    if not (max(counts) in (2, 3) and counts.count(max(counts)) == 1):
        return False  # one digit appears twice or three times, the rest at most once
    product = 10
    for ch in d[:10]:
        s = (int(ch) + product) % 10 or 10
        product = (s * 2) % 11
    check = (11 - product) % 10
    return check == int(d[10])


@validator("fr_insee")
def fr_insee(text: str) -> bool:
    """French social security number (NIR): 13 digits + 2-digit key = 97 - (number mod 97); Corsica 2A/2B."""
    s = re.sub(r"\s", "", text).upper()
    if not re.fullmatch(r"[12]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}", s):
        return False
    body = s[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(s[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


@validator("es_dni")
def es_dni(text: str) -> bool:
    """Spanish DNI (8 digits + letter) and NIE (X/Y/Z + 7 digits + letter): letter = number mod 23."""
    s = re.sub(r"[\s-]", "", text).upper()
    m = re.fullmatch(r"([XYZ]?)(\d{7,8})([A-Z])", s)
    if not m:
        return False
    prefix, digits, letter = m.groups()
    if prefix:
        if len(digits) != 7:
            return False
        digits = str("XYZ".index(prefix)) + digits
    elif len(digits) != 8:
        return False
    return _DNI_LETTERS[int(digits) % 23] == letter


_CF_ODD = {c: v for c, v in zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
           [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14,
            16, 10, 22, 25, 24, 23])}  # fmt: skip


@validator("it_codice_fiscale")
def it_codice_fiscale(text: str) -> bool:
    """Italian fiscal code: 16 characters, last one a check character over the first 15."""
    s = text.upper().replace(" ", "")
    if not re.fullmatch(r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]", s):
        return False
    total = 0
    for i, c in enumerate(s[:15]):
        if i % 2 == 0:  # odd positions, 1-based
            total += _CF_ODD[c]
        else:
            total += int(c) if c.isdigit() else ord(c) - ord("A")
    return chr(ord("A") + total % 26) == s[15]


_VIN_VALUES = {**{str(i): i for i in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10)))}  # fmt: skip
_VIN_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]


@validator("vin")
def vin(text: str) -> bool:
    """North American VIN check digit (position 9)."""
    s = text.upper()
    if not re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", s):
        return False
    total = sum(_VIN_VALUES[c] * w for c, w in zip(s, _VIN_WEIGHTS))
    check = total % 11
    return s[8] == ("X" if check == 10 else str(check))


@validator("npi")
def npi(text: str) -> bool:
    """US National Provider Identifier: Luhn over '80840' + the 10 digits."""
    d = _digits(text)
    return len(d) == 10 and luhn("80840" + d)


@validator("ipv4")
def ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


@validator("phone_digits")
def phone_digits(text: str) -> bool:
    """A phone-shaped match with 9 to 15 digits before any extension, not all one digit, not a date."""
    main = re.split(r"(?i)\s?(?:x|ext)", text)[0]
    d = _digits(main)
    if not 9 <= len(d) <= 15 or len(set(d)) == 1:
        return False
    return not re.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{2,4}|\d{1,3}(?:\.\d{1,3}){3}", main.strip())


@validator("age_over_89")
def age_over_89(text: str) -> bool:
    """HIPAA only removes ages over 89; younger ages stay."""
    m = re.search(r"\d{2,3}", text)
    return bool(m) and 90 <= int(m.group()) <= 130
