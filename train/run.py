"""Run a TrainConfig: data, method, evaluation before and after, training with checkpoints, export."""

from __future__ import annotations

import functools
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from curate.errors import CurateError, RecipeError
from train.config import TrainConfig
from train.data import (
    Collator,
    chat_template_for,
    examples,
    field_values,
    generation_eval,
    load_records,
    split_eval,
    task_kind,
    tokenize,
)
from train.methods import load_model, trainable_parameters


class ForgettingError(CurateError):
    """Loss on the replay (general) set rose by more than max_forgetting."""


class _Rows:
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def evaluate_lm(model: Any, rows: list[dict], pad_id: int, batch_size: int = 16) -> dict[str, float] | None:
    """Mean loss over label tokens, and perplexity."""
    if not rows:
        return None
    import torch

    collate = Collator(pad_id)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i : i + batch_size])
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            if logits.shape[1] != labels.shape[1]:  # prompt tuning prepends virtual tokens
                logits = logits[:, -labels.shape[1] :]
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != -100).sum())
    loss = total / max(count, 1)
    return {"loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3), "tokens": count}


def resolve(cfg: TrainConfig, log: Any = print) -> tuple[TrainConfig, dict[str, Any]]:
    """The config with its model resolved to a loadable path (a known name or GGUF file converted
    once), and what the model card says of the base model."""
    from train.models import provenance, resolve_model

    path = resolve_model(cfg.model, log=log)
    base = {"name": cfg.model, "path": path, "provenance": provenance(path)}
    return cfg.model_copy(update={"model": path}), base


def train(cfg: TrainConfig, dry_run: bool = False, log: Any = print) -> dict[str, Any]:

    if cfg.method == "classifier":
        return train_classifier(cfg, dry_run, log)
    cfg, base_model = resolve(cfg, log)
    if cfg.format == "preference":
        return train_preferences(cfg, dry_run, log, base_model)
    train_df, eval_df, tokenizer = _split_and_tokenizer(cfg)
    if cfg.packing and cfg.method in ("prompt", "prefix"):
        raise RecipeError(
            "packing cannot be combined with prompt or prefix tuning (virtual tokens break the per-example masks)"
        )
    cache = str(Path(cfg.cache_dir))
    train_pairs = examples(train_df, cfg.format, cfg.template, tokenizer)
    task_references = [c for _, c in train_pairs]  # before replay text joins them
    replay_rows: list[dict] = []
    replay_mixed = 0
    if cfg.replay_dataset:
        # Half the replay records (by seeded hash) measure forgetting and are never trained on; the
        # other half is what replay mixing draws from. With or without mixing the measured half is
        # the same, so the two runs compare.
        mix_df, measure_df = split_eval(load_records(cfg.replay_dataset), 0.5, cfg.seed)
        replay_pairs = replay_examples(mix_df, cfg, tokenizer)
        replay_rows = tokenize(
            replay_examples(measure_df, cfg, tokenizer), tokenizer, cfg.max_length, cfg.truncation,
            cfg.completion_only_loss, False, cache,
        ).rows  # fmt: skip
        if cfg.replay_ratio > 0 and replay_pairs:
            k = (
                int(len(train_pairs) * cfg.replay_ratio / (1 - cfg.replay_ratio))
                if cfg.replay_ratio < 1
                else len(replay_pairs)
            )
            rng = random.Random(cfg.seed)
            train_pairs = train_pairs + [replay_pairs[rng.randrange(len(replay_pairs))] for _ in range(k)]
            replay_mixed = k
    data = tokenize(
        train_pairs, tokenizer, cfg.max_length, cfg.truncation, cfg.completion_only_loss, cfg.packing, cache
    )
    eval_pairs = examples(eval_df, cfg.format, cfg.template, tokenizer)
    eval_rows = tokenize(
        eval_pairs,
        tokenizer,
        cfg.max_length,
        cfg.truncation,
        cfg.completion_only_loss,
        False,
        cache,
    ).rows
    if not data.rows:
        raise RecipeError(f"no training examples left after tokenizing ({data.counts})")
    log(f"data: {data.counts} ({'cache hit' if data.cache_hit else 'tokenized'}), {data.tokens:,} tokens per epoch")

    model = load_model(cfg, tokenizer)
    trainable, total = trainable_parameters(model)
    plan = {
        "method": cfg.method,
        "format": cfg.format,
        "base_model": base_model,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_examples": data.counts.get("examples"),
        "replay_examples_mixed": replay_mixed,
        "train_rows": len(data.rows),
        "tokens_per_epoch": data.tokens,
        "data_counts": data.counts,
        "cache_hit": data.cache_hit,
        "memory_estimate_mb": _memory_estimate(cfg, trainable, total),
    }
    if dry_run:
        return {"dry_run": True, **plan}

    task_pairs = eval_pairs[: cfg.task_eval_max]
    kind = task_kind(task_references + [c for _, c in eval_pairs])

    task = functools.partial(generation_eval, model, tokenizer, task_pairs, kind, cfg.max_new_tokens)  # None if empty

    style = _style_measure(cfg, model, tokenizer, eval_df, log)
    before = {
        "held_out": evaluate_lm(model, eval_rows, tokenizer.pad_token_id),
        "replay": evaluate_lm(model, replay_rows, tokenizer.pad_token_id),
        "task": task(),
        "style": style("before"),
    }
    if before["task"]:
        log(
            f"task before training: {kind} {before['task']['score']:.3f} on {before['task']['records']} held-out records"
        )
    trainer = _trainer(cfg, model, data.rows, Collator(tokenizer.pad_token_id))
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(cfg.output_dir)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    after = {
        "held_out": evaluate_lm(model, eval_rows, tokenizer.pad_token_id),
        "replay": evaluate_lm(model, replay_rows, tokenizer.pad_token_id),
        "task": task(),
        "style": style("after"),
    }
    if after["task"]:
        log(f"task after training: {kind} {after['task']['score']:.3f}")
    report = {
        **plan,
        "resumed_from": last,
        "train_loss": round(result.training_loss, 4),
        "steps": result.global_step,
        "train_seconds": round(seconds, 2),
        "processes": trainer.args.world_size,
        "loss_curve": [[h["step"], round(h["loss"], 4)] for h in trainer.state.log_history if "loss" in h],
        "train_tokens_per_s": round(
            data.tokens
            * result.global_step
            / max(1, len(data.rows))
            * cfg.per_device_train_batch_size
            * cfg.gradient_accumulation_steps
            / max(seconds, 1e-9),
            1,
        ),
        "before": before,
        "after": after,
        "forgetting": _relative(before["replay"], after["replay"]),
        "held_out_change": _relative(before["held_out"], after["held_out"]),
    }
    from train.export import export

    if trainer.is_world_process_zero():  # under `accelerate launch` one process writes the model
        report["export"] = export(cfg, model, tokenizer, report, chat_template_for(cfg.template, tokenizer))
        (out / "train_results.json").write_text(json.dumps(report, indent=2, default=str))
    if (
        cfg.max_forgetting is not None
        and report["forgetting"] is not None
        and report["forgetting"] > cfg.max_forgetting
    ):
        raise ForgettingError(
            f"replay-set loss rose by {report['forgetting']:.1%} > max_forgetting {cfg.max_forgetting:.1%}"
        )
    return report


def _style_measure(cfg: TrainConfig, model: Any, tokenizer: Any, eval_df: Any, log: Any) -> Any:
    """style(when) -> the style_eval of the model now on the held-out prompts (None when not asked)."""
    from train.data import _render
    from train.style import prompt_contexts, style_eval

    contexts = prompt_contexts(eval_df, cfg.format) if cfg.style_eval else []

    def render(context: list[dict]) -> str:  # as training wrote the prompts: completion prompts are raw text
        return (
            context[-1]["content"] if cfg.format == "completion" else _render(cfg.template, tokenizer, context, "")[0]
        )

    def measure(when: str) -> dict | None:
        if not cfg.style_eval or not contexts:
            return None
        result = style_eval(model, tokenizer, contexts, render, cfg.style_eval)
        cf = result.get("counterfactual") or {}
        log(
            f"style {when} training: {result['gendered_per_100_words']} gendered terms per 100 words generated "
            f"({result['with_gendered_terms']:.0%} of {result['generations']} answers)"
            + (f", counterfactual pairs identical {cf['identical']:.0%}" if cf else "")
        )
        return result

    return measure


def replay_examples(df: Any, cfg: TrainConfig, tokenizer: Any) -> list[tuple[str, str]]:
    """Replay records in the training format, or plain general text (a `text` column only): then
    every token is trained and scored, as in pre-training (the forgetting check's perplexity)."""
    from train.data import _FORMAT_COLUMNS

    if all(c in df.columns for c in _FORMAT_COLUMNS.get(cfg.format, ())) or "text" not in df.columns:
        return examples(df, cfg.format, cfg.template, tokenizer)
    return [("", t + (tokenizer.eos_token or "")) for t in df["text"].to_list() if t]


def _split_and_tokenizer(cfg: TrainConfig) -> tuple[Any, Any, Any]:
    """Records split into train / held-out by seeded hash, and the tokenizer (with a pad token)."""
    from transformers import AutoTokenizer

    records = load_records(cfg.dataset)
    if not len(records):
        raise RecipeError(f"dataset '{cfg.dataset}' is empty")
    train_df, eval_df = split_eval(records, cfg.eval_fraction, cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return train_df, eval_df, tokenizer


def _training_args(cfg: TrainConfig, **overrides: Any) -> Any:
    """TrainingArguments from the config, the same for every method and format."""
    import torch
    from transformers import TrainingArguments

    from train.methods import _dtype

    dtype = _dtype(cfg)
    args = dict(
        output_dir=cfg.output_dir, learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler_type,
        num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
        data_seed=cfg.seed, save_steps=cfg.save_steps, logging_steps=cfg.logging_steps, report_to=[],
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, remove_unused_columns=False, save_total_limit=2,
        disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    return TrainingArguments(**{**args, **overrides})


def _trainer(cfg: TrainConfig, model: Any, rows: list[dict], collator: Any) -> Any:
    from transformers import Trainer

    return Trainer(model=model, args=_training_args(cfg), train_dataset=_Rows(rows), data_collator=collator)


def _relative(before: dict | None, after: dict | None) -> float | None:
    if not before or not after or not before["loss"]:
        return None
    return round((after["loss"] - before["loss"]) / before["loss"], 4)


def _memory_estimate(cfg: TrainConfig, trainable: int, total: int) -> float:
    """Weights + gradients + Adam states, per device, in MB (activations excluded)."""
    bytes_per = 2 if cfg.precision in ("bf16", "fp16") else 4
    weights = total * (0.5 if cfg.method == "qlora" else bytes_per)
    return round((weights + trainable * (bytes_per + 8)) / 2**20, 1)


# ---------------------------------------------------------------------------
# Sequence classification (e.g. the offline MiniLM encoder)


def train_classifier(cfg: TrainConfig, dry_run: bool = False, log: Any = print) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import AutoTokenizer, Trainer

    from curate.embed import minilm_path

    if cfg.model == "minilm":
        cfg = cfg.model_copy(update={"model": minilm_path()})
    records = load_records(cfg.dataset)
    train_df, eval_df = split_eval(records, cfg.eval_fraction, cfg.seed)
    labels_all = sorted({str(v) for v in field_values(records, cfg.label_field) if v is not None})
    if len(labels_all) < 2:
        raise RecipeError(f"label_field '{cfg.label_field}' has fewer than 2 distinct labels")
    index = {label: i for i, label in enumerate(labels_all)}
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)

    def rows(df):
        enc = tokenizer(df["text"].to_list(), truncation=True, max_length=cfg.max_length)
        ys = [index.get(str(v), -1) for v in field_values(df, cfg.label_field)]
        return [
            {"input_ids": i, "attention_mask": a, "labels": y}
            for i, a, y in zip(enc["input_ids"], enc["attention_mask"], ys)
            if y >= 0
        ]

    train_rows, eval_rows = rows(train_df), rows(eval_df)
    model = load_model(cfg, tokenizer, num_labels=len(labels_all))
    trainable, total = trainable_parameters(model)
    plan = {"method": "classifier", "labels": labels_all, "train_examples": len(train_rows), "eval_examples": len(eval_rows),
            "trainable_parameters": trainable, "total_parameters": total}  # fmt: skip
    if dry_run:
        return {"dry_run": True, **plan}

    def collate(batch):
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.tensor([b["input_ids"] + [tokenizer.pad_token_id] * (n - len(b["input_ids"])) for b in batch])
        mask = torch.tensor([b["attention_mask"] + [0] * (n - len(b["attention_mask"])) for b in batch])
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([b["labels"] for b in batch])}

    def accuracy() -> dict[str, float]:
        model.eval()
        preds, gold = [], []
        with torch.no_grad():
            for i in range(0, len(eval_rows), 64):
                batch = collate(eval_rows[i : i + 64])
                gold += batch.pop("labels").tolist()
                preds += model(**batch).logits.argmax(-1).tolist()
        preds, gold = np.array(preds), np.array(gold)
        f1s = []
        for c in range(len(labels_all)):
            tp = int(((preds == c) & (gold == c)).sum())
            fp = int(((preds == c) & (gold != c)).sum())
            fn = int(((preds != c) & (gold == c)).sum())
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return {"accuracy": round(float((preds == gold).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4)}

    before = accuracy()
    args = _training_args(cfg, save_strategy="no")  # the classifier is saved once, at the end
    result = Trainer(model=model, args=args, train_dataset=_Rows(train_rows), data_collator=collate).train()
    after = accuracy()
    report = {
        **plan,
        "train_loss": round(result.training_loss, 4),
        "steps": result.global_step,
        "before": before,
        "after": after,
    }
    out = Path(cfg.output_dir)
    model.config.id2label = dict(enumerate(labels_all))
    model.config.label2id = index
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "train_results.json").write_text(json.dumps(report, indent=2))
    log(
        f"classifier: held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}, macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f}"
    )
    return report


# ---------------------------------------------------------------------------
# Preferences (DPO)


def train_preferences(
    cfg: TrainConfig, dry_run: bool = False, log: Any = print, base_model: dict | None = None
) -> dict[str, Any]:

    from train.data import preference_examples, tokenize_preferences
    from train.dpo import PreferenceCollator, dpo_trainer_class, evaluate_preferences

    train_df, eval_df, tokenizer = _split_and_tokenizer(cfg)
    data = tokenize_preferences(
        preference_examples(train_df, cfg.template, tokenizer), tokenizer, cfg.max_length, cfg.truncation
    )
    eval_triples = preference_examples(eval_df, cfg.template, tokenizer)
    eval_rows = tokenize_preferences(eval_triples, tokenizer, cfg.max_length, cfg.truncation).rows
    if not data.rows:
        raise RecipeError(f"no preference pairs left after tokenizing ({data.counts})")
    model = load_model(cfg, tokenizer)
    trainable, total = trainable_parameters(model)
    plan = {"method": cfg.method, "format": "preference", "base_model": base_model, "trainable_parameters": trainable, "total_parameters": total,
            "train_pairs": len(data.rows), "data_counts": data.counts, "memory_estimate_mb": _memory_estimate(cfg, trainable, total)}  # fmt: skip
    if dry_run:
        return {"dry_run": True, **plan}
    before = evaluate_preferences(model, eval_rows, tokenizer.pad_token_id)
    # the chosen answers as the task's references: does DPO keep (or improve) what the model writes?
    task_pairs = [(p, c) for p, c, _ in eval_triples[: cfg.task_eval_max]]
    kind = task_kind([c for _, c in task_pairs])

    task = functools.partial(generation_eval, model, tokenizer, task_pairs, kind, cfg.max_new_tokens)  # None if empty

    task_before = task()
    style = _style_measure(cfg, model, tokenizer, eval_df, log)
    style_before = style("before")

    args = _training_args(cfg)
    trainer = dpo_trainer_class()(
        model=model,
        args=args,
        train_dataset=_Rows(data.rows),
        data_collator=PreferenceCollator(tokenizer.pad_token_id),
        beta=cfg.beta,
    )
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    after = evaluate_preferences(model, eval_rows, tokenizer.pad_token_id)
    report = {**plan, "train_loss": round(result.training_loss, 4), "steps": result.global_step,
              "train_seconds": round(seconds, 2), "processes": trainer.args.world_size,
              "loss_curve": [[h["step"], round(h["loss"], 4)] for h in trainer.state.log_history if "loss" in h],
              "before": {"held_out": None, "replay": None, "preferences": before, "task": task_before, "style": style_before},
              "after": {"held_out": None, "replay": None, "preferences": after, "task": task(), "style": style("after")},
              "forgetting": None}  # fmt: skip
    from train.export import export

    if trainer.is_world_process_zero():
        report["export"] = export(cfg, model, tokenizer, report, chat_template_for(cfg.template, tokenizer))
        (Path(cfg.output_dir) / "train_results.json").write_text(json.dumps(report, indent=2, default=str))
    if before and after:
        log(
            f"preferences: chosen over rejected on held-out pairs {before['chosen_over_rejected']:.2f} -> {after['chosen_over_rejected']:.2f}"
        )
    return report
