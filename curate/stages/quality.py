"""Quality filters: heuristics that keep or drop a record on its own."""

from __future__ import annotations

import functools
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from curate.errors import did_you_mean
from curate.records import with_reason
from curate.registry import Split, Stage, stage


@stage("filter.length")
class LengthFilter(Stage):
    """Drop records outside a character and/or word-count range.

    Reasons: ``too_short`` / ``too_long``; ``detail`` names the bound that
    failed, e.g. ``3 words < min_words 5``. Words are runs of non-space
    characters. Unset bounds are not checked.
    """

    min_chars: int | None = None
    """Minimum number of characters (after earlier stages)."""
    max_chars: int | None = None
    """Maximum number of characters."""
    min_words: int | None = 5
    """Minimum number of whitespace-separated words."""
    max_words: int | None = 100_000
    """Maximum number of whitespace-separated words."""

    @model_validator(mode="after")
    def _bounds_ordered(self) -> LengthFilter:
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
            for key, v in ((lo, a), (hi, b)):
                if v is not None and v < 0:
                    raise ValueError(f"{key} must be >= 0, got {v}")
        return self

    def process(self, batch: pl.DataFrame) -> Split:
        n_chars = pl.col("text").str.len_chars()
        n_words = pl.col("text").str.count_matches(r"\S+")
        checks = []  # (failed-expr, reason, detail-expr), first failing check wins
        for value, bound, op, unit in (
            (n_words, self.min_words, "<", "words"),
            (n_chars, self.min_chars, "<", "chars"),
            (n_words, self.max_words, ">", "words"),
            (n_chars, self.max_chars, ">", "chars"),
        ):
            if bound is None:
                continue
            failed = value < bound if op == "<" else value > bound
            key = ("min_" if op == "<" else "max_") + unit
            detail = value.cast(pl.String) + pl.lit(f" {unit} {op} {key} {bound}")
            checks.append((failed, "too_short" if op == "<" else "too_long", detail))
        if not checks:
            return Split(kept=batch, rejected=batch.clear())

        reason = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
        detail = pl.when(checks[0][0]).then(checks[0][2])
        for failed, r, d in checks[1:]:
            reason = reason.when(failed).then(pl.lit(r))
            detail = detail.when(failed).then(d)
        marked = batch.with_columns(reason.otherwise(None).alias("_reason"), detail.otherwise(None).alias("_detail"))
        bad = pl.col("_reason").is_not_null()
        kept = marked.filter(~bad).drop("_reason", "_detail")
        rejected = with_reason(marked.filter(bad), self.name, pl.col("_reason"), pl.col("_detail")).drop(
            "_reason", "_detail"
        )
        return Split(kept=kept, rejected=rejected)


# Gopher (Rae et al. 2021) stop words: a real English document uses at least two of them.
_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
_BOILERPLATE = r"(?i)lorem ipsum|all rights reserved|terms of (?:use|service)|privacy policy|cookie(?:s| policy)|click here|subscribe now|javascript is disabled"


