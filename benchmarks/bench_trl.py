"""curate's training loop against TRL's, on the same model, data, adapters and steps.

    python benchmarks/bench_trl.py                 (make bench runs it; SmolLM2 on CPU, ~10 minutes)
    python benchmarks/bench_trl.py --model tiny    (the offline tiny Llama: seconds, for a smoke run)

SFT, on the curated support-triage chat records (`pipelines/support_gdpr.yaml`'s output, rendered
with ChatML exactly as `curate train` renders them), LoRA r16 on all linear layers, the same
seed, batch and learning rate:
  * curate: transformers' Trainer + curate's completion-only masking (unpacked, and packed with
    its block-diagonal mask);
  * TRL SFTTrainer: prompt/completion records, completion_only_loss (unpacked, and packing with
    padding_free).
DPO on the gender-neutral style pairs (`pipelines/gender_neutral_style.yaml`'s output), LoRA:
  * curate: train/dpo.py's DPOTrainer (reference = the adapter switched off);
  * TRL DPOTrainer (the same reference, sigmoid loss, same beta).
Each contender runs in a fresh process: tokens (or pairs) per second, seconds, the loss curve, and the same held-out
measure afterwards (curate's evaluate_lm loss on held-out triage records; share of held-out pairs
where the chosen answer is more likely), plus this process's peak RSS growth.

Writes benchmarks/results/trl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import vm_hwm_mb, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def curate_run(work: Path, name: str) -> Path:
    """The recipe's curation only (no training), as `curate run` does it: the run directory."""
    import yaml

    if not (work / "data_samples").exists():
        shutil.copytree(REPO / "data_samples", work / "data_samples")
    recipe = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    recipe.pop("train", None)
    recipe["report"] = False
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.run([str(Path(sys.executable).parent / "curate"), "-q", "run", str(path), "--force"],
                          cwd=work, capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"curate run {name} failed:\n{proc.stderr[-3000:]}")
    return work / "runs" / name


def _cfg(model: str, dataset: Path, out: Path, fmt: str, **kw: Any) -> Any:
    from train.config import load_config

    return load_config({
        "model": model, "dataset": str(dataset), "format": fmt, "template": "chatml", "method": "lora",
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}, "learning_rate": 5e-4,
        "per_device_train_batch_size": 8, "eval_fraction": 0.15, "task_eval_max": 0, "save_steps": 100_000,
        "logging_steps": 1, "output_dir": str(out), "cache_dir": str(out / "cache"), **kw,
    })  # fmt: skip


def sft(model_path: str, run: Path, work: Path, contender: str, steps: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from train.data import Collator, examples, load_records, split_eval, tokenize
    from train.methods import load_model
    from train.run import _Rows, _training_args, evaluate_lm

    packed = contender.endswith("packed")
    # packed rows hold ~4 tickets of ~110 tokens; unpacked rows one ticket each
    cfg = _cfg(model_path, run, work / contender, "chat", max_length=512 if packed else 192, max_steps=steps,
               packing=packed)  # fmt: skip
    tok = AutoTokenizer.from_pretrained(cfg.model)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    train_df, eval_df = split_eval(load_records(cfg.dataset), cfg.eval_fraction, cfg.seed)
    pairs = examples(train_df, "chat", "chatml", tok)
    eval_rows = tokenize(examples(eval_df, "chat", "chatml", tok), tok, cfg.max_length).rows
    model = load_model(cfg, tok)
    torch.manual_seed(0)
    if contender.startswith("curate"):
        from transformers import Trainer

        data = tokenize(pairs, tok, cfg.max_length, packing=packed)
        trainer = Trainer(model=model, args=_training_args(cfg), train_dataset=_Rows(data.rows),
                          data_collator=Collator(tok.pad_token_id))  # fmt: skip
    else:
        import datasets
        from trl import SFTConfig, SFTTrainer

        ds = datasets.Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs])
        args = SFTConfig(
            output_dir=cfg.output_dir, learning_rate=cfg.learning_rate, max_steps=steps,
            per_device_train_batch_size=cfg.per_device_train_batch_size, logging_steps=1, save_strategy="no",
            report_to=[], seed=cfg.seed, data_seed=cfg.seed, max_length=cfg.max_length, completion_only_loss=True,
            packing=packed, padding_free=packed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
            dataset_kwargs={"add_special_tokens": True},
        )  # fmt: skip
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    counter = _count_tokens(trainer)
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    tokens = counter["tokens"]
    after = evaluate_lm(model, eval_rows, tok.pad_token_id)
    return {
        "steps": result.global_step,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1) if tokens else None,
        "input_tokens": tokens,
        "train_loss": round(result.training_loss, 4),
        "loss_curve": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "held_out_loss_after": after["loss"],
        "peak_rss_mb": vm_hwm_mb(),
    }


def _count_tokens(trainer: Any) -> dict[str, int]:
    """Count the tokens of every example the trainer's collator receives (padding never counts)."""
    counter = {"tokens": 0}
    collate = trainer.data_collator

    def counting(features: list[dict]) -> Any:
        counter["tokens"] += sum(len(f["input_ids"]) for f in features)
        return collate(features)

    trainer.data_collator = counting
    return counter


