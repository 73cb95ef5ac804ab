"""pii.scrub: every Safe Harbor category, EU national ids with checksums, operators, pseudonyms, leak gate."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import polars as pl
import pytest

from curate.errors import RecipeError
from curate.pii.engine import Span, analyze, build_engine, merge_overlaps
from curate.pii.operators import Pseudonymizer, shift_date
from curate.recipe import load_recipe
from curate.records import make_batch
from curate.stages.pii import PiiLeakError, PiiScrub

from .conftest import fresh_python, output, rejects, run, stage_stats, write_jsonl

pytestmark = pytest.mark.slow  # loads a spaCy model and Presidio (a few seconds, once per process)


def found(profile: str, text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in analyze(build_engine(profile), [text])[0]:
        out.setdefault(s.entity, []).append(text[s.start : s.end])
    return out


def scrub(texts: list[str], **params) -> tuple[list[str], pl.DataFrame]:
    stage = PiiScrub(**params)
    batch = make_batch({"id": [f"r{i}" for i in range(len(texts))], "text": texts, "source": ["t"] * len(texts)})
    split = stage.process(batch)
    return split.kept["text"].to_list(), split.rejected


# -- HIPAA Safe Harbor: one positive per category ---------------------------------

SAFE_HARBOR = [
    ("A names", "Patient John Carter was seen today.", "PERSON", "John Carter"),
    ("B street", "He lives at 1420 Oak Street with his wife.", "STREET_ADDRESS", "1420 Oak Street"),
    ("B city", "Address: 12 Elm Road, Riverton, WY 82501.", "LOCATION", "Riverton"),
    ("B zip", "Mailing address ends Springfield, IL 62704.", "ZIP_CODE", "62704"),
    ("C date", "Admitted on 03/14/2021 for observation.", "DATE_TIME", "03/14/2021"),
    ("C age>89", "A 93-year-old woman presented with a fall.", "AGE", "93"),
    ("D phone", "Call the ward at (217) 622-0143 tomorrow.", "PHONE_NUMBER", "(217) 622-0143"),
    ("E fax", "Please fax results to 312-744-5300 today.", "PHONE_NUMBER", "312-744-5300"),
    ("F email", "Reply to maria.lopez@hospital-mail.org please.", "EMAIL_ADDRESS", "maria.lopez@hospital-mail.org"),
    ("G ssn", "SSN 536-22-1234 on the intake form.", "US_SSN", "536-22-1234"),
    ("H mrn", "MRN: 4829104 admitted to ward 3.", "MEDICAL_RECORD_NUMBER", "4829104"),
    ("I health plan", "Insurance member ID: K123456789 verified.", "HEALTH_PLAN_ID", "K123456789"),
    ("J account", "Billing account number 88120044 is overdue.", "ACCOUNT_NUMBER", "88120044"),
    ("K license", "Physician license number: MD448812 on file.", "LICENSE_NUMBER", "MD448812"),
    ("L vehicle", "Car VIN 1HGCM82633A004352 was towed.", "VEHICLE_ID", "1HGCM82633A004352"),
    ("L plate", "License plate: 7ABC123 seen at the scene.", "VEHICLE_ID", "7ABC123"),
    ("M device", "Pacemaker serial number: PMX-20394811 checked.", "DEVICE_ID", "PMX-20394811"),
    (
        "N url",
        "Portal at https://myhealth.example-clinic.com/u/123 updated.",
        "URL",
        "https://myhealth.example-clinic.com/u/123",
    ),
    ("O ip", "Login from 172.16.254.3 was blocked.", "IP_ADDRESS", "172.16.254.3"),
    ("P biometric", "Fingerprint ID: FP-3A9C01D2E4F5 enrolled.", "BIOMETRIC_ID", "FP-3A9C01D2E4F5"),
    ("Q photo", "Full-face photo stored as portrait_0042.jpg in the chart.", "PHOTO", "portrait_0042.jpg"),
    ("R other id", "Claim number C88120044 was approved.", "ID_NUMBER", "C88120044"),
    ("R username", "Portal username: jdoe_1971 was locked.", "ONLINE_ID", "jdoe_1971"),
]


@pytest.mark.parametrize("case,text,entity,value", SAFE_HARBOR, ids=[c[0] for c in SAFE_HARBOR])
def test_every_safe_harbor_category_is_detected(case: str, text: str, entity: str, value: str):
    spans = found("hipaa", text)
    assert any(value in v for vs in spans.values() for v in vs), f"{case}: {value!r} not found in {spans}"
    assert entity in spans, f"{case}: found {spans}, expected type {entity}"


@pytest.mark.parametrize(
    "text",
    [
        "The ward has 536 beds and 22 nurses.",  # digits, not an SSN
        "SSN 966-22-1234 is not a valid number.",  # area 9xx is never issued
        "A 45-year-old man with no history.",  # ages under 90 stay
        "Order 4111 1111 1111 1112 units.",  # fails Luhn
        "VIN 1HGCM82633A004353 looks wrong.",  # bad check digit
    ],
)
def test_checksum_and_rule_negatives_are_not_flagged(text: str):
    spans = found("hipaa", text)
    assert not {"US_SSN", "AGE", "CREDIT_CARD", "VEHICLE_ID"} & set(spans), spans


def test_login_followed_by_an_ordinary_word_is_not_a_username():
    assert "ONLINE_ID" not in found("hipaa", "Last login from the clinic office was yesterday.")


# -- GDPR national identifiers: valid and checksum-invalid ---------------------------

NATIONAL_IDS = [
    ("UK_NINO", "National Insurance number AB 12 34 56 C on file.", "National Insurance number QQ 12 34 56 E on file."),
    ("DE_TAX_ID", "Steuer-ID 86095742719 des Antragstellers.", "Steuer-ID 86095742718 des Antragstellers."),
    ("FR_INSEE", "Numéro INSEE 1 84 12 76 451 089 46 enregistré.", "Numéro INSEE 1 84 12 76 451 089 47 enregistré."),
    ("ES_NIF", "DNI 12345678Z del solicitante.", "DNI 12345678A del solicitante."),
    ("ES_NIF", "NIE X1234567L del solicitante.", "NIE X1234567A del solicitante."),
    ("IT_FISCAL_CODE", "Codice fiscale RSSMRA85T10A562S del cliente.", "Codice fiscale RSSMRA85T10A562T del cliente."),
    (
        "IBAN_CODE",
        "IBAN DE89 3704 0044 0532 0130 00 für die Zahlung.",
        "IBAN DE89 3704 0044 0532 0130 01 für die Zahlung.",
    ),
    ("CREDIT_CARD", "Card 4111 1111 1111 1111 was charged.", "Card 4111 1111 1111 1121 was charged."),
]


@pytest.mark.parametrize("entity,valid,invalid", NATIONAL_IDS, ids=[f"{n[0]}-{i}" for i, n in enumerate(NATIONAL_IDS)])
def test_gdpr_national_ids_valid_found_invalid_ignored(entity: str, valid: str, invalid: str):
    assert entity in found("gdpr", valid)
    assert entity not in found("gdpr", invalid)


def test_gdpr_online_ids_and_special_categories():
    texts, _ = scrub(
        ["User @marta_92 wrote that she was diagnosed with diabetes and is a member of the green party."],
        profile="gdpr",
    )
    assert "@marta_92" not in texts[0]
    stage = PiiScrub(profile="gdpr")
    batch = make_batch(
        {"id": ["a"], "text": ["She was diagnosed with diabetes and attends the mosque."], "source": ["t"]}
    )
    kept = stage.process(batch).kept
    assert kept["pii_review"].to_list() == [["HEALTH", "RELIGION"]]
    assert "diabetes" in kept["text"][0]  # flagged for review, not removed


# -- operators -------------------------------------------------------------------------


def test_hipaa_defaults_placeholders_year_only_zip3_and_age():
    text = "John Carter, 93 years old, DOB 03/14/1929, lives at 1420 Oak Street, Springfield, IL 62704. Zip 03601 also."
    out, _ = scrub([text])
    assert out[0] == "[NAME], 90+ years old, DOB 1929, lives at [ADDRESS], [LOCATION], IL 62700. Zip 00000 also."


def test_operator_choices_redact_mask_keep():
    text = "Card 4111 1111 1111 1111, SSN 536-22-1234, email ann@corp-mail.com."
    out, _ = scrub(
        [text], operators={"CREDIT_CARD": "mask", "US_SSN": "redact", "EMAIL_ADDRESS": "keep"}, leak_gate="off"
    )
    assert out[0] == "Card **** **** **** 1111, SSN , email ann@corp-mail.com."


def test_pseudonyms_are_consistent_and_salted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CURATE_PII_SALT", "first-secret")
    texts = ["Patient John Carter called from (217) 622-0143.", "John Carter was seen again; phone (217) 622-0143."]
    a, _ = scrub(texts, operator="pseudonymize")
    assert "John" not in a[0] + a[1] and "622-0143" not in a[0] + a[1]
    name = a[0].split("Patient ")[1].split(" called")[0]
    phone = a[0].split("from ")[1].rstrip(".")
    assert a[1].startswith(name) and phone in a[1]  # same value -> same surrogate, across records
    assert phone.startswith("(") and "555-01" in phone  # shape kept, reserved fictional range
    again, _ = scrub(texts, operator="pseudonymize")
    assert again == a  # same salt, another run
    monkeypatch.setenv("CURATE_PII_SALT", "second-secret")
    other, _ = scrub(texts, operator="pseudonymize")
    assert other != a


def test_pseudonymize_without_salt_is_a_recipe_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CURATE_PII_SALT", raising=False)
    with pytest.raises(
        RecipeError, match="pseudonymize needs a secret salt: set the environment variable CURATE_PII_SALT"
    ):
        load_recipe({"name": "r", "input": ["a.jsonl"], "stages": [{"stage": "pii.scrub", "operator": "pseudonymize"}]})


def test_salt_file_works_and_is_never_written(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CURATE_PII_SALT", raising=False)
    (workdir / "salt.txt").write_text("file-secret-value\n")
    write_jsonl(workdir / "a.jsonl", [{"text": "Patient John Carter, MRN: 4829104."}])
    run({"input": ["a.jsonl"], "stages": [{"stage": "pii.scrub", "operator": "pseudonymize", "salt_file": "salt.txt"}]})
    everything = b"".join(p.read_bytes() for p in Path("runs/t").rglob("*") if p.is_file())
    assert b"file-secret-value" not in everything
    assert "John Carter" not in output("runs/t")["text"][0]


def test_dates_shift_consistently_within_a_record_and_keep_format():
    p = Pseudonymizer(b"k")
    days = p.days_shift("patient-7")
    assert days != 0 and days == p.days_shift("patient-7")
    assert shift_date("2021-03-01", 10) == "2021-03-11"
    assert shift_date("03/01/2021", -1) == "02/28/2021"
    assert shift_date("March 1, 2021", 31) == "April 1, 2021"
    assert shift_date("1 Mar 2021", 1) == "2 Mar 2021"


def test_pseudonymized_dates_keep_intervals(monkeypatch: pytest.MonkeyPatch):
    import datetime as dt

    monkeypatch.setenv("CURATE_PII_SALT", "s")
    out, _ = scrub(["Admitted 2021-03-01, discharged 2021-03-11."], operators={"DATE_TIME": "pseudonymize"})
    first, second = (dt.date.fromisoformat(d) for d in __import__("re").findall(r"\d{4}-\d{2}-\d{2}", out[0]))
    assert (second - first).days == 10 and first != dt.date(2021, 3, 1)


# -- leak gate ---------------------------------------------------------------------------


def _blind_profile(tmp: Path) -> str:
    """A profile that cannot see SSNs: the leak gate must catch them."""
    path = tmp / "blind.yaml"
    path.write_text("name: blind\nner: {PERSON: PERSON}\ndefault_operator: placeholder\n")
    return str(path)


def test_leak_gate_quarantines_a_planted_leak(workdir: Path):
    texts, rejected = scrub(["Jane Doe, SSN 536-22-1234.", "Jane Doe is fine."], profile=_blind_profile(workdir))
    assert texts == ["[NAME] is fine."]
    assert rejected["reason"].to_list() == ["pii_leak"]
    assert rejected["detail"][0] == "US_SSN at 12-23"
    assert "536-22-1234" not in rejected["pii"][0]


def test_leak_gate_fail_mode_stops_with_the_record_id(workdir: Path):
    with pytest.raises(PiiLeakError, match=r"record r0 still contains US_SSN"):
        scrub(["SSN 536-22-1234."], profile=_blind_profile(workdir), leak_gate="fail")


def test_leak_gate_ignores_its_own_surrogates(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CURATE_PII_SALT", "s")
    text = "SSN 536-22-1234, card 4111 1111 1111 1111, ip 172.16.254.3, mail ann@corp-mail.com, call 312-744-5300."
    out, rejected = scrub([text], operator="pseudonymize")
    assert len(rejected) == 0 and out[0] != text


# -- bad input -------------------------------------------------------------------------------


def test_long_document_chunks_do_not_split_entities():
    filler = "The patient rested comfortably and ate well. " * 30
    text = filler[:990] + " SSN 536-22-1234 " + filler + " John Carter called from (217) 622-0143."
    spans = analyze(build_engine("hipaa"), [text], chunk_chars=1000, overlap=100)[0]
    values = {text[s.start : s.end] for s in spans}
    assert "536-22-1234" in values and "(217) 622-0143" in values


def test_html_all_identifier_and_mixed_language_text():
    out, _ = scrub(
        [
            "<p>Contact: <a href='mailto:ann@corp-mail.com'>ann@corp-mail.com</a> or 312-744-5300</p>",
            "536-22-1234 4111111111111111 ann@corp-mail.com 172.16.254.3",
            "Herr Lukas Müller wohnt in Hamburg. Email lukas@web.de, Telefon +49 30 1234567.",
        ],
        profile="gdpr",
    )
    assert "ann@corp-mail.com" not in out[0] and "312-744-5300" not in out[0]
    assert not any(ch.isdigit() for ch in out[1]) and "@" not in out[1]
    assert "Müller" not in out[2] and "lukas@web.de" not in out[2] and "1234567" not in out[2]


def test_overlapping_spans_merge_into_the_union():
    spans = [Span(0, 10, "PERSON", 0.6), Span(5, 20, "LOCATION", 0.9), Span(30, 35, "ZIP_CODE", 0.7)]
    assert merge_overlaps(spans) == [Span(0, 20, "LOCATION", 0.9), Span(30, 35, "ZIP_CODE", 0.7)]


def test_names_found_once_are_removed_everywhere_in_the_document():
    out, _ = scrub(["Patient: Amanda Okafor. Amanda reports that Okafor family history is clear."])
    assert "Amanda" not in out[0] and "Okafor" not in out[0]


def test_name_propagation_matches_whole_words_only():
    from curate.pii.engine import propagate_names

    text = "Anne Lee saw Anneliese, then Lee-Smith and Anne again; Lee2 is a code."
    spans = propagate_names(text, [Span(0, 8, "PERSON", 0.9)])
    assert [text[s.start : s.end] for s in spans] == ["Anne", "Lee", "Lee", "Anne"]


URL_TEXTS = [
    "See https://portal.example-health.org/records?id=4 for details.",
    "visit www.clinic.com or mail a.b@mail.net.",
    "Plain prose with no address at all. Dr. Smith wrote 3.5 mg.",
    'link: "ftp.files.io/x" and e.g. this.',
]


def test_url_prefilter_drops_no_match():
    import re

    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    from curate.pii.engine import _with_prefilter

    plain, filtered = UrlRecognizer(), _with_prefilter(UrlRecognizer())
    for text in URL_TEXTS:
        # the same matches, except inside e-mail addresses (the e-mail recognizers take those whole)
        emails = [m.span() for m in re.finditer(r"\S+@\S+", text)]
        want = [
            (r.start, r.end)
            for r in plain.analyze(text, ["URL"])
            if not any(s < r.end and r.start < e for s, e in emails)
        ]
        assert [(r.start, r.end) for r in filtered.analyze(text, ["URL"])] == want
    assert plain.analyze(URL_TEXTS[0], ["URL"]) and not filtered.analyze(URL_TEXTS[2], ["URL"])


def test_ner_runs_without_the_unused_shared_tok2vec():
    import spacy

    engine = build_engine("hipaa")
    nlp = engine.nlp_engine.nlp["en"]
    assert nlp.pipe_names == ["ner"]  # ner embeds on its own; the shared tok2vec fed only tagger/parser
    full = spacy.load(engine.nlp_engine.models[0]["model_name"])
    texts = ["Patient Amanda Okafor was seen in Springfield, Ohio by Dr. Raj Patel on May 2."] * 2 + URL_TEXTS
    assert [[(e.start_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)] == [
        [(e.start_char, e.label_) for e in d.ents] for d in full.pipe(texts)
    ]


@pytest.mark.slow
def test_scrubbing_does_not_import_torch():
    """thinc and Presidio import torch/transformers when installed: seconds per worker for nothing."""
    code = (
        "import sys\n"
        "from curate.pii.engine import analyze, build_engine\n"
        "assert analyze(build_engine('hipaa'), ['Call Amanda Okafor at 555-201-3344.'])[0]\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
        "import torch, transformers\n"  # still importable afterwards (training in the same process)
        "print(torch.ones(2).sum().item())\n"
    )
    assert fresh_python(code).strip() == "2.0"


def test_presidio_runs_offline_without_downloading_the_suffix_list(monkeypatch: pytest.MonkeyPatch):
    import tldextract.tldextract as tx

    build_engine("hipaa")
    assert tx.TLD_EXTRACTOR.suffix_list_urls == ()

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert found("hipaa", "write to someone@mail-server.co.uk today")["EMAIL_ADDRESS"]


# -- the stage in a run ----------------------------------------------------------------------


def test_scrub_run_audit_stats_and_conservation(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CURATE_PII_SALT", "run-salt")
    names = ["John Carter", "Mary Hill", "Omar Haddad", "Lena Novak", "Ravi Patel", "Sofia Rossi", "Kofi Osei",
             "Ingrid Lindqvist", "Diego Flores", "Mei Chen", "Paul Moreau", "Anna Schmidt"]  # fmt: skip
    rows = [{"text": f"Patient {n}, MRN: {4829100 + i}, phone (217) 622-01{i:02d}."} for i, n in enumerate(names)]
    rows.append({"text": "Nothing personal in this one at all."})
    write_jsonl(workdir / "a.jsonl", rows[:7])
    write_jsonl(workdir / "b.jsonl", rows[7:])
    recipe = {
        "input": ["a.jsonl", "b.jsonl"],
        "stages": [{"stage": "pii.scrub", "operators": {"PERSON": "pseudonymize"}}],
        "run": {"workers": 2, "shard_size": 4},
    }
    stats = run(recipe)
    s = stage_stats(stats, "pii.scrub")
    assert s["in"] == s["kept"] + s["rejected"] == 13
    assert s["counters"]["entity.MEDICAL_RECORD_NUMBER"] == 12 and s["counters"]["records_with_pii"] == 12
    out = output("runs/t").sort("source")
    assert not any("4829" in t or any(n.split()[1] in t for n in names) for t in out["text"])
    pii = [json.loads(x) for x in out["pii"]]
    assert pii[0]["MEDICAL_RECORD_NUMBER"] == {"placeholder": 1} and pii[0]["PERSON"] == {"pseudonymize": 1}
    assert all(n.split()[1] not in a for audit in out["audit"] for a in audit for n in names)
    assert out.filter(pl.col("pii") == "{}")["text"].to_list() == ["Nothing personal in this one at all."]
    # the same salt gives the same pseudonyms in a second run (and across shards and workers)
    first = out["text"].to_list()
    run({**recipe, "run": {"workers": 1, "shard_size": 100}}, force=True)
    assert output("runs/t").sort("source")["text"].to_list() == first
    assert len(rejects("runs/t", "01_pii.scrub")) == 0


def test_profile_and_operator_errors(workdir: Path):
    base = {"name": "r", "input": ["a.jsonl"]}
    for params, message in (
        ({"profile": "hippa"}, "unknown PII profile 'hippa'. Did you mean 'hipaa'?"),
        ({"operator": "scramble"}, "unknown operator 'scramble'"),
        ({"operators": {"PERSN": "redact"}}, "has no entity 'PERSN'. Did you mean 'PERSON'?"),
    ):
        with pytest.raises(RecipeError, match=message):
            load_recipe({**base, "stages": [{"stage": "pii.scrub", **params}]})
    bad = workdir / "bad.yaml"
    bad.write_text(
        "name: bad\nrecognizers:\n  - {name: x, entity: X, patterns: [{name: p, regex: '(unclosed', score: 0.5}]}\n"
    )
    with pytest.raises(RecipeError, match="bad regex"):
        load_recipe({**base, "stages": [{"stage": "pii.scrub", "profile": str(bad)}]})
    bad.write_text(
        "name: bad\nrecognizers:\n  - {name: x, entity: X, validator: lunh, patterns: [{name: p, regex: 'x', score: 0.5}]}\n"
    )
    with pytest.raises(RecipeError, match="unknown validator 'lunh'. Did you mean 'luhn'?"):
        load_recipe({**base, "stages": [{"stage": "pii.scrub", "profile": str(bad)}]})


def test_user_profile_extends_a_shipped_one(workdir: Path):
    path = workdir / "house.yaml"
    path.write_text(
        "name: house\ninclude: [hipaa]\nrecognizers:\n"
        "  - {name: employee_id, entity: EMPLOYEE_ID, patterns: [{name: emp, regex: '\\bEMP-\\d{6}\\b', score: 0.9}]}\n"
        "operators: {EMPLOYEE_ID: redact}\n"
    )
    out, _ = scrub(["Badge EMP-004211 belongs to John Carter."], profile=str(path))
    assert out[0] == "Badge  belongs to [NAME]."


def test_form_field_labels_stay_when_a_name_runs_into_them(monkeypatch: pytest.MonkeyPatch):
    """NER runs "Amanda Martinez    MRN" and "Medical Center\\nPatient" together and calls "Phone" a place:
    the labels are not personal data, and pseudonyms for them garbled the record."""
    note = (
        "DISCHARGE SUMMARY - St. Brigid Medical Center\nPatient: Amanda Martinez    MRN: 1973060    DOB: 02/27/1936\n"
        "Address: 8323 Pine Street, Salem, MA 01911    Phone: 447.292.9028\n"
    )
    spans = analyze(build_engine("hipaa"), [note])[0]
    texts = [note[s.start : s.end] for s in spans]
    assert "Amanda Martinez" in texts and "Salem" in texts
    assert not any(label in t for t in texts for label in ("Patient", "MRN", "Phone", "Address"))
    monkeypatch.setenv("CURATE_PII_SALT", "labels")
    out, _ = scrub([note], operator="pseudonymize")
    for label in ("Patient: ", " MRN: ", " DOB: ", "Address: ", " Phone: "):
        assert label in out[0]
    assert "Amanda" not in out[0] and "1973060" not in out[0] and "447.292.9028" not in out[0]
    # a name before a colon that is not a field label is still a name
    assert "Smith" not in scrub(["Dear John Smith: thank you for writing."])[0][0]


@pytest.mark.parametrize(
    "text, name",
    [
        # a heading: the name ends at the line, the form field on the next line is no part of it
        ("DISCHARGE SUMMARY - Lakeside General Hospital\nPatient: see below", "Lakeside General Hospital"),
        ("Seen at St. Brigid Hospital last spring.", "St. Brigid Hospital"),
        ("She was transferred to Mount Sinai Medical Center on Monday.", "Mount Sinai Medical Center"),
        ("Ingresó en el Hospital Universitario de Getafe el lunes.", "Hospital Universitario de Getafe"),
        # generic places are no one's name
        ("The Hospital was closed and the County Clinic too.", None),
        ("General Hospital staff met at noon.", None),
    ],
)
def test_named_care_providers_whole(text: str, name: str | None):
    """Found by `curate review` on the demo: "Lakeside General Hospital" lost only "Hospital" (the
    name-first pattern ran across the newline into "Patient", a form label dropped afterwards)."""
    out = PiiScrub(profile="hipaa").scrub([text], ["r"])[0].text
    if name is None:
        assert out == text
        return
    before, after = text.split(name)
    assert out.startswith(before) and out.endswith(after)  # the rest, the form field included, is kept
    assert not any(word in out for word in name.split() if word not in before + after)  # no word of it left
