"""PII on data the detectors were not written for: leak formats, languages, the measure, trained detectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.pii.engine import Span, build_engine, to_token_bounds
from curate.pii.evaluate import LabelledDataError, LabelledDoc, evaluate, read_labelled, span_scores
from curate.pii.leak import find_leaks
from curate.stages.pii import PiiScrub

# Each a leak found by a new user (issue 16): the identifier, in the sentence it came in.
LEAK_FORMATS = [
    ("ssn nine digits", "His SSN is 219099999 on file.", "219099999"),
    ("ssn dotted", "SSN: 219.09.9999 per the form.", "219.09.9999"),
    ("ssn spaced", "SSN 219 09 9999 per the form.", "219 09 9999"),
    ("phone bare", "Call 4158675309 after lunch.", "4158675309"),
    ("phone parens", "Call (415)867-5309 after lunch.", "(415)867-5309"),
    ("phone berlin", "Rufen Sie 030/12345678 an.", "030/12345678"),
    ("phone french", "Appelez-moi au 06 12 34 56 78 ce soir.", "06 12 34 56 78"),
    ("phone uk intl", "Ring me on +44 20 7946 0958 tomorrow.", "+44 20 7946 0958"),
    ("iban lowercase", "Pay to iban de89 3704 0044 0532 0130 00 please.", "de89 3704 0044 0532 0130 00"),
    ("iban dashed", "Pay to DE89-3704-0044-0532-0130-00 please.", "DE89-3704-0044-0532-0130-00"),
    ("ipv6", "The host 2001:db8:85a3::8a2e:370:7334 went down.", "2001:db8:85a3::8a2e:370:7334"),
    ("name in capitals", "PATIENT NAME: JOHN SMITH", "JOHN SMITH"),
    ("french street", "Elle habite au 12 rue de la Paix depuis mai.", "12 rue de la Paix"),
    ("email written out", "Write to jdoe at gmail dot com for details.", "jdoe at gmail dot com"),
    ("email odd domain", "Write to jdoe@internal.corp for details.", "jdoe@internal.corp"),
]


def _gone(value: str, output: str) -> bool:
    """No 3+ character piece of the value (letters or digits) is left in the output."""
    import re

    return not any(tok in output for tok in re.findall(r"[^\W_]{3,}", value) if not tok.isalpha() or len(tok) > 3)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["hipaa", "gdpr"])
@pytest.mark.parametrize("case,text,value", LEAK_FORMATS, ids=[c[0] for c in LEAK_FORMATS])
def test_scrubber_removes_each_leak_format(profile, case, text, value):
    result = PiiScrub(profile=profile).scrub([text], ["r1"])[0]
    assert _gone(value, result.text), f"{case}: {result.text!r}"
    assert not result.leaks, f"{case}: the scrubbed text still trips the gate: {result.leaks}"


@pytest.mark.parametrize("case,text,value", LEAK_FORMATS, ids=[c[0] for c in LEAK_FORMATS])
def test_leak_gate_catches_each_format_on_its_own(case, text, value):
    if case == "email odd domain":
        pytest.skip("a plain e-mail: the gate's first detector, covered in test_pii.py")
    start = text.index(value)
    leaks = find_leaks(text)
    assert any(lk.start < start + len(value) and start < lk.end for lk in leaks), (case, leaks)


@pytest.mark.parametrize(
    "broken",
    ["Mail jdoe@[URL]ernal for access.", "Call [PHONE]9 now.", "Write to [URL].example.com today."],
)
def test_leak_gate_catches_identifiers_a_partial_replacement_broke(broken):
    start, end = broken.index("["), broken.index("]") + 1
    assert any(lk.entity == "BROKEN_IDENTIFIER" for lk in find_leaks(broken, [(start, end)]))


def test_leak_gate_leaves_clean_text_and_placeholders_alone():
    text = "Name: [NAME], seen 10:30:45 on ward 3. Name: The patient agreed. Dr. [NAME] called [PHONE]."
    inserted = [(i, text.index("]", i) + 1) for i in range(len(text)) if text[i] == "["]
    assert find_leaks(text, inserted) == []


def test_partial_spans_widen_to_the_whole_identifier():
    def widened(text: str, start: int, end: int) -> str:
        s = to_token_bounds(text, [Span(start, end, "X", 1.0)])[0]
        return text[s.start : s.end]

    text = "mail jdoe@internal.example.com now"
    assert widened(text, 10, 18) == "jdoe@internal.example.com"
    assert widened("call 4158675309 now", 5, 14) == "4158675309"
    assert widened("Mrs Ferndale-Ostrowski came", 4, 12) == "Ferndale-Ostrowski"
    assert widened("a 92-year-old man", 2, 4) == "92"  # "-year" is not part of an age
    assert widened("NHC: 368503. Next", 4, 11) == "368503"  # whitespace trimmed, label untouched


# Addresses as letters and forms write them in many countries (issue 16: towns 0.64 and postcodes
# 0.52 removed on presidio-evaluator's many-locale sentences): (text, values that must go, words that stay)
ADDRESS_SHAPES = [
    (
        "letter block",
        "Wojciech Paściak\n\n14 Pogodna\n Unit 255\n Krotoszyn\n Guinea 09-271\nThanks again",
        ["14 Pogodna", "Krotoszyn", "09-271"],
        ["Thanks", "again"],
    ),
    (
        "quoted block, state line",
        "> 3212 Gertraud-Heintze-Gasse Suite 36\n>   Rudolstadt\n>    TX\n>    44026",
        ["Gertraud", "Rudolstadt", "44026"],
        [],
    ),
    (
        "town state postcode line",
        "Dott. Isabella Antonetti Apt. 655 0 Stretto Salvi\nMoura IL 8186-252",
        ["Stretto Salvi", "Moura", "8186-252"],
        [],
    ),
    ("town then country", "Carl Jönsson\n\nPiteå\nBelarus", ["Piteå"], ["Belarus"]),
    (
        "address in a sentence",
        "Marcus Sandberg lives at 143 Strandgränd, Skövde.",
        ["Strandgränd", "Skövde"],
        ["lives"],
    ),
    (
        "street then St.",
        "Ask the driver to stop at the corner of Kayleighhof St. and Lanaweg St. please.",
        ["Kayleighhof", "Lanaweg"],
        ["driver", "corner", "please"],
    ),
    ("military mail", "Ship it to PSC 6676, Box 4020 APO AA 93498 by Friday.", ["6676", "4020", "93498"], ["Ship"]),
    (
        "postcode after town",
        "I once lived in Pasaje de Delfina Santana 44 Apt. 31 Melilla, 33447. Not now.",
        ["Delfina", "Melilla", "33447"],
        ["once", "lived"],
    ),
    (
        "italian cap",
        "The office is at Viale Schiaparelli, 21 Piano 0 21047, Saronno (VA).",
        ["Schiaparelli", "21047", "Saronno"],
        ["office"],
    ),
    (
        "university of",
        "He studied journalism at the University of Nicolechester.",
        ["Nicolechester"],
        ["studied", "journalism"],
    ),
    ("labelled odd ssn", "His social security number is ZZ 27 92 82 T, he said.", ["27 92 82"], ["said"]),
    ("phone then kind", "Call 08-803 57 31-Office,0020-34 60 11-Fax today.", ["803 57 31", "0020"], ["today"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,text,gone,kept", ADDRESS_SHAPES, ids=[c[0] for c in ADDRESS_SHAPES])
def test_addresses_in_many_countries_shapes_are_scrubbed(case, text, gone, kept):
    out = PiiScrub(profile="hipaa").scrub([text], ["r1"])[0].text
    for value in gone:
        assert _gone(value, out), f"{case}: {value!r} left in {out!r}"
    for word in kept:
        assert word in out, f"{case}: ordinary {word!r} lost in {out!r}"


@pytest.mark.slow
def test_lines_that_only_look_like_an_address_block_stay():
    text = "Agenda\n\n3 Items\nBudget\nReview\n\nMinutes\nApproved"
    out = PiiScrub(profile="hipaa").scrub([text], ["r1"])[0].text
    assert out == text, out


@pytest.mark.slow
def test_records_are_routed_by_language():
    engine = build_engine("gdpr")
    spanish = "Paciente de 70 años que ingresa por dolor abdominal y fiebre de tres días de evolución, sin otros antecedentes de interés."
    german = "Die Patientin stellte sich mit Fieber und Husten in der Notaufnahme vor. Die Entlassung erfolgte am Folgetag nach Hause."
    english = "Patient presented with fever and cough for three days before admission and was discharged the next day."
    assert engine.detect_language(spanish) == "es"
    assert engine.detect_language(german) == "de"
    assert engine.detect_language(english) == "en"
    # too short to tell (an English sentence with foreign names reads as Dutch): the default language
    assert engine.detect_language("We'll meet vrijdag at Galijn & van der Zijl") == "en"
    # the English NER and capitalised-word rule do not run on German text, whose nouns are all capitalised
    assert PiiScrub(profile="gdpr").scrub([german], ["r"])[0].text == german
    short = "Die Patientin erhielt Ampicillin. Die Entlassung erfolgte in gutem Allgemeinzustand."
    assert PiiScrub(profile="gdpr").scrub([short], ["r"])[0].text == short


@pytest.mark.slow
def test_spanish_clinical_record_goes_through_the_trained_detector():
    text = (
        "Datos del paciente. Nombre: Ernesto. Apellidos: Rivera Bueno. NHC: 368503. NASS: 26 63514095. "
        "Domicilio: Calle Miguel Benitez 90. Localidad/ Provincia: Madrid. CP: 28016. "
        "Fecha de nacimiento: 03/03/1946. Médico: Ignacio Navarro Cuéllar NºCol: 28 28 70973. "
        "Informe clínico del paciente: varón de 70 años de edad, minero jubilado, sin alergias conocidas."
    )
    out = PiiScrub(profile="gdpr").scrub([text], ["r"])[0].text
    for value in ["Ernesto", "Rivera", "368503", "63514095", "Benitez", "Madrid", "28016", "1946", "Navarro", "70973"]:
        assert value not in out, (value, out)
    for kept in ["paciente", "minero jubilado", "alergias"]:
        assert kept in out


@pytest.mark.slow
def test_german_letter_is_scrubbed_by_the_language_independent_recognizers():
    text = (
        "Wir berichten über Ihre Patientin Frau Hildegard Schulze, geb. am 14.07.1948, wohnhaft Lindenweg 7, "
        "79100 Freiburg. Versichertennummer: K123456789. Tel.: 0761 270-12345. Die 72-jährige Patientin kam "
        "am 3. Februar 2021 in die Notaufnahme."
    )
    out = PiiScrub(profile="gdpr").scrub([text], ["r"])[0].text
    for value in [
        "Hildegard",
        "Schulze",
        "14.07",
        "Lindenweg",
        "79100",
        "Freiburg",
        "K123456789",
        "270-12345",
        "Februar",
    ]:
        assert value not in out, (value, out)
    assert "Notaufnahme" in out and "Patientin" in out


def test_label_map_maps_ignores_and_refuses_unknown_labels(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text(
        json.dumps({"id": "a", "text": "Ana lives in Lugo, 2 cats.", "spans": [
            {"start": 0, "end": 3, "type": "nombre"}, {"start": 13, "end": 17, "type": "ciudad"},
            {"start": 19, "end": 20, "type": "numero"}]}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    docs = read_labelled(path, {"nombre": "PERSON", "ciudad": "LOCATION", "numero": None})
    assert docs[0].spans == [(0, 3, "PERSON"), (13, 17, "LOCATION")]
    assert docs[0].ignored == [(19, 20)]
    with pytest.raises(LabelledDataError, match="label 'numero' is not in the label map"):
        read_labelled(path, {"nombre": "PERSON", "ciudad": "LOCATION"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ab", "spans": [{"start": 1, "end": 9, "type": "x"}]}) + "\n")
    with pytest.raises(LabelledDataError, match=r"bad.jsonl:1: span 1-9 outside the text"):
        read_labelled(bad)


def test_token_measure_counts_removed_identifiers_and_kept_ordinary_words():
    doc = LabelledDoc(
        "d", "Patient Maria Lopez seen on 03/14/2024 in clinic.", [(8, 19, "PERSON"), (28, 38, "DATE_TIME")]
    )
    perfect = evaluate([doc], ["Patient [NAME] seen on 2024 in clinic."])
    assert perfect["removed"] == 1.0 and perfect["ordinary_kept"] == 1.0  # the year alone may stay
    leaky = evaluate([doc], ["Patient Maria [NAME] seen on [DATE] in clinic."])
    assert leaky["removed"] == pytest.approx(3 / 4, abs=1e-3)  # Maria, Lopez, 03, 14: Maria survived
    eager = evaluate([doc], ["[X] [NAME] seen on [DATE] in [X]."])
    assert eager["ordinary_kept"] == pytest.approx(1 / 3, abs=1e-3)  # of Patient, seen, clinic ("on", "in": too short)
    withheld = evaluate([doc], [None])
    assert withheld["removed"] == 1.0 and withheld["ordinary_kept"] == 0.0 and withheld["withheld"] == 1
    spans = span_scores([doc], [[(8, 19, "PERSON"), (40, 42, "X")]])
    assert spans["recall"] == 0.5 and spans["precision"] == 0.5


NAMES = ["Ernesto Rivera", "Lucía Gómez", "Pablo Ruiz", "Carmen Ortega", "Javier Molina", "Elena Navarro",
         "Diego Castro", "Marta Prieto", "Sergio Vidal", "Rosa Campos", "Andrés Lozano", "Pilar Soto"]  # fmt: skip
TEMPLATES = ["Nos visita {} por dolor torácico.", "El hijo de {} llamó ayer a la consulta.",
             "Se informa a {} del resultado de la biopsia.", "Acude {} a revisión sin incidencias."]  # fmt: skip


def _labelled(path: Path, names: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, name in enumerate(names):
            for t in TEMPLATES:
                text = t.format(name)
                start = text.index(name)
                spans = [{"start": start, "end": start + len(name), "type": "nombre"}]
                fh.write(json.dumps({"id": f"{i}", "text": text, "spans": spans}, ensure_ascii=False) + "\n")


@pytest.mark.slow
def test_a_detector_trained_on_a_few_documents_finds_a_new_name(tmp_path):
    from click.testing import CliRunner

    from curate.cli import main

    train = tmp_path / "train.jsonl"
    _labelled(train, NAMES)
    result = CliRunner().invoke(
        main,
        ["pii", "train", str(train), "--lang", "es", "--label-map", '{"nombre": "PERSON"}',
         "-o", str(tmp_path / "det"), "--epochs", "15"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held out" in result.output and "PERSON" in result.output
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["labels"] == ["PERSON"] and meta["label_map"] == {"nombre": "PERSON"}
    assert meta["held_out"]["recall"] > 0.5
    # used by a profile, next to the rule-based recognizers, for Spanish records
    profile = tmp_path / "mine.yaml"
    profile.write_text(f"include: [gdpr]\ndetectors:\n  - {{model: {tmp_path / 'det'}, languages: [es]}}\n")
    text = "Nos visita Fermín Alcázar por dolor torácico, sin fiebre ni otros síntomas en los últimos días."
    out = PiiScrub(profile=str(profile)).scrub([text], ["r"])[0].text
    assert "Fermín" not in out and "Alcázar" not in out and "dolor torácico" in out


EN_NAMES = ["tanner", "momo", "kishan", "freddie", "titi", "draymond", "stevie", "yilong", "desi", "croy",
            "mason", "ishawna"]  # fmt: skip
EN_TEMPLATES = ["lol {} is so funny in this vid", "why does {} always do that", "can't wait to see {} tonight",
                "happy birthday {} !!"]  # fmt: skip


@pytest.mark.slow
def test_a_token_classifier_trained_on_a_few_posts_finds_a_new_lowercase_name(tmp_path):
    """The token-classifier family (LoRA on the offline MiniLM): lowercase names in informal
    English, which no capitalisation rule sees."""
    pytest.importorskip("peft")
    from click.testing import CliRunner

    from curate.cli import main
    from curate.pii.train import TokenClassifierDetector, load_detector

    train = tmp_path / "train.jsonl"
    with open(train, "w", encoding="utf-8") as fh:
        for i, name in enumerate(EN_NAMES):
            for t in EN_TEMPLATES:
                text = t.format(name)
                start = text.index(name)
                fh.write(
                    json.dumps(
                        {
                            "id": f"{i}",
                            "text": text,
                            "spans": [{"start": start, "end": start + len(name), "type": "person"}],
                        }
                    )
                    + "\n"
                )
    result = CliRunner().invoke(
        main,
        ["pii", "train", str(train), "--lang", "en", "--family", "token-classifier", "--label-map", "wnut17",
         "-o", str(tmp_path / "det"), "--epochs", "15"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    assert meta["family"] == "token-classifier" and meta["labels"] == ["PERSON"]
    assert (tmp_path / "det" / "adapter" / "adapter_model.safetensors").stat().st_size < 5_000_000
    det = load_detector(str(tmp_path / "det"))
    assert isinstance(det, TokenClassifierDetector)
    text = "why does zoltan always do that"
    found = det.find([text])[0]
    assert [(text[a:b], label) for a, b, label in found] == [("zoltan", "PERSON")]
    # a profile uses it by path, next to the recognizers
    profile = tmp_path / "mine.yaml"
    profile.write_text(f"include: [hipaa]\ndetectors:\n  - {{model: {tmp_path / 'det'}, languages: [en]}}\n")
    out = PiiScrub(profile=str(profile)).scrub(["can't wait to see zoltan tonight"], ["r"])[0].text
    assert "zoltan" not in out and "tonight" in out


@pytest.mark.slow
def test_gdpr_finds_names_in_informal_english_through_the_shipped_detector():
    pytest.importorskip("peft")
    texts = ["yea tanner do another hide and seek but in the mall", "I swear freddie laughs at everything",
             "if you do n't like trump , your the minority"]  # fmt: skip
    outs = [r.text for r in PiiScrub(profile="gdpr").scrub(texts, ["a", "b", "c"])]
    for name, out in zip(["tanner", "freddie", "trump"], outs):
        assert name not in out, out
    assert "hide and seek" in outs[0] and "laughs at everything" in outs[1]


@pytest.mark.slow
def test_the_english_encoder_loads_only_when_an_english_text_arrives():
    pytest.importorskip("peft")
    from curate.pii.engine import build_engine
    from curate.pii.train import TokenClassifierDetector

    build_engine.cache_clear()  # engines are shared within a process: start from a fresh one
    stage = PiiScrub(profile="gdpr")
    stage.setup()
    (det,) = [d for d, _, _ in stage._engine.detectors if isinstance(d, TokenClassifierDetector)]
    stage.scrub(["El paciente Juan García Pérez acudió el 3 de mayo de 2019 a urgencias del hospital."], ["es"])
    assert det.model is None
    stage.scrub(["yea tanner do another hide and seek"], ["en"])
    assert det.model is not None


def test_an_optional_detector_without_its_libraries_is_off_with_a_warning(tmp_path, monkeypatch):
    import curate.pii.train as train_mod
    from curate.pii.engine import active_detectors, load_profile

    monkeypatch.setattr(train_mod, "detector_available", lambda name: False)
    with pytest.warns(UserWarning, match="en_social_names.*is off"):
        active = active_detectors(load_profile("gdpr"))
    assert [d["model"] for d in active] == ["es_clinical"]
    assert PiiScrub(profile="gdpr").resources()["detector:en_social_names"].startswith("off")


def test_unknown_detector_in_a_profile_fails_before_work(tmp_path):
    from curate.errors import RecipeError
    from curate.pii.engine import load_profile

    profile = tmp_path / "p.yaml"
    profile.write_text("include: [gdpr]\ndetectors:\n  - {model: es_clinicl}\n")
    with pytest.raises(RecipeError, match="Did you mean 'es_clinical'"):
        load_profile(str(profile))


@pytest.mark.slow
def test_resume_is_refused_when_the_salt_or_a_profile_file_changed(workdir, monkeypatch):
    from curate.errors import RecipeError

    from .conftest import run, write_jsonl

    write_jsonl(workdir / "in.jsonl", [{"text": f"Patient John Carter {i} called 415-867-5309."} for i in range(5)])
    profile = workdir / "mine.yaml"
    profile.write_text("include: [hipaa]\n")
    recipe = {"input": ["in.jsonl"], "stages": [{"stage": "pii.scrub", "profile": str(profile),
                                                  "operator": "pseudonymize"}]}  # fmt: skip
    monkeypatch.setenv("CURATE_PII_SALT", "salt-A")
    run(recipe)
    run(recipe)  # same salt, same files: resumes
    manifest = (workdir / "runs" / "t" / "manifest.json").read_text()
    assert "salt-A" not in manifest  # only a keyed check value of it
    monkeypatch.setenv("CURATE_PII_SALT", "salt-B")
    with pytest.raises(RecipeError, match="PII profile, detector model or salt"):
        run(recipe)
    monkeypatch.setenv("CURATE_PII_SALT", "salt-A")
    profile.write_text("include: [hipaa]\noperators: {PERSON: redact}\n")
    from curate.pii.engine import _load_profile

    _load_profile.cache_clear()
    with pytest.raises(RecipeError, match="PII profile, detector model or salt"):
        run(recipe)
