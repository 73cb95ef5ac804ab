"""Labelled PII evaluation documents: templates filled with invented identifiers, spans known.

Three families (clinical notes, support tickets, EU forms), each with its own
templates. Templates are split between ``dev`` and ``test`` (even / odd
index) and the two splits draw values from different seeds, so detectors
tuned on dev are measured on template wordings they have never seen.
Every identifier is generated here with valid checksums where the real one
has one (SSN rules, Luhn, IBAN mod 97, VIN, Steuer-ID, INSEE, DNI/NIE,
codice fiscale, NINO).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from curate.pii.validators import _CF_ODD, _DNI_LETTERS, VALIDATORS
from curate.synth import CITIES, FIRST, LAST, STREET_KINDS, STREETS

EU_FIRST = "Lukas Anna Jonas Lea Pierre Camille Lucas Chloé Javier Lucía Pablo Sofía Marco Giulia Luca Chiara Oliver Amelia Harry Isla Jan Zofia".split()
EU_LAST = "Müller Schmidt Schneider Dubois Martin Bernard García Fernández López Rossi Bianchi Ferrari Smith Jones Taylor Kowalski Nowak Jansen".split()
EU_CITIES = [
    "Berlin",
    "Hamburg",
    "München",
    "Lyon",
    "Toulouse",
    "Madrid",
    "Sevilla",
    "Milano",
    "Torino",
    "Leeds",
    "Bristol",
    "Kraków",
]
EU_STREETS = [
    "Hauptstraße",
    "Bahnhofstraße",
    "rue de la Paix",
    "avenue Victor Hugo",
    "Calle Mayor",
    "Via Roma",
    "High Street",
]


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _luhn_complete(prefix: str) -> str:
    for d in string.digits:
        if VALIDATORS["luhn"](prefix + d):
            return prefix + d
    raise AssertionError


def gen_ssn(rng: random.Random) -> str:
    while True:
        s = f"{rng.randint(1, 899):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if VALIDATORS["us_ssn"](s):
            return s


def gen_phone(rng: random.Random) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    if b == 555:
        b = 556
    return rng.choice(
        [f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"+1 {a} {b} {c:04d}", f"+1-{a}-{b}-{c:04d}"]
    )


def gen_card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "52", "37", "6011"])
    body = _luhn_complete(prefix + _digits(rng, (15 if prefix == "37" else 16) - len(prefix) - 1))
    return " ".join(body[i : i + 4] for i in range(0, len(body), 4)) if rng.random() < 0.6 else body


def gen_iban(rng: random.Random) -> str:
    country, n = rng.choice([("DE", 18), ("FR", 23), ("ES", 20), ("IT", 23), ("GB", 18), ("NL", 14)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)
    elif country == "IT":
        bban = rng.choice(string.ascii_uppercase) + _digits(rng, 22)
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)
    else:
        bban = _digits(rng, n)
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    iban = f"{country}{98 - num % 97:02d}{bban}"
    assert VALIDATORS["iban"](iban), iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def gen_steuer_id(rng: random.Random) -> str:
    while True:
        d = [rng.choice("123456789")] + [rng.choice(string.digits) for _ in range(9)]
        body = "".join(d)
        for check in string.digits:
            if VALIDATORS["de_steuer_id"](body + check):
                return body + check


def gen_insee(rng: random.Random) -> str:
    body = (
        f"{rng.randint(1, 2)}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}{_digits(rng, 6)}"
    )
    key = 97 - int(body) % 97
    s = f"{body}{key:02d}"
    return f"{s[0]} {s[1:3]} {s[3:5]} {s[5:7]} {s[7:10]} {s[10:13]} {s[13:]}" if rng.random() < 0.5 else s


def gen_dni(rng: random.Random) -> str:
    if rng.random() < 0.6:
        n = _digits(rng, 8)
        return n + _DNI_LETTERS[int(n) % 23]
    p = rng.choice("XYZ")
    n = _digits(rng, 7)
    return p + n + _DNI_LETTERS[int(str("XYZ".index(p)) + n) % 23]


def gen_codice_fiscale(rng: random.Random) -> str:
    L = string.ascii_uppercase
    body = "".join(rng.choice(L) for _ in range(6)) + _digits(rng, 2) + rng.choice("ABCDEHLMPRST")
    body += f"{rng.randint(1, 71):02d}" + rng.choice(L) + _digits(rng, 3)
    total = sum(_CF_ODD[c] if i % 2 == 0 else (int(c) if c.isdigit() else ord(c) - 65) for i, c in enumerate(body))
    return body + chr(65 + total % 26)


def gen_nino(rng: random.Random) -> str:
    while True:
        s = (
            rng.choice("ABCEGHJKLMNOPRSTWXYZ")
            + rng.choice("ABCEGHJKLMNPRSTWXYZ")
            + _digits(rng, 6)
            + rng.choice("ABCD")
        )
        if VALIDATORS["uk_nino"](s):
            return f"{s[:2]} {s[2:4]} {s[4:6]} {s[6:8]} {s[8]}" if rng.random() < 0.5 else s


def gen_vin(rng: random.Random) -> str:
    chars = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    while True:
        v = "".join(rng.choice(chars) for _ in range(17))
        for check in "0123456789X":
            cand = v[:8] + check + v[9:]
            if VALIDATORS["vin"](cand):
                return cand


def gen_date(rng: random.Random, lo: int = 1930, hi: int = 2024) -> str:
    y, m, d = rng.randint(lo, hi), rng.randint(1, 12), rng.randint(1, 28)
    months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ]
    return rng.choice(
        [
            f"{m:02d}/{d:02d}/{y}",
            f"{m}/{d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{months[m - 1]} {d}, {y}",
            f"{d} {months[m - 1]} {y}",
            f"{months[m - 1][:3]} {d}, {y}",
        ]  # fmt: skip
    )


def gen_name(rng: random.Random, eu: bool = False) -> str:
    return f"{rng.choice(EU_FIRST if eu else FIRST)} {rng.choice(EU_LAST if eu else LAST)}"


def gen_address(rng: random.Random) -> str:
    return f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "PERSON": gen_name,
    "PERSON_EU": lambda r: gen_name(r, eu=True),
    "STREET_ADDRESS": gen_address,
    "LOCATION": lambda r: r.choice(CITIES)[0],
    "LOCATION_EU": lambda r: r.choice(EU_CITIES),
    "ZIP_CODE": lambda r: f"{r.choice(CITIES)[2]}{r.randint(0, 99):02d}",
    "DATE_TIME": gen_date,
    "PHONE_NUMBER": gen_phone,
    "EMAIL_ADDRESS": lambda r: (
        f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower()}{r.randint(1, 99)}@{r.choice(['mailbox.io', 'post.net', 'inbox.co.uk', 'web.de', 'corp-mail.com'])}"
    ),
    "US_SSN": gen_ssn,
    "MEDICAL_RECORD_NUMBER": lambda r: _digits(r, r.choice([7, 8, 9])),
    "HEALTH_PLAN_ID": lambda r: r.choice(string.ascii_uppercase) + _digits(r, 9),
    "ACCOUNT_NUMBER": lambda r: _digits(r, r.choice([8, 10, 12])),
    "LICENSE_NUMBER": lambda r: r.choice(["", "MD", "RN", "D"]) + _digits(r, r.choice([6, 7, 8])),
    "VEHICLE_ID": gen_vin,
    "DEVICE_ID": lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(3)) + "-" + _digits(r, 8),
    "URL": lambda r: (
        f"https://{r.choice(['patient-portal', 'myhealth', 'photos', 'blog'])}.{r.choice(['example-clinic.com', 'carehub.net', 'mysite.org'])}/u/{_digits(r, 6)}"
    ),
    "IP_ADDRESS": lambda r: f"{r.randint(11, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
    "BIOMETRIC_ID": lambda r: "FP-" + "".join(r.choice("0123456789ABCDEF") for _ in range(16)),
    "PHOTO": lambda r: (
        f"{r.choice(['face', 'portrait', 'IMG', 'patient_photo'])}_{_digits(r, 4)}.{r.choice(['jpg', 'png', 'jpeg'])}"
    ),
    "AGE": lambda r: str(r.randint(90, 104)),
    "ID_NUMBER": lambda r: r.choice(["C", "X", "P", ""]) + _digits(r, 8),
    "CREDIT_CARD": gen_card,
    "IBAN_CODE": gen_iban,
    "UK_NINO": gen_nino,
    "DE_TAX_ID": gen_steuer_id,
    "FR_INSEE": gen_insee,
    "ES_NIF": gen_dni,
    "IT_FISCAL_CODE": gen_codice_fiscale,
    "ONLINE_ID": lambda r: "@" + r.choice(FIRST).lower() + r.choice(["_", "", "."]) + str(r.randint(10, 9999)),
}

# Templates: {TYPE} or {TYPE:n} (same value reused). Entity suffix _EU only picks the generator.
TEMPLATES: dict[str, list[str]] = {
    "clinical": [
        "Patient {PERSON:1} (MRN {MEDICAL_RECORD_NUMBER}) was admitted on {DATE_TIME} with chest pain. DOB {DATE_TIME}. {PERSON:1} lives at {STREET_ADDRESS}, {LOCATION}, IL {ZIP_CODE}. Contact: {PHONE_NUMBER}.",
        "Discharge note for {PERSON:1}, a {AGE}-year-old with heart failure. Medical record number: {MEDICAL_RECORD_NUMBER}. Insurance member ID: {HEALTH_PLAN_ID}. Follow-up with Dr. {PERSON} on {DATE_TIME}.",
        "{PERSON:1} called from {PHONE_NUMBER} (fax {PHONE_NUMBER}) asking about results. Email on file: {EMAIL_ADDRESS}. SSN {US_SSN}. Seen {DATE_TIME} by Dr. {PERSON}.",
        "Pacemaker serial number: {DEVICE_ID}. Implanted {DATE_TIME} at the clinic in {LOCATION}. Patient {PERSON} reports no issues; photo on file: {PHOTO}.",
        "Mr. {PERSON} (aged {AGE}) was brought in by his daughter. Patient portal: {URL}. Last login from IP {IP_ADDRESS}. Medicare number {HEALTH_PLAN_ID}.",
        "Referral: {PERSON:1}, born {DATE_TIME}, address {STREET_ADDRESS}, {LOCATION} {ZIP_CODE}. Physician license number: {LICENSE_NUMBER}. Fingerprint ID: {BIOMETRIC_ID}.",
        "Ambulance report. Vehicle VIN {VEHICLE_ID}. Patient {PERSON} found at {STREET_ADDRESS} on {DATE_TIME}; billing account number {ACCOUNT_NUMBER}.",
        "Lab results for {PERSON:1} (chart no. {MEDICAL_RECORD_NUMBER}) dated {DATE_TIME}. Claim number {ID_NUMBER}. Please call {PERSON:1} at {PHONE_NUMBER} or write to {EMAIL_ADDRESS}.",
        "Ms. {PERSON} is a {AGE} year old resident of {LOCATION}. Her SSN is {US_SSN} and her device serial is {DEVICE_ID}. Next visit {DATE_TIME}.",
        "Telehealth session with {PERSON:1} on {DATE_TIME}. Connection from {IP_ADDRESS}. Recording saved as {PHOTO}. Plan ID {HEALTH_PLAN_ID}.",
    ],
    "ticket": [
        "Hi, this is {PERSON}. My card {CREDIT_CARD} was charged twice on {DATE_TIME}. Please call me on {PHONE_NUMBER}.",
        "Hello support, I am {PERSON} and my account number is {ACCOUNT_NUMBER}. You can email me at {EMAIL_ADDRESS}. Thanks!",
        "Order problem: shipped to {STREET_ADDRESS}, {LOCATION}, TX {ZIP_CODE}, but nothing arrived. Contact {PERSON} at {PHONE_NUMBER}.",
        "My name is {PERSON}. I logged in from {IP_ADDRESS} and got locked out. Username: {ONLINE_ID}. Reach me at {EMAIL_ADDRESS}.",
        "Refund request from {PERSON:1}. Card ending in {CREDIT_CARD}. Customer number {ACCOUNT_NUMBER}. {PERSON:1} prefers email: {EMAIL_ADDRESS}.",
        "Please update my IBAN to {IBAN_CODE}. Name on the account: {PERSON}. Phone {PHONE_NUMBER}.",
        "Dear team, {PERSON} here. The invoice number {ACCOUNT_NUMBER} from {DATE_TIME} is wrong. Call {PHONE_NUMBER} after 5pm.",
        "Ticket from {EMAIL_ADDRESS}: my car with VIN {VEHICLE_ID} was not registered. Owner {PERSON}, {STREET_ADDRESS}.",
    ],
    "eu_form": [
        "Antrag von {PERSON_EU:1}, geboren am {DATE_TIME}, wohnhaft {LOCATION_EU}. Steuer-ID {DE_TAX_ID}. IBAN {IBAN_CODE}. Telefon {PHONE_NUMBER}.",
        "Applicant: {PERSON_EU}. National Insurance number: {UK_NINO}. Date of birth: {DATE_TIME}. Email: {EMAIL_ADDRESS}. Town: {LOCATION_EU}.",
        "Demande de {PERSON_EU}, numéro de sécurité sociale (INSEE) {FR_INSEE}, né le {DATE_TIME} à {LOCATION_EU}. Contact : {EMAIL_ADDRESS}.",
        "Solicitud de {PERSON_EU:1}. DNI {ES_NIF}. Domicilio en {LOCATION_EU}. Teléfono {PHONE_NUMBER}. Cuenta {IBAN_CODE}.",
        "Richiesta di {PERSON_EU}, codice fiscale {IT_FISCAL_CODE}, residente a {LOCATION_EU}. IBAN {IBAN_CODE}. Email {EMAIL_ADDRESS}.",
        "Member {PERSON_EU} (NINO {UK_NINO}) uses the handle {ONLINE_ID} and logged in from {IP_ADDRESS}. Card {CREDIT_CARD}.",
        "Formular: {PERSON_EU}, Steueridentifikationsnummer {DE_TAX_ID}, geboren {DATE_TIME}, Kontakt {PHONE_NUMBER}, {EMAIL_ADDRESS}.",
        "NIE {ES_NIF} / fiscal code {IT_FISCAL_CODE} submitted by {PERSON_EU} on {DATE_TIME}. Postal address in {LOCATION_EU}.",
    ],
}

PROFILE_OF = {"clinical": "hipaa", "ticket": "hipaa", "eu_form": "gdpr"}


def pii_eval_set(split: str = "dev", per_template: int = 30) -> list[dict]:
    """Documents with gold spans: [{id, family, profile, text, spans: [{start, end, entity}]}]."""
    assert split in ("dev", "test")
    rng = random.Random(101 if split == "dev" else 202)
    docs = []
    for family, templates in TEMPLATES.items():
        for t_index, template in enumerate(templates):
            if (t_index % 2 == 0) != (split == "dev"):
                continue
            for k in range(per_template):
                docs.append({"id": f"{split}-{family}-{t_index}-{k}", "family": family, "profile": PROFILE_OF[family],
                             **_fill(template, rng)})  # fmt: skip
    return docs


def _fill(template: str, rng: random.Random) -> dict:
    import re

    text, spans, fixed = "", [], {}
    pos = 0
    for m in re.finditer(r"\{([A-Z_]+)(?::(\d+))?\}", template):
        text += template[pos : m.start()]
        kind, ref = m.group(1), m.group(2)
        if ref and (kind, ref) in fixed:
            value = fixed[(kind, ref)]
        else:
            value = GENERATORS[kind](rng)
            if ref:
                fixed[(kind, ref)] = value
        entity = kind.removesuffix("_EU")
        spans.append({"start": len(text), "end": len(text) + len(value), "entity": entity})
        text += value
        pos = m.end()
    text += template[pos:]
    return {"text": text, "spans": spans}