@stage("quality.heuristics")
class Heuristics(Stage):
    """Gopher / C4 / FineWeb-style document filters, each with a score column and a named reason.

    Scores (columns ``q_*``): word count, mean word length, symbol-to-word
    ratio (# and ...), share of lines starting with a bullet, share of lines
    ending in an ellipsis, share of words with a letter, stop words present,
    share of duplicated lines, share of characters in the most repeated
    word 2-gram, share of boilerplate lines (lorem ipsum, cookie notices).
    A record fails the first check it does not pass; the reason names the
    check (``too_few_words``, ``mean_word_length``, ``symbol_ratio``,
    ``bullet_lines``, ``ellipsis_lines``, ``alpha_words``, ``no_stop_words``,
    ``duplicate_lines``, ``repeated_ngrams``, ``boilerplate``). Defaults are
    Gopher's; set a bound to null to skip that check.
    """

    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3.0
    max_mean_word_length: float | None = 10.0
    max_symbol_ratio: float | None = 0.1
    """Hashes and ellipses per word."""
    max_bullet_lines: float | None = 0.9
    max_ellipsis_lines: float | None = 0.3
    min_alpha_words: float | None = 0.8
    """Share of words containing at least one letter."""
    min_stop_words: int | None = 2
    max_duplicate_lines: float | None = 0.3
    max_top_2gram: float | None = 0.2
    """Share of characters covered by the most frequent word 2-gram."""
    max_boilerplate_lines: float | None = 0.5

    # (reason, score column, bound field, kind): a record fails the first check it does not pass
    _CHECKS = (
        ("too_few_words", "q_words", "min_words", "min"),
        ("too_many_words", "q_words", "max_words", "max"),
        ("mean_word_length", "q_mean_word_length", "min_mean_word_length", "min"),
        ("mean_word_length", "q_mean_word_length", "max_mean_word_length", "max"),
        ("symbol_ratio", "q_symbol_ratio", "max_symbol_ratio", "max"),
        ("bullet_lines", "q_bullet_lines", "max_bullet_lines", "max"),
        ("ellipsis_lines", "q_ellipsis_lines", "max_ellipsis_lines", "max"),
        ("alpha_words", "q_alpha_words", "min_alpha_words", "min"),
        ("no_stop_words", "q_stop_words", "min_stop_words", "min"),
        ("duplicate_lines", "q_duplicate_lines", "max_duplicate_lines", "max"),
        ("repeated_ngrams", "q_top_2gram", "max_top_2gram", "max"),
        ("boilerplate", "q_boilerplate_lines", "max_boilerplate_lines", "max"),
    )
    numeric_columns = tuple(dict.fromkeys(column for _, column, _, _ in _CHECKS))

    def process(self, batch: pl.DataFrame) -> Split:
        scored = batch.with_columns(**self.scores(batch["text"]))
        checks = []
        for reason, column, bound_name, kind in self._CHECKS:
            bound = getattr(self, bound_name)
            if bound is not None:
                checks.append((reason, pl.col(column) < bound if kind == "min" else pl.col(column) > bound))
        return _first_failure(self.name, scored, checks)

    @staticmethod
    def scores(text: pl.Series) -> dict[str, pl.Series]:
        words = text.str.extract_all(r"\S+")
        n_words = words.list.len()
        lines = (
            text.str.split("\n")
            .list.eval(pl.element().str.strip_chars())
            .list.eval(pl.element().filter(pl.element() != ""))
        )
        n_lines = lines.list.len().clip(lower_bound=1)
        lowered = words.list.eval(pl.element().str.to_lowercase().str.strip_chars(".,;:!?\"'()"))
        bigrams = lowered.list.eval(pl.concat_str([pl.element(), pl.element().shift(-1)], separator=" ").drop_nulls())
        top = (
            bigrams.list.eval(pl.element().value_counts(sort=True).struct.field("count").first())
            .list.first()
            .fill_null(0)
        )
        frame = pl.DataFrame({"t": text, "w": words, "l": lines, "low": lowered})
        return {
            "q_words": n_words,
            "q_mean_word_length": frame.select(pl.col("w").list.eval(pl.element().str.len_chars()).list.mean())
            .to_series()
            .fill_null(0.0),
            "q_symbol_ratio": (text.str.count_matches("#") + text.str.count_matches(r"\.\.\.|…"))
            / n_words.clip(lower_bound=1),
            "q_bullet_lines": frame.select(
                pl.col("l").list.eval(pl.element().str.contains(r"^[•●▪‣◦\-\*–]").cast(pl.Float64)).list.mean()
            )
            .to_series()
            .fill_null(0.0),
            "q_ellipsis_lines": frame.select(
                pl.col("l").list.eval(pl.element().str.contains(r"(?:\.\.\.|…)$").cast(pl.Float64)).list.mean()
            )
            .to_series()
            .fill_null(0.0),
            "q_alpha_words": frame.select(
                pl.col("w").list.eval(pl.element().str.contains(r"\p{L}").cast(pl.Float64)).list.mean()
            )
            .to_series()
            .fill_null(0.0),
            "q_stop_words": frame.select(
                pl.col("low").list.eval(pl.element().filter(pl.element().is_in(_STOP_WORDS)).unique()).list.len()
            ).to_series(),
            "q_duplicate_lines": 1 - frame.select(pl.col("l").list.n_unique()).to_series() / n_lines,
            "q_top_2gram": (
                top
                * 2
                * frame.select(pl.col("w").list.eval(pl.element().str.len_chars()).list.mean())
                .to_series()
                .fill_null(0.0)
            )
            / text.str.len_chars().clip(lower_bound=1),
            "q_boilerplate_lines": frame.select(
                pl.col("l").list.eval(pl.element().str.contains(_BOILERPLATE).cast(pl.Float64)).list.mean()
            )
            .to_series()
            .fill_null(0.0),
        }


