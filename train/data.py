"""Training data: records -> prompts and completions -> masked, packed, cached token rows.

* Prompt tokens get label -100 (``completion_only_loss``); the completion and
  its end-of-turn/EOS token are trained.
* Examples longer than ``max_length`` are truncated from the end or dropped
  (counted); an example with no label tokens left is dropped (counted), and a
  batch without any label token is an error, never a silent zero loss.
* Packing puts several short examples in one row with position ids restarting
  at 0 for each, and the collator builds a block-diagonal causal mask, so no
  example attends to another (their logits equal those computed alone).
* Tokenized rows are cached by a hash of the data, the tokenizer and the
  settings that shape them: a re-run does not re-tokenize.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from curate.errors import CurateError, RecipeError

ALPACA_PROMPT = (
    "Below is an instruction that describes a task{with_input}. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"
)
ALPACA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content'] }}{{ eos_token }}\n\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


class NoLabelTokensError(CurateError):
    """A training batch has no token to learn from (all masked or truncated away)."""


def load_records(dataset: str) -> pl.DataFrame:
    """A curate run's output (its last stage's Parquet parts), a .parquet/.jsonl file, or a saved HF dataset."""
    path = Path(dataset)
    if (path / "stats.json").exists():
        from curate.pipeline import finished_output

        parts = finished_output(path)
        if not parts:
            raise RecipeError(f"dataset: run '{dataset}' has no output records")
        return pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        return pl.read_ndjson(path)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"]
        return pl.from_arrow(ds.data.table)  # type: ignore[return-value]
    raise RecipeError(f"dataset: '{dataset}' is not a curate run, a .parquet/.jsonl file or a saved HF dataset")


def field_values(df: pl.DataFrame, name: str) -> list[Any]:
    if name in df.columns:
        return df[name].to_list()
    if "meta" in df.columns:
        return [json.loads(m or "{}").get(name) if isinstance(m, str) else (m or {}).get(name) for m in df["meta"]]
    raise RecipeError(f"dataset has no column or meta key '{name}'")


def split_eval(df: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = df["id"].cast(pl.String).to_list() if "id" in df.columns else [str(i) for i in range(len(df))]
    held = pl.Series([xxhash.xxh3_64_intdigest(f"{seed}\x00{i}".encode()) / 2**64 < fraction for i in ids])
    return df.filter(~held), df.filter(held)


# ---------------------------------------------------------------------------
# Records -> (prompt, completion)


_FORMAT_COLUMNS = {
    "instruction": ["instruction", "output"],
    "chat": ["messages"],
    "completion": ["prompt", "completion"],
}


def chat_messages(raw: Any) -> list[dict[str, str]]:
    """A record's messages (a list, or its JSON) as {role, content}; ShareGPT's from/value read too."""
    msgs = json.loads(raw) if isinstance(raw, str) else raw
    return [
        {
            "role": m.get("role", {"human": "user", "gpt": "assistant"}.get(m.get("from"), m.get("from"))),
            "content": m.get("content", m.get("value")),
        }
        for m in msgs
    ]


def instruction_text(instruction: str, inp: str | None) -> str:
    """The user turn of an instruction record: the instruction, then its input after a blank line."""
    return instruction + (f"\n\n{inp}" if inp else "")


def examples(df: pl.DataFrame, fmt: str, template: str, tokenizer: Any) -> list[tuple[str, str]]:
    need = _FORMAT_COLUMNS[fmt]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RecipeError(
            f"format {fmt} needs columns {need}; the dataset lacks {missing} (it has {df.columns}). "
            f"Run the matching curate format stage first (format.instruction / format.chat / format.completion)."
        )
    out = []
    if fmt == "instruction":
        inputs = df["input"].to_list() if "input" in df.columns else [""] * len(df)
        for ins, inp, outp in zip(df["instruction"], inputs, df["output"]):
            user = instruction_text(ins, inp)
            out.append(_render(template, tokenizer, [{"role": "user", "content": user}], outp, alpaca=(ins, inp)))
    elif fmt == "chat":
        for raw in df["messages"].to_list():
            msgs = chat_messages(raw)
            if not msgs or msgs[-1]["role"] != "assistant":
                raise RecipeError("chat records must end with an assistant message (run format.chat)")
            out.append(_render(template, tokenizer, msgs[:-1], msgs[-1]["content"]))
    else:
        for p, c in zip(df["prompt"], df["completion"]):
            out.append((p, c + (tokenizer.eos_token or "")))
    return out


def _render(
    template: str, tokenizer: Any, context: list[dict], completion: str, alpaca: tuple[str, str] | None = None
) -> tuple[str, str]:
    eos = tokenizer.eos_token or ""
    if template == "chatml":
        prompt = (
            "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in context) + "<|im_start|>assistant\n"
        )
        return prompt, completion + "<|im_end|>"
    if template == "alpaca":
        instruction, inp = alpaca if alpaca else (context[-1]["content"], "")
        prompt = ALPACA_PROMPT.format(
            with_input=", paired with an input that provides further context" if inp else "",
            instruction=instruction, input_block=f"### Input:\n{inp}\n\n" if inp else "",
        )  # fmt: skip
        return prompt, completion + eos
    try:
        prompt = tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 - jinja and missing-template errors alike
        raise RecipeError(
            f"template: the tokenizer's chat template does not render ({e}); use template: chatml or alpaca"
        ) from None
    return prompt, completion + eos


def chat_template_for(template: str, tokenizer: Any) -> str | None:
    """The chat template saved with the model: the one its prompts were written in."""
    from train.tiny import CHATML

    return {"chatml": CHATML, "alpaca": ALPACA_TEMPLATE}.get(template, tokenizer.chat_template)


# ---------------------------------------------------------------------------
# Tokenizing, packing, caching


@dataclass
class TokenizedData:
    rows: list[dict[str, list[int]]]
    counts: dict[str, int] = field(default_factory=dict)
    cache_hit: bool = False

    @property
    def tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)


def tokenize(pairs: list[tuple[str, str]], tokenizer: Any, max_length: int, truncation: str = "truncate",
             completion_only_loss: bool = True, packing: bool = False, cache_dir: str | None = None) -> TokenizedData:  # fmt: skip
    key = _cache_key(pairs, tokenizer, max_length, truncation, completion_only_loss, packing)
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if path is not None and path.exists():
        cached = json.loads(path.read_text())
        return TokenizedData(cached["rows"], cached["counts"], cache_hit=True)
    counts = {"examples": len(pairs), "truncated": 0, "dropped_too_long": 0, "dropped_no_labels": 0}
    rows = [
        r
        for r in (encode(p, c, tokenizer, max_length, truncation, completion_only_loss, counts) for p, c in pairs)
        if r
    ]
    if packing:
        rows = pack(rows, max_length)
    counts["rows"] = len(rows)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"rows": rows, "counts": counts}))
    return TokenizedData(rows, counts)


def prompt_ids(prompt: str, tokenizer: Any) -> list[int]:
    """A prompt's tokens as training sees them: BOS (when the tokenizer adds one), then the text."""
    bos = (
        [tokenizer.bos_token_id]
        if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", True)
        else []
    )
    return bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]


