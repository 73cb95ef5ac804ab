"""Formatting stages: turn curated text into training records."""

from __future__ import annotations

import json
import re
from typing import Literal

import polars as pl

from curate.records import with_reason
from curate.registry import Split, Stage, stage


@stage("format.style_pairs")
class StylePairs(Stage):
    """Original -> rewritten style pairs and DPO preference records, from rewrite.lexicon output.

    Only records whose text actually changed become pairs; the others are
    rejected as ``unchanged`` (records without an ``original`` column, i.e.
    no rewrite stage with keep_original before this one, as ``no_original``).
    Adds ``rewritten``, ``rule_ids`` and, for preferences, ``prompt`` (the
    instruction and the original), ``chosen`` (rewritten) and ``rejected``
    (original).
    """

    kind: Literal["pairs", "preference", "both"] = "both"
    """pairs: {original, rewritten, rule_ids}; preference: {prompt, chosen, rejected}; or both."""
    instruction: str = "Rewrite the following text in gender-neutral language."
    """The instruction that opens each preference prompt."""

    def process(self, batch: pl.DataFrame) -> Split:
        if "original" not in batch.columns:
            rejected = with_reason(
                batch, self.name, "no_original", "no `original` column: run rewrite.lexicon (keep_original) first"
            )
            return Split(kept=batch.clear(), rejected=rejected)
        changed = pl.col("original") != pl.col("text")
        rule_ids = (
            pl.col("rewrites").list.eval(pl.element().struct.field("rule")).list.unique(maintain_order=True)
            if "rewrites" in batch.columns
            else pl.lit([], dtype=pl.List(pl.String))
        )
        out = batch.filter(changed).with_columns(pl.col("text").alias("rewritten"), rule_ids.alias("rule_ids"))
        if self.kind in ("preference", "both"):
            out = out.with_columns(
                (pl.lit(self.instruction + "\n\n") + pl.col("original")).alias("prompt"),
                pl.col("rewritten").alias("chosen"),
                pl.col("original").alias("rejected"),
            )
        if self.kind == "preference":
            out = out.drop("rewritten", "rule_ids")
        rejected = with_reason(batch.filter(~changed), self.name, "unchanged", "the rewrite changed nothing")
        return Split(kept=out, rejected=rejected)


# ---------------------------------------------------------------------------
# Templates over record fields

_FIELD = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def _field_values(batch: pl.DataFrame, name: str) -> pl.Series:
    """A column, or a key of the JSON `meta` column (`meta.summary` or a bare key found only in meta)."""
    key = name.removeprefix("meta.")
    if not name.startswith("meta.") and name in batch.columns:
        return batch[name]
    values = [json.loads(m or "{}").get(key) for m in batch["meta"]] if "meta" in batch.columns else [None] * len(batch)
    return pl.Series(name, values, dtype=pl.Object)


def render(batch: pl.DataFrame, template: str) -> tuple[list[str | None], list[str | None]]:
    """Fill ``template`` for every row: (values, problems). A row with a missing or
    non-string field gets None and a problem such as "field 'summary' is missing"."""
    fields = _FIELD.findall(template)
    columns = {f: _field_values(batch, f).to_list() for f in dict.fromkeys(fields)}
    values: list[str | None] = []
    problems: list[str | None] = []
    for i in range(len(batch)):
        row, problem = {}, None
        for f, col in columns.items():
            v = col[i]
            if v is None:
                problem = problem or f"field '{f}' is missing"
            elif not isinstance(v, str):
                problem = problem or f"field '{f}' is {type(v).__name__}, expected string"
            row[f] = v
        if problem:
            values.append(None)
            problems.append(problem)
        else:
            values.append(_FIELD.sub(lambda m, row=row: row[m.group(1)], template))
            problems.append(None)
    return values, problems


def _split_on_problems(stage: Stage, batch: pl.DataFrame, built: dict[str, list], problems: list[str | None]) -> Split:
    out = batch.with_columns(*(pl.Series(k, v) for k, v in built.items()))
    bad = pl.Series([p is not None for p in problems], dtype=pl.Boolean)
    reason = [("wrong_type" if p and "expected" in p else "missing_field") if p else None for p in problems]
    rejected = out.filter(bad).with_columns(
        pl.lit(stage.name).alias("stage"),
        pl.Series("reason", reason, dtype=pl.String).filter(bad),
        pl.Series("detail", problems, dtype=pl.String).filter(bad),
    )
    return Split(kept=out.filter(~bad), rejected=rejected)


@stage("format.instruction")
class InstructionFormat(Stage):
    """Instruction / input / output records (Alpaca style), from columns or templates.

    Each of ``instruction``, ``input`` and ``output`` is a template: text with
    ``{field}`` placeholders naming a column (``{text}``) or a key of the
    record's meta (``{meta.summary}`` or ``{summary}``). A fixed instruction
    needs no placeholder ("Summarise this clinical note."). An empty
    ``input`` is the usual no-input case: the record's input is "". Records
    whose fields are missing or not strings are rejected (``missing_field``,
    ``wrong_type``).
    """

    instruction: str
    """Template for the instruction, e.g. "Summarise this clinical note." or "{question}"."""
    input: str = ""
    """Template for the input (context); "" for instruction-only records."""
    output: str = "{text}"
    """Template for the expected output."""

    def process(self, batch: pl.DataFrame) -> Split:
        built, problems = {}, [None] * len(batch)
        for key in ("instruction", "input", "output"):
            values, probs = render(batch, getattr(self, key))
            built[key] = [v if v is not None else "" for v in values]
            problems = [a or (f"{key}: {b}" if b else None) for a, b in zip(problems, probs)]
        empty = [not (i or "").strip() or not (o or "").strip() for i, o in zip(built["instruction"], built["output"])]
        problems = [p or ("empty instruction or output" if e else None) for p, e in zip(problems, empty)]
        return _split_on_problems(self, batch, built, problems)