def _outside(value: pl.Expr, lo: float | None, hi: float | None) -> pl.Expr | None:
    if lo is None and hi is None:
        return None
    cond = pl.lit(False)
    if lo is not None:
        cond = cond | (value < lo)
    if hi is not None:
        cond = cond | (value > hi)
    return cond


def _first_failure(stage_name: str, scored: pl.DataFrame, checks: list[tuple[str, pl.Expr]]) -> Split:
    """Keep rows that pass every check; a failing row's reason is the first check it fails."""
    if not checks:
        return Split(kept=scored, rejected=scored.clear())
    reason = pl.when(checks[0][1]).then(pl.lit(checks[0][0]))
    for name, cond in checks[1:]:
        reason = reason.when(cond).then(pl.lit(name))
    marked = scored.with_columns(reason.otherwise(None).alias("_reason"))
    bad = pl.col("_reason").is_not_null()
    kept = marked.filter(~bad).drop("_reason")
    rejected = with_reason(marked.filter(bad), stage_name, pl.col("_reason")).drop("_reason")
    return Split(kept=kept, rejected=rejected)


# Languages the detector chooses between by default: loading all 75 costs about 1 GB.
DEFAULT_LANGUAGES = ["english", "german", "french", "spanish", "italian", "portuguese", "dutch", "polish", "swedish",
                     "russian", "arabic", "chinese", "japanese", "korean", "turkish"]  # fmt: skip


@stage("quality.language")
class LanguageId(Stage):
    """Identify each record's language offline (lingua) and keep the allowed ones.

    Adds ``lang`` (ISO 639-1 code, e.g. ``en``) and ``lang_confidence``.
    Rejects ``language`` (not in ``allowed``) and ``low_confidence``.
    """

    version = (
        "3"  # 2: lingua's low-accuracy models by default (accuracy: high is version 1's); 3: confidence to 6 places
    )
    preload = ("lingua",)
    numeric_columns = ("lang_confidence",)
    # lingua detects on every core itself (compute_..._in_parallel), and its models load in each
    # process that detects (up to 3 s and 435 MB with accuracy: high): once, in the main process
    own_threads = True

    allowed: list[str] = ["en"]
    """ISO 639-1 codes to keep; empty keeps every language (and only labels)."""
    candidates: list[str] = DEFAULT_LANGUAGES
    """Languages the detector chooses between (lingua names: english, german, ...)."""
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    """Records whose top language scores below this are rejected as low_confidence."""
    accuracy: Literal["low", "high"] = "low"
    """lingua's models: `low` (trigrams: 0.15 s and 84 MB to load) or `high` (1- to 5-grams: 3.3 s
    and 435 MB, per process). On outside English text, low kept as many records or more (whole
    paragraphs of OS documentation 0.965 vs 0.958, WNUT-17 tweets 0.945 vs 0.917, at confidence
    0.5) and chose the same language for every demo record and every Spanish MEDDOCAN note."""

    @model_validator(mode="after")
    def _known(self) -> LanguageId:
        from lingua import Language

        names = {lang.name.lower() for lang in Language.all()}
        for name in self.candidates:
            if name.lower() not in names:
                raise ValueError(f"unknown language '{name}' in candidates.{did_you_mean(name.lower(), names)}")
        return self

    def setup(self) -> None:
        _detector(tuple(sorted(self.candidates)), self.accuracy)

    def process(self, batch: pl.DataFrame) -> Split:
        detector = _detector(tuple(sorted(self.candidates)), self.accuracy)
        texts = batch["text"].to_list()
        confidences = detector.compute_language_confidence_values_in_parallel(texts)
        langs, confs = [], []
        for values in confidences:
            top = values[0] if values else None
            langs.append(top.language.iso_code_639_1.name.lower() if top else None)
            # to 6 places: lingua's last bits differ between processes (summation order), and a
            # run must write the same bytes wherever its tasks ran
            confs.append(round(float(top.value), 6) if top else 0.0)
        scored = batch.with_columns(pl.Series("lang", langs, dtype=pl.String), pl.Series("lang_confidence", confs))
        # an unsure detection says so, rather than naming a language it is not sure of
        checks = [("low_confidence", pl.col("lang_confidence") < self.min_confidence)]
        if self.allowed:
            checks.append(("language", ~pl.col("lang").is_in(self.allowed) | pl.col("lang").is_null()))
        split = _first_failure(self.name, scored, checks)
        if len(split.rejected):
            split.rejected = split.rejected.with_columns(
                (
                    pl.lit("detected ")
                    + pl.col("lang").fill_null("?")
                    + pl.lit(" (confidence ")
                    + pl.col("lang_confidence").round(2).cast(pl.String)
                    + pl.lit(")")
                ).alias("detail")  # fmt: skip
            )
        return split


