"""Lexicon rewriting (gender-neutral language, house style) as a pipeline stage."""

from __future__ import annotations

import json
from collections import Counter

import polars as pl
from pydantic import Field, field_validator

from curate.records import REVIEW_COLUMN, append_audit, text_digest
from curate.registry import Split, Stage, stage
from curate.rewrite.engine import DEFAULT_SPACY_MODEL, build_rewriter
from curate.rewrite.lexicon import load_lexicon

_EDITS = pl.List(pl.Struct({"rule": pl.String, "old": pl.String, "new": pl.String, "start": pl.Int64}))


@stage("rewrite.lexicon")
class LexiconRewrite(Stage):
    """Rewrite text with substitution lexicons (lexicons/*.csv), e.g. gender-neutral language.

    Nouns are matched on spaCy tokens with their part of speech and rewritten
    with plural, possessive, capitalisation and article agreement (a/an);
    multiword entries match token sequences. Words inside person names (NER
    PERSON, or after Mr/Ms/Dr) are never touched. With ``pronouns``,
    he/him/his/himself/she/her/hers/herself become they/them/their/themselves
    where they refer to a rewritten or gender-free person noun (not to a
    named person), and the verb agrees ("he reviews" -> "they review").

    Adds ``rewrites`` (each change: rule, old, new, offset) and, with
    ``keep_original``, ``original`` (the text before) for style pairs. Text
    with no match is left byte for byte. ``dry_run`` lists the changes in
    ``rewrites`` without applying them.
    """

    preload = ("curate.rewrite.preload",)
    reviewable = ("rewrite_undo",)

    lexicons: list[str] = ["gender_neutral"]
    """Lexicon names in lexicons/ or paths to .csv lexicons, applied together."""
    pronouns: bool = True
    """Rewrite gendered pronouns that refer to generic persons, with verb agreement."""
    spacy_model: str = DEFAULT_SPACY_MODEL
    """spaCy pipeline for tokens, parts of speech, parses and person names."""
    keep_original: bool = True
    """Keep the text before rewriting in an `original` column (needed by format.style_pairs)."""
    dry_run: bool = False
    """Only list the proposed changes (in `rewrites`); leave the text as it is."""
    batch_size: int = Field(default=64, ge=1)
    """Texts per spaCy nlp.pipe batch."""

    @field_validator("spacy_model")
    @classmethod
    def _spacy_model_installed(cls, name: str) -> str:
        from curate.nlp import check_spacy_model

        return check_spacy_model(name)

    @field_validator("lexicons")
    @classmethod
    def _lexicons_valid(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("give at least one lexicon")
        for name in names:
            load_lexicon(name)  # raises with the file and line of every problem
        return names

    def resources(self) -> dict[str, str]:
        """The lexicon files' content: an edit between a crash and its resume must not give half
        the records the old catalogue and half the new one."""
        import hashlib

        from curate.rewrite.lexicon import resolve

        return {f"lexicon:{name}": hashlib.sha256(resolve(name).read_bytes()).hexdigest() for name in self.lexicons}

    def setup(self) -> None:
        build_rewriter(tuple(self.lexicons), self.pronouns, self.spacy_model).nlp  # noqa: B018 - load the model now

    def process(self, batch: pl.DataFrame) -> Split:
        rewriter = build_rewriter(tuple(self.lexicons), self.pronouns, self.spacy_model)
        texts = batch["text"].to_list()
        results = rewriter.rewrite_many(texts, self.batch_size)
        undone = [False] * len(texts)
        decided = 0
        if REVIEW_COLUMN in batch.columns:  # a reviewer undid a record's rewrites (curate review)
            reviewed = [json.loads(v or "[]") for v in batch[REVIEW_COLUMN].to_list()]
            undone = [
                any(d["action"] == "rewrite_undo" and d.get("text_sha") == text_digest(t) for d in ds)
                for t, ds in zip(texts, reviewed)
            ]
            decided = sum(len(ds) for ds in reviewed)
            results = [(t, []) if undo else r for t, r, undo in zip(texts, results, undone)]
        counters: Counter = Counter()
        edits_col, audit = [], []
        for (_, edits), undo in zip(results, undone):
            edits_col.append([{"rule": e.rule, "old": e.old, "new": e.new, "start": e.start} for e in edits])
            per_rule = Counter(e.rule for e in edits)
            counters.update({f"rule.{k}": v for k, v in per_rule.items()})
            entry = "rewrite.lexicon:" + ",".join(f"{k}={v}" for k, v in sorted(per_rule.items()))
            audit.append("rewrite.lexicon:undone by review" if undo else entry)
        if any(undone):
            counters["review.rewrites_undone"] = sum(undone)
        if decided > sum(undone):  # decisions made on another version of the text are not applied
            counters["review.stale"] = decided - sum(undone)
        new_texts = texts if self.dry_run else [out for out, _ in results]
        out = batch.with_columns(pl.Series("rewrites", edits_col, dtype=_EDITS))
        if self.keep_original:
            out = out.with_columns(pl.Series("original", texts, dtype=pl.String))
        out = out.with_columns(pl.Series("text", new_texts, dtype=pl.String))
        changed = (out["text"] != batch["text"]) | pl.Series(undone, dtype=pl.Boolean)
        out = append_audit(out, changed, pl.Series(audit, dtype=pl.String))
        counters["records_with_changes"] = sum(1 for _, e in results if e)
        return Split(
            kept=out, rejected=out.clear(), modified=int((out["text"] != batch["text"]).sum()), counters=dict(counters)
        )
