"""PII scrubbing for HIPAA and GDPR with Presidio + spaCy, and the leak gate."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from pydantic import Field, PrivateAttr, field_validator, model_validator

from curate.errors import CurateError, did_you_mean
from curate.pii import operators as ops
from curate.pii.engine import DEFAULT_SPACY_MODEL, Span, analyze, build_engine, load_profile, merge_overlaps
from curate.pii.leak import Leak, find_leaks
from curate.records import REVIEW_COLUMN, append_audit, text_digest, with_reason
from curate.registry import Split, Stage, stage


@dataclass
class Scrubbed:
    text: str  # the scrubbed text
    spans: list[Span]  # what was detected in the original
    leaks: list[Leak]  # what the leak gate still finds in ``text``
    replaced: list[dict[str, Any]] = field(default_factory=list)  # see _PII_SPANS


class PiiLeakError(CurateError):
    """The leak gate found an identifier in scrubbed output (leak_gate: fail)."""


# Where each replacement is: in the scrubbed text (start, end) and in the text before
# (raw_start, raw_end), with its type. Positions only, never the values: the review app marks
# replacements with them, and a reviewer's decision names a span of the text before.
_PII_SPANS = pl.List(
    pl.Struct({"entity": pl.String, "start": pl.Int64, "end": pl.Int64, "raw_start": pl.Int64, "raw_end": pl.Int64})
)


def apply_review(text: str, found: list[Span], decisions: list[dict[str, Any]]) -> list[Span]:
    """Spans after reviewers' decisions on this text: a false detection's span is dropped, a
    missed identifier's span added (score 1). Decisions name spans of this text and carry a
    hash of it: a decision on a text that has since changed is ignored."""
    if not decisions:
        return found
    digest = text_digest(text)
    current = [d for d in decisions if d.get("text_sha") == digest]
    false = [(d["raw_start"], d["raw_end"]) for d in current if d["action"] == "pii_false"]
    kept = [s for s in found if not any(s.start < b and a < s.end for a, b in false)]
    missed = [
        Span(d["raw_start"], d["raw_end"], d["entity"], 1.0)
        for d in current
        if d["action"] == "pii_missed" and 0 <= d["raw_start"] < d["raw_end"] <= len(text)
    ]
    return merge_overlaps(kept + missed)


@stage("pii.scrub")
class PiiScrub(Stage):
    """Find and remove personal data (Presidio + spaCy), then check the result with an independent leak gate.

    Profiles are YAML data (``hipaa``: all 18 Safe Harbor identifiers;
    ``gdpr``: personal data, EU national ids, special-category review flags;
    or a path to your own, which may ``include`` a shipped one). Each entity
    type gets an operator: ``placeholder`` ([NAME]), ``redact``, ``mask``,
    ``pseudonymize`` (consistent salted surrogates; dates shifted per record
    or per ``shift_dates_by`` value), ``keep``, or the HIPAA rules
    ``year_only``, ``zip3``, ``age_90plus``.

    Adds ``pii`` (JSON: entity -> operator -> count; never the values) and
    ``pii_review`` (special categories mentioned, for human review).
    Records in which the leak gate still finds an identifier are rejected as
    ``pii_leak`` (``leak_gate: quarantine``) or stop the run (``fail``).
    """

    preload = ("curate.pii.preload",)
    version = "2"  # 2: pii_spans column; reviewers' decisions
    reviewable = ("pii_missed", "pii_false")

    profile: str = "hipaa"
    """Shipped profile name (hipaa, gdpr) or a path to a YAML profile."""
    spacy_model: str = DEFAULT_SPACY_MODEL
    """spaCy pipeline for names and places (any installed package name or path)."""
    operator: str | None = None
    """One operator for every entity type (overrides the profile's choices)."""
    operators: dict[str, str] = {}
    """Operator per entity type, e.g. {PERSON: pseudonymize, DATE_TIME: year_only}."""
    score_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    """Minimum detection score to act on."""
    salt_env: str = "CURATE_PII_SALT"
    """Environment variable holding the secret salt for pseudonyms (never written to outputs)."""
    salt_file: str | None = None
    """File holding the secret salt (takes precedence over salt_env)."""
    shift_dates_by: str | None = None
    """Column or meta key (e.g. a patient id) whose records share one date shift; default: per record."""
    leak_gate: Literal["quarantine", "fail", "off"] = "quarantine"
    """What to do when the independent second pass still finds an identifier."""
    chunk_chars: int = Field(default=50_000, ge=1000)
    """Long texts are analysed in chunks of this many characters, overlapping by 500."""
    batch_size: int = Field(default=64, ge=1)
    """Texts (or chunks of chunk_chars) per spaCy nlp.pipe batch: larger is a little faster, and
    holds more text in memory at once."""

    # Read from salt_env/salt_file when the recipe is validated, in the main process, and sent to
    # workers with the task (in memory): private attributes are never part of model_dump(), so
    # the salt cannot reach the manifest or any output.
    _salt: bytes | None = PrivateAttr(default=None)
    _engine: Any = PrivateAttr(default=None)
    _anonymizer: Any = PrivateAttr(default=None)
    _pseudonymizer: Any = PrivateAttr(default=None)
    _review: Any = PrivateAttr(default=None)

    @field_validator("spacy_model")
    @classmethod
    def _spacy_model_installed(cls, name: str) -> str:
        from curate.nlp import check_spacy_model

        return check_spacy_model(name)

    @model_validator(mode="after")
    def _check(self) -> PiiScrub:
        profile = load_profile(self.profile)
        entities = profile.entities
        chosen = [self.operator] if self.operator else []
        chosen += list(self.operators.values()) + list(profile.operators.values()) + [profile.default_operator]
        for name in chosen:
            if name not in ops.OPERATORS:
                raise ValueError(
                    f"unknown operator '{name}'.{did_you_mean(name, ops.OPERATORS)} Operators: {', '.join(ops.OPERATORS)}"
                )
        for entity in self.operators:
            if entity not in entities:
                raise ValueError(
                    f"operators: profile '{self.profile}' has no entity '{entity}'.{did_you_mean(entity, entities)} "
                    f"Entities: {', '.join(entities)}"
                )
        self._salt = ops.read_salt(self.salt_env, self.salt_file)
        if "pseudonymize" in self._operator_map(profile).values() and not self._salt:
            raise ValueError(
                f"pseudonymize needs a secret salt: set the environment variable {self.salt_env} "
                f"(or salt_env: to another variable) or salt_file: to a file holding it"
            )
        return self

    def resources(self) -> dict[str, str]:
        """Profile files, detector models and the salt's check value decide the output too."""
        import hashlib
        import hmac
        from pathlib import Path

        from curate.pii.engine import profile_files
        from curate.pii.train import resolve_detector

        out = {}
        for path in profile_files(self.profile):
            out[f"profile:{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        from curate.pii.train import detector_available

        for det in load_profile(self.profile).detectors:
            folder = resolve_detector(det["model"])
            if det.get("optional") and not detector_available(det["model"]):
                out[f"detector:{det['model']}"] = "off: libraries not installed"
                continue
            digest = hashlib.sha256()
            for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
                digest.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
            out[f"detector:{det['model']}"] = digest.hexdigest()
        if self._salt:
            out["salt_check"] = hmac.new(self._salt, b"curate salt check", hashlib.sha256).hexdigest()[:16]
        return out

    def _operator_map(self, profile) -> dict[str, str]:
        out = {e: self.operator or profile.operators.get(e, profile.default_operator) for e in profile.entities}
        out.update(self.operators)
        return out

    def setup(self) -> None:
        from curate.nlp import light_imports

        with light_imports():  # first import here (no forkserver preload): without torch/transformers (6 s)
            from presidio_anonymizer import AnonymizerEngine

        self._engine = build_engine(self.profile, self.spacy_model)
        self._anonymizer = AnonymizerEngine()
        profile = self._engine.profile
        ops_map = self._operator_map(profile)
        if "pseudonymize" in ops_map.values():
            self._pseudonymizer = ops.Pseudonymizer(self._salt)
        self._review = {
            cat: re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
            for cat, words in profile.special_categories.items()
        }

    def scrub(
        self, texts: list[str], shift_keys: list[str], reviewed: list[list[dict[str, Any]]] | None = None
    ) -> list[Scrubbed]:
        """Detect, transform, and run the leak gate on each text (the stage's work without the batch).
        ``reviewed``: per text, reviewers' decisions on it (curate review): identifiers the
        detectors missed are added, false detections dropped."""
        if self._engine is None:
            self.setup()
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        spans = analyze(self._engine, texts, self.score_threshold, self.chunk_chars, batch_size=self.batch_size)
        if reviewed is not None:
            spans = [apply_review(t, found, r) for t, found, r in zip(texts, spans, reviewed)]
        ops_map = self._operator_map(self._engine.profile)
        out = []
        for text, found, shift_key in zip(texts, spans, shift_keys):
            if found:
                configs = {
                    e: OperatorConfig(
                        "custom",
                        {"lambda": ops.operator_fn(ops_map.get(e, "placeholder"), e, self._pseudonymizer, shift_key)},
                    )
                    for e in {s.entity for s in found}
                }
                results = [RecognizerResult(s.entity, s.start, s.end, s.score) for s in found]
                res = self._anonymizer.anonymize(text=text, analyzer_results=results, operators=configs)
                new_text, items = res.text, sorted(res.items, key=lambda item: item.start)
                inserted = [(item.start, item.end) for item in items]
                # found is sorted and without overlaps (merge_overlaps): one item per span, in order
                replaced = [
                    {"entity": s.entity, "start": item.start, "end": item.end, "raw_start": s.start, "raw_end": s.end}
                    for s, item in zip(sorted(found, key=lambda s: s.start), items)
                ]
            else:
                new_text, inserted, replaced = text, [], []
            leaks = find_leaks(new_text, inserted) if self.leak_gate != "off" else []
            out.append(Scrubbed(new_text, found, leaks, replaced))
        return out

    def process(self, batch: pl.DataFrame) -> Split:
        texts = batch["text"].to_list()
        reviewed = None
        if REVIEW_COLUMN in batch.columns:  # the runner adds it where reviewers decided on records
            reviewed = [json.loads(v) if v else [] for v in batch[REVIEW_COLUMN].to_list()]
        results = self.scrub(texts, self._shift_keys(batch), reviewed)
        spans = [r.spans for r in results]
        ops_map = self._operator_map(self._engine.profile)
        new_texts, pii_json, review, leaks = [], [], [], []
        counters: Counter = Counter()
        for res in results:
            found, new_text, record_leaks = res.spans, res.text, res.leaks
            counts: dict[str, dict[str, int]] = {}
            for s in found:
                op = ops_map.get(s.entity, "placeholder")
                counts.setdefault(s.entity, {}).setdefault(op, 0)
                counts[s.entity][op] += 1
                counters[f"entity.{s.entity}"] += 1
            cats = sorted(c for c, rx in self._review.items() if rx.search(new_text))
            for c in cats:
                counters[f"review.{c}"] += 1
            for leak in record_leaks:
                counters[f"leak.{leak.entity}"] += 1
            new_texts.append(new_text)
            pii_json.append(json.dumps(counts, sort_keys=True, separators=(",", ":")))
            review.append(cats)
            leaks.append(", ".join(f"{lk.entity} at {lk.start}-{lk.end}" for lk in record_leaks))
        counters["records_with_pii"] = sum(1 for s in spans if s)
        if reviewed is not None:  # decisions made on another version of the text are not applied
            stale = sum(d.get("text_sha") != text_digest(t) for t, ds in zip(texts, reviewed) for d in ds)
            counters["review.applied"] = sum(len(ds) for ds in reviewed) - stale
            if stale:
                counters["review.stale"] = stale

        out = batch.with_columns(
            pl.Series("text", new_texts, dtype=pl.String),
            pl.Series("pii", pii_json, dtype=pl.String),
            pl.Series("pii_review", review, dtype=pl.List(pl.String)),
            pl.Series("pii_spans", [r.replaced for r in results], dtype=_PII_SPANS),
        )
        changed = out["text"] != batch["text"]
        summary = [
            "pii.scrub:" + ",".join(f"{e}={sum(c.values())}" for e, c in sorted(json.loads(j).items()))
            for j in pii_json
        ]
        out = append_audit(out, changed, pl.Series(summary, dtype=pl.String))
        leaked = pl.Series([bool(x) for x in leaks], dtype=pl.Boolean)  # typed: an empty part has no values
        if leaked.any() and self.leak_gate == "fail":
            first = leaks[leaked.arg_max()]
            raise PiiLeakError(
                f"pii.scrub leak gate: record {batch['id'][leaked.arg_max()]} still contains {first} after scrubbing "
                f"({int(leaked.sum())} records in this shard). Set leak_gate: quarantine to set such records aside instead."
            )
        rejected = with_reason(
            out.filter(leaked), self.name, "pii_leak", pl.Series(leaks, dtype=pl.String).filter(leaked)
        )
        return Split(kept=out.filter(~leaked), rejected=rejected, modified=int(changed.sum()), counters=dict(counters))

    def _shift_keys(self, batch: pl.DataFrame) -> list[str]:
        if not self.shift_dates_by:
            return batch["id"].to_list()
        if self.shift_dates_by in batch.columns:
            return [str(v) for v in batch[self.shift_dates_by].to_list()]
        keys = []
        for meta, rid in zip(batch["meta"].to_list(), batch["id"].to_list()):
            value = json.loads(meta or "{}").get(self.shift_dates_by)
            keys.append(str(value) if value is not None else rid)
        return keys