def dpo(model_path: str, run: Path, work: Path, contender: str, steps: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from train.data import load_records, preference_examples, split_eval, tokenize_preferences
    from train.dpo import PreferenceCollator, dpo_trainer_class, evaluate_preferences
    from train.methods import load_model
    from train.run import _Rows, _training_args

    cfg = _cfg(model_path, run, work / contender, "preference", max_length=256, max_steps=steps,
               per_device_train_batch_size=4)  # fmt: skip
    tok = AutoTokenizer.from_pretrained(cfg.model)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    train_df, eval_df = split_eval(load_records(cfg.dataset), cfg.eval_fraction, cfg.seed)
    triples = preference_examples(train_df, "chatml", tok)
    eval_rows = tokenize_preferences(preference_examples(eval_df, "chatml", tok), tok, cfg.max_length).rows
    model = load_model(cfg, tok)
    before = evaluate_preferences(model, eval_rows, tok.pad_token_id)
    torch.manual_seed(0)
    if contender == "curate":
        data = tokenize_preferences(triples, tok, cfg.max_length)
        trainer = dpo_trainer_class()(model=model, args=_training_args(cfg), train_dataset=_Rows(data.rows),
                                      data_collator=PreferenceCollator(tok.pad_token_id), beta=cfg.beta)  # fmt: skip
    else:
        import datasets
        from trl import DPOConfig, DPOTrainer

        ds = datasets.Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in triples])
        args = DPOConfig(
            output_dir=cfg.output_dir, learning_rate=cfg.learning_rate, max_steps=steps, beta=cfg.beta,
            per_device_train_batch_size=cfg.per_device_train_batch_size, logging_steps=1, save_strategy="no",
            report_to=[], seed=cfg.seed, data_seed=cfg.seed, max_length=cfg.max_length,
            use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        )  # fmt: skip
        trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=ds, processing_class=tok)
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    after = evaluate_preferences(model, eval_rows, tok.pad_token_id)
    pairs = steps * cfg.per_device_train_batch_size
    return {
        "steps": result.global_step,
        "seconds": round(seconds, 2),
        "pairs_per_s": round(pairs / seconds, 2),
        "train_loss": round(result.training_loss, 4),
        "loss_curve": [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h],
        "held_out_pairs": after["pairs"],
        "chosen_over_rejected_before": before["chosen_over_rejected"],
        "chosen_over_rejected_after": after["chosen_over_rejected"],
        "mean_logp_margin_after": after["mean_logp_margin"],
        "peak_rss_mb": vm_hwm_mb(),
    }


def one(kind: str, contender: str, model_path: str, run: str, steps: int) -> None:
    """A contender in this (fresh) process; its result as the last stdout line."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-trl-{contender}-"))
    try:
        fn = sft if kind == "sft" else dpo
        print(json.dumps(fn(model_path, Path(run), work, contender, steps)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _spawn(kind: str, contender: str, model_path: str, run: Path, steps: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", f"{kind}:{contender}", "--model-path", model_path, "--run", str(run),
         "--steps", str(steps)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"{kind} {contender} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch
    import trl

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m", help="smollm2-135m, or tiny (the offline test model)")
    ap.add_argument("--sft-steps", type=int, default=16)
    ap.add_argument("--dpo-steps", type=int, default=12)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--model-path", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, contender = args.one.split(":")
        return one(kind, contender, args.model_path, args.run, args.steps)
    work = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    os.chdir(work)
    try:
        triage = curate_run(work, "support_gdpr")
        style = curate_run(work, "gender_neutral_style")
        if args.model == "tiny":
            from train.data import load_records
            from train.tiny import build_tiny

            texts = load_records(str(triage))["text"].to_list() + load_records(str(style))["text"].to_list()
            model_path = str(build_tiny(work / "tiny", texts, vocab_size=400, hidden=48))
        else:
            from train.models import resolve_model

            model_path = resolve_model(args.model)
        result: dict[str, Any] = {"model": args.model, "device": "cpu", "threads": torch.get_num_threads(),
                                  "trl": trl.__version__, "sft": {}, "dpo": {}}  # fmt: skip
        for contender in ("curate", "trl", "curate_packed", "trl_packed"):
            result["sft"][contender] = _spawn("sft", contender, model_path, triage, args.sft_steps)
            print("sft", contender, json.dumps(result["sft"][contender]), flush=True)
        for contender in ("curate", "trl"):
            result["dpo"][contender] = _spawn("dpo", contender, model_path, style, args.dpo_steps)
            print("dpo", contender, json.dumps(result["dpo"][contender]), flush=True)
        s, d = result["sft"], result["dpo"]
        result["sft_tokens_per_s_trl_vs_curate"] = round(s["trl"]["tokens_per_s"] / s["curate"]["tokens_per_s"], 3)
        result["sft_packed_tokens_per_s_trl_vs_curate"] = round(
            s["trl_packed"]["tokens_per_s"] / s["curate_packed"]["tokens_per_s"], 3
        )
        result["dpo_pairs_per_s_trl_vs_curate"] = round(d["trl"]["pairs_per_s"] / d["curate"]["pairs_per_s"], 3)
        if args.model == "tiny":
            print(json.dumps(result, indent=2))
        else:
            print(f"wrote {write_result('trl', result)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