@functools.lru_cache(maxsize=4)
def _detector(candidates: tuple[str, ...], accuracy: str = "low"):
    from lingua import Language, LanguageDetectorBuilder

    langs = [getattr(Language, c.upper()) for c in candidates]
    builder = LanguageDetectorBuilder.from_languages(*langs)
    if accuracy == "low":
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


_REFUSAL = r"(?i)\b(?:as an ai(?: language)? model|i(?:'m| am) (?:sorry|unable)|i cannot (?:help|assist|provide)|i can(?:'|no)t (?:help|assist) with)"


@stage("quality.instruction")
class InstructionChecks(Stage):
    """Checks for instruction records (after format.instruction): empty, copied, truncated, refusing, odd lengths.

    Scores: ``q_output_words``, ``q_copy_ratio`` (share of the output's words
    found in order in the input), ``q_length_ratio`` (output / input words).
    Reasons: ``empty_output``, ``copies_input``, ``truncated_output`` (ends
    without closing punctuation after a long answer), ``refusal``,
    ``length_ratio``.
    """

    max_copy_ratio: float | None = 0.9
    min_length_ratio: float | None = None
    max_length_ratio: float | None = None
    check_truncation: bool = True
    check_refusals: bool = True

    def process(self, batch: pl.DataFrame) -> Split:
        missing = [c for c in ("instruction", "output") if c not in batch.columns]
        if missing:
            return Split(
                kept=batch.clear(),
                rejected=with_reason(
                    batch, self.name, "missing_field", f"no {missing} column: run format.instruction first"
                ),
            )
        inputs = batch["input"] if "input" in batch.columns else pl.Series([""] * len(batch), dtype=pl.String)
        outputs = batch["output"]
        copy = [_copy_ratio(i or "", o or "") for i, o in zip(inputs, outputs)]
        scored = batch.with_columns(
            outputs.str.count_matches(r"\S+").alias("q_output_words"),
            pl.Series("q_copy_ratio", copy),
            (outputs.str.count_matches(r"\S+") / inputs.str.count_matches(r"\S+").clip(lower_bound=1)).alias(
                "q_length_ratio"
            ),
        )
        checks = [("empty_output", pl.col("output").str.strip_chars() == "")]
        if self.max_copy_ratio is not None:
            checks.append(("copies_input", pl.col("q_copy_ratio") > self.max_copy_ratio))
        if self.check_truncation:
            checks.append(
                (
                    "truncated_output",
                    (pl.col("q_output_words") >= 20)
                    & ~pl.col("output").str.strip_chars().str.contains(r"[.!?…:;)\]\"'”’`]$"),
                )
            )
        if self.check_refusals:
            checks.append(("refusal", pl.col("output").str.contains(_REFUSAL)))
        ratio = _outside(pl.col("q_length_ratio"), self.min_length_ratio, self.max_length_ratio)
        if ratio is not None:
            checks.append(
                (
                    "length_ratio",
                    ratio & (pl.col("input").str.strip_chars() != "") if "input" in batch.columns else ratio,
                )
            )
        return _first_failure(self.name, scored, checks)


def _copy_ratio(source: str, output: str) -> float:
    import difflib

    a, b = source.lower().split(), output.lower().split()
    if not b or not a:
        return 0.0
    matched = sum(block.size for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks())
    return matched / len(b)