def encode(prompt: str, completion: str, tokenizer: Any, max_length: int, truncation: str, completion_only_loss: bool,
           counts: dict[str, int]) -> dict[str, list[int]] | None:  # fmt: skip
    """One example: prompt tokens masked (-100), completion + EOS trained; None (counted) if dropped."""
    p = prompt_ids(prompt, tokenizer)
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None and (not c or c[-1] != tokenizer.eos_token_id):
        c = c + [tokenizer.eos_token_id]
    ids = p + c
    labels = ([-100] * len(p) + c) if completion_only_loss else list(ids)
    if len(ids) > max_length:
        if truncation == "drop":
            counts["dropped_too_long"] += 1
            return None
        ids, labels = ids[:max_length], labels[:max_length]
        counts["truncated"] += 1
    if all(label == -100 for label in labels):
        counts["dropped_no_labels"] += 1
        return None
    return {"input_ids": ids, "labels": labels}


def preference_examples(df: pl.DataFrame, template: str, tokenizer: Any) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) texts from preference records (format.style_pairs writes them)."""
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in df.columns]
    if missing:
        raise RecipeError(
            f"format preference needs columns prompt, chosen, rejected; the dataset lacks {missing} (run format.style_pairs)"
        )
    out = []
    for prompt, chosen, rejected in zip(df["prompt"], df["chosen"], df["rejected"]):
        p, c = _render(template, tokenizer, [{"role": "user", "content": prompt}], chosen)
        _, r = _render(template, tokenizer, [{"role": "user", "content": prompt}], rejected)
        out.append((p, c, r))
    return out


def tokenize_preferences(
    triples: list[tuple[str, str, str]], tokenizer: Any, max_length: int, truncation: str = "truncate"
) -> TokenizedData:
    counts = {"examples": len(triples), "truncated": 0, "dropped_too_long": 0, "dropped_no_labels": 0}
    rows = []
    for prompt, chosen, rejected in triples:
        c = encode(prompt, chosen, tokenizer, max_length, truncation, True, counts)
        r = encode(prompt, rejected, tokenizer, max_length, truncation, True, counts)
        if c and r:
            rows.append({"chosen": c, "rejected": r})
    counts["rows"] = len(rows)
    return TokenizedData(rows, counts)


def pack(rows: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Greedy packing in order; each row carries position_ids and seq_ids (which example a token is from)."""
    packed: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": [], "seq_ids": []}
    for r in rows:
        n = len(r["input_ids"])
        if current["input_ids"] and len(current["input_ids"]) + n > max_length:
            packed.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": [], "seq_ids": []}
        seq = (current["seq_ids"][-1] + 1) if current["seq_ids"] else 0
        current["input_ids"] += r["input_ids"]
        current["labels"] += r["labels"]
        current["position_ids"] += list(range(n))
        current["seq_ids"] += [seq] * n
    if current["input_ids"]:
        packed.append(current)
    return packed


