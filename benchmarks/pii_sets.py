"""An English PII set in many locales, written by others: presidio-evaluator's templates filled by faker.

The sentences are the 200 templates shipped in presidio-evaluator (MIT, Microsoft; support chats,
bank requests, addresses: written by Presidio's authors, not here). The values come from faker's
locale providers (addresses, phone formats, names, IBANs of 13 locales). The package is installed
with ``pip install --no-deps presidio-evaluator`` (its own dependencies pull pandas, scikit-learn
and transformers); only its template file is read, the package is not imported.

Placeholders that are not identifiers under the HIPAA profile (country, state, organisation,
job, nationality, age under 90, weekday, a year alone) are filled and labelled as ignored: their
tokens count neither as identifiers nor as ordinary text.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

from curate.pii.evaluate import LabelledDoc

LOCALES = ["en_US", "en_GB", "en_AU", "en_CA", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_PT",
           "pl_PL", "sv_SE"]  # fmt: skip

# placeholder -> (entity type or None for "not an identifier", how faker makes it)
FIELDS = {
    "person": ("PERSON", "name"), "name": ("PERSON", "name"), "name_female": ("PERSON", "name_female"),
    "name_male": ("PERSON", "name_male"), "first_name": ("PERSON", "first_name"),
    "first_name_male": ("PERSON", "first_name_male"), "first_name_female": ("PERSON", "first_name_female"),
    "first_name_nonbinary": ("PERSON", "first_name"), "last_name": ("PERSON", "last_name"),
    "last_name_male": ("PERSON", "last_name"), "last_name_female": ("PERSON", "last_name"),
    "address": ("STREET_ADDRESS", "address"), "street_name": ("STREET_ADDRESS", "street_name"),
    "building_number": ("STREET_ADDRESS", "building_number"), "secondary_address": ("STREET_ADDRESS", None),
    "city": ("LOCATION", "city"), "postcode": ("ZIP_CODE", "postcode"), "zipcode": ("ZIP_CODE", "postcode"),
    "phone_number": ("PHONE_NUMBER", "phone_number"), "email": ("EMAIL_ADDRESS", "email"),
    "credit_card_number": ("CREDIT_CARD", "credit_card_number"), "iban": ("IBAN_CODE", "iban"),
    "ssn": ("US_SSN", "ssn"), "ip_address": ("IP_ADDRESS", "ipv4_public"), "url": ("URL", "url"),
    "date_of_birth": ("DATE_TIME", "date_of_birth"), "date_time": ("DATE_TIME", "date_time"),
    "us_driver_license": ("LICENSE_NUMBER", None),
    "organization": (None, "company"), "country": (None, "country"), "nationality": (None, None),
    "nation_woman": (None, None), "nation_plural": (None, None), "job": (None, "job"), "year": (None, "year"),
    "day_of_week": (None, "day_of_week"), "state_abbr": (None, None), "prefix": (None, "prefix"),
    "prefix_male": (None, "prefix_male"), "prefix_female": (None, "prefix_female"), "age": (None, None),
}  # fmt: skip


def template_file() -> Path | None:
    spec = importlib.util.find_spec("presidio_evaluator")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data_generator" / "raw_data" / "templates.txt"
    return path if path.exists() else None


def _value(fakers: dict, locale: str, key: str, rng: random.Random) -> str:
    fake = fakers[locale]
    method = FIELDS[key][1]
    if key == "secondary_address":
        return rng.choice(["Apt. ", "Suite ", "Flat ", "Unit "]) + str(rng.randint(1, 999))
    if key == "us_driver_license":
        return rng.choice("ABCDEFGHJKLMNPRSTWY") + "".join(rng.choice("0123456789") for _ in range(7))
    if key in ("nationality", "nation_woman", "nation_plural"):
        return rng.choice(["French", "German", "Spanish", "Italian", "Dutch", "Polish", "Swedish", "Irish"])
    if key == "state_abbr":
        return rng.choice(["CA", "NY", "TX", "WA", "IL", "FL"])
    if key == "age":
        return str(rng.randint(18, 85))
    if key == "date_time":
        return fake.date_time().strftime(rng.choice(["%d/%m/%Y %H:%M", "%B %d, %Y", "%Y-%m-%d"]))
    if key == "date_of_birth":
        return fake.date_of_birth().strftime(rng.choice(["%d/%m/%Y", "%B %d, %Y", "%d.%m.%Y", "%m/%d/%Y"]))
    value = getattr(fake, method)()
    return " ".join(str(value).split())  # multi-line addresses on one line, as a user writes them


def presidio_generated(n: int = 1500, seed: int = 7) -> list[LabelledDoc]:
    path = template_file()
    if path is None:
        return []
    from faker import Faker

    # the file writes line breaks inside a template as the two characters backslash and n
    templates = [
        t.strip().replace("\\n", "\n").replace("\\,", ",")
        for t in path.read_text(encoding="utf-8").splitlines()
        if "{{" in t
    ]
    rng = random.Random(seed)
    fakers = {}
    for loc in LOCALES:
        fakers[loc] = Faker(loc)
        fakers[loc].seed_instance(seed)
    docs = []
    for i in range(n):
        template, locale = rng.choice(templates), rng.choice(LOCALES)
        text, spans, ignored, pos = "", [], [], 0
        for m in re.finditer(r"\{\{(\w+)\}\}", template):
            text += template[pos : m.start()]
            key = m.group(1)
            if key not in FIELDS:
                raise KeyError(f"presidio-evaluator template placeholder '{key}' has no filler here")
            value = _value(fakers, locale, key, rng)
            entity = FIELDS[key][0]
            (spans.append((len(text), len(text) + len(value), entity)) if entity else
             ignored.append((len(text), len(text) + len(value))))  # fmt: skip
            text += value
            pos = m.end()
        text += template[pos:]
        docs.append(LabelledDoc(f"presidio_synth/{i}/{locale}", text, spans, ignored))
    return docs