ROLE_ALIASES = {
    "system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
}  # fmt: skip


@stage("format.chat")
class ChatFormat(Stage):
    """Chat records: a `messages` list as TRL, axolotl and LLaMA-Factory read it.

    Reads an existing conversation from ``messages_field`` (a column or meta
    key) in OpenAI style ({role, content}) or ShareGPT style ({from, value};
    human/gpt/system), or builds one from instruction/input/output columns
    (e.g. after format.instruction) with an optional ``system`` prompt.
    Validates roles (system first if present, then user/assistant
    alternating, ending with the assistant) and writes ``messages`` in
    ``style`` openai or sharegpt. Rejects: ``unknown_role``,
    ``bad_alternation``, ``empty_message``, ``missing_field``.
    """

    messages_field: str | None = None
    """Column or meta key holding a conversation; default: build from instruction/input/output."""
    system: str | None = None
    """System prompt to put first when building from instruction records."""
    style: Literal["openai", "sharegpt"] = "openai"
    """How to write messages: {role, content} or {from, value}."""

    def process(self, batch: pl.DataFrame) -> Split:
        convs: list[list[dict] | None] = []
        problems: list[tuple[str, str] | None] = []
        if self.messages_field:
            raw = _field_values(batch, self.messages_field).to_list()
        else:
            missing = [c for c in ("instruction", "output") if c not in batch.columns]
            if missing:
                raw = [None] * len(batch)
            else:
                inputs = batch["input"].to_list() if "input" in batch.columns else [""] * len(batch)
                raw = [
                    ([{"role": "system", "content": self.system}] if self.system else [])
                    + [
                        {"role": "user", "content": ins + ("\n\n" + inp if inp else "")},
                        {"role": "assistant", "content": out},
                    ]
                    for ins, inp, out in zip(batch["instruction"], inputs, batch["output"])
                ]
        for conv in raw:
            msgs, problem = self._normalise(conv)
            convs.append(msgs)
            problems.append(problem)
        written = [self._write(m) if m else [] for m in convs]
        keys = ("role", "content") if self.style == "openai" else ("from", "value")
        dtype = pl.List(pl.Struct({k: pl.String for k in keys}))
        out = batch.with_columns(pl.Series("messages", written, dtype=dtype))
        bad = pl.Series([p is not None for p in problems], dtype=pl.Boolean)
        rejected = out.filter(bad).with_columns(
            pl.lit(self.name).alias("stage"),
            pl.Series("reason", [p[0] if p else None for p in problems], dtype=pl.String).filter(bad),
            pl.Series("detail", [p[1] if p else None for p in problems], dtype=pl.String).filter(bad),
        )
        return Split(kept=out.filter(~bad), rejected=rejected)

    def _normalise(self, conv: object) -> tuple[list[dict] | None, tuple[str, str] | None]:
        if isinstance(conv, str):
            try:
                conv = json.loads(conv)
            except json.JSONDecodeError:
                return None, ("missing_field", "messages is not a JSON list")
        if not isinstance(conv, list) or not conv:
            return None, ("missing_field", f"no conversation in '{self.messages_field or 'instruction/output'}'")
        msgs = []
        for i, m in enumerate(conv):
            if not isinstance(m, dict):
                return None, ("missing_field", f"message {i} is not an object")
            role = m.get("role", m.get("from"))
            content = m.get("content", m.get("value"))
            norm = ROLE_ALIASES.get(str(role).lower()) if role is not None else None
            if norm is None:
                return None, (
                    "unknown_role",
                    f"message {i} has role {role!r}; known: {', '.join(sorted(ROLE_ALIASES))}",
                )
            if not isinstance(content, str) or not content.strip():
                return None, ("empty_message", f"message {i} ({norm}) has no text")
            msgs.append({"role": norm, "content": content})
        body = msgs[1:] if msgs[0]["role"] == "system" else msgs
        expected = ["user", "assistant"] * len(body)
        if [m["role"] for m in body] != expected[: len(body)] or not body or body[-1]["role"] != "assistant":
            roles = " -> ".join(m["role"] for m in msgs)
            return None, (
                "bad_alternation",
                f"roles {roles}: want [system], user, assistant, ... ending with assistant",
            )
        return msgs, None

    def _write(self, msgs: list[dict]) -> list[dict]:
        if self.style == "openai":
            return msgs
        back = {"system": "system", "user": "human", "assistant": "gpt"}
        return [{"from": back[m["role"]], "value": m["content"]} for m in msgs]


@stage("format.completion")
class CompletionFormat(Stage):
    """Prompt -> completion records that teach a tone or style, tagged with ``style``.

    ``prompt`` and ``completion`` are templates like format.instruction's,
    e.g. prompt "{question}", completion "{friendly_answer}", style
    "friendly-for-children". Rejects ``missing_field`` / ``wrong_type``.
    """

    prompt: str
    """Template for the prompt."""
    completion: str = "{text}"
    """Template for the completion."""
    style: str = "default"
    """Tag stored in the `style` column (e.g. friendly-for-children, formal, gender-neutral)."""

    def process(self, batch: pl.DataFrame) -> Split:
        built, problems = {}, [None] * len(batch)
        for key in ("prompt", "completion"):
            values, probs = render(batch, getattr(self, key))
            built[key] = [v if v is not None else "" for v in values]
            problems = [a or (f"{key}: {b}" if b else None) for a, b in zip(problems, probs)]
        built["style"] = [self.style] * len(batch)
        return _split_on_problems(self, batch, built, problems)