def _cache_key(pairs, tokenizer, *settings) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [tokenizer.name_or_path, len(tokenizer), tokenizer.eos_token, tokenizer.bos_token, str(settings)]
        ).encode()
    )
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    for p, c in pairs:
        h.update(p.encode())
        h.update(b"\x00")
        h.update(c.encode())
        h.update(b"\x01")
    return h.hexdigest()[:24]


class Collator:
    """Pads a batch; packed rows get a block-diagonal causal 4D mask so examples never attend to each other."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        n = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        attn = torch.zeros((len(batch), n), dtype=torch.long)
        for i, r in enumerate(batch):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            labels[i, :k] = torch.tensor(r["labels"])
            attn[i, :k] = 1
        if not (labels != -100).any():
            raise NoLabelTokensError(
                "a training batch has no label tokens left after prompt masking and truncation: raise max_length, "
                "shorten prompts, or set completion_only_loss: false"
            )
        out: dict[str, Any] = {"input_ids": ids, "labels": labels}
        if "seq_ids" in batch[0]:
            seq = torch.full((len(batch), n), -1, dtype=torch.long)
            pos = torch.zeros((len(batch), n), dtype=torch.long)
            for i, r in enumerate(batch):
                k = len(r["seq_ids"])
                seq[i, :k] = torch.tensor(r["seq_ids"])
                pos[i, :k] = torch.tensor(r["position_ids"])
            causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
            same = (seq[:, :, None] == seq[:, None, :]) & (seq[:, :, None] >= 0)
            # padding attends to itself only: a fully masked row would give NaN, and 0 * NaN
            # would leak into real tokens in the next layer
            mask = (causal[None] & same) | torch.eye(n, dtype=torch.bool)[None]
            out["attention_mask"] = mask[:, None]
            out["position_ids"] = pos
        else:
            out["attention_mask"] = attn
        return out


# ---------------------------------------------------------------------------
# The task itself: greedy generation on held-out records


def _normalise_label(s: str) -> str:
    return " ".join(s.lower().strip().strip(".!").split())


def task_kind(references: list[str]) -> str:
    """exact_match when the outputs are a small set of short labels ("high", "normal"), else rouge_l."""
    distinct = {_normalise_label(r) for r in references}
    if references and len(distinct) <= 20 and all(len(r.split()) <= 4 for r in distinct):
        return "exact_match"
    return "rouge_l"


def generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy continuations of rendered prompts (tokenized as training saw them), up to the end of turn."""
    import torch

    ends = [t for t in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")) if isinstance(t, int)]
    ends = [t for t in ends if t != tokenizer.unk_token_id] or None
    ids_list = [prompt_ids(p, tokenizer) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (ends[0] if ends else 0)
    model.eval()
    preds: list[str] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(ids_list), batch_size):
            part = ids_list[i : i + batch_size]
            width = max(len(p) for p in part)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in part], device=device)  # left padding
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in part], device=device)
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=ends, pad_token_id=pad,
            )  # fmt: skip
            for row in out[:, width:].tolist():
                if ends:
                    row = next((row[:k] for k, t in enumerate(row) if t in ends), row)
                preds.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return preds


def generation_eval(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], kind: str, max_new_tokens: int = 128,
    batch_size: int = 16,
) -> dict[str, Any] | None:  # fmt: skip
    """Score greedy generations against the references: exact match or ROUGE-L F (rouge-score)."""
    if not pairs:
        return None
    eos_text = [t for t in (tokenizer.eos_token, "<|im_end|>") if t]
    refs = []
    for _, completion in pairs:
        for t in eos_text:
            completion = completion.removesuffix(t)
        refs.append(completion.strip())
    longest_ref = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in refs)
    preds = generate(model, tokenizer, [p for p, _ in pairs], min(max_new_tokens, longest_ref + 8), batch_size)
    extra = {}
    if kind == "exact_match":
        hits = [_normalise_label(p) == _normalise_label(r) for p, r in zip(preds, refs)]
        score = sum(hits) / len(hits)
        # lenient, for a model that answers in a sentence ("The priority ... is low"): right when
        # the answer names exactly one of the labels and it is the reference
        labels = {_normalise_label(r) for r in refs}
        named = [{lab for lab in labels if re.search(rf"\b{re.escape(lab)}\b", _normalise_label(p))} for p in preds]
        extra["label_in_answer"] = round(sum(n == {_normalise_label(r)} for n, r in zip(named, refs)) / len(refs), 4)
    else:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        score = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / len(refs)
    return {
        "metric": kind,
        "score": round(score, 4),
        **extra,
        "records": len(refs),
        "samples": [{"reference": r[:200], "generated": p[:200]} for r, p in list(zip(refs, preds))[:3]],
    }
