"""Export: adapters or merged weights, the tokenizer with the chat template used in training, a model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train.config import TrainConfig


def export(
    cfg: TrainConfig, model: Any, tokenizer: Any, report: dict[str, Any], chat_template: str | None
) -> dict[str, Any]:
    out = Path(cfg.output_dir) / "final"
    out.mkdir(parents=True, exist_ok=True)
    is_peft = hasattr(model, "peft_config")
    if is_peft and cfg.merge_adapters and cfg.method in ("lora", "qlora"):
        if cfg.method == "qlora":  # merge into the unquantised base, not the 4-bit copy
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            model.save_pretrained(out / "adapter")
            base = AutoModelForCausalLM.from_pretrained(cfg.model, dtype="auto")
            model = PeftModel.from_pretrained(base, out / "adapter")
        model = model.merge_and_unload()
        kind = "merged"
    else:
        kind = "adapter" if is_peft else "full"
    model.save_pretrained(out)
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card(cfg, report, kind), encoding="utf-8")
    return {"path": str(out), "kind": kind}


METRIC_NAMES = {"exact_match": "exact match", "rouge_l": "ROUGE-L"}


def model_card(cfg: TrainConfig, report: dict[str, Any], kind: str) -> str:
    lineage = _lineage(cfg.dataset)
    tiny = (Path(cfg.model) / "TINY_MODEL.json").exists()
    rows = []
    prefs_b, prefs_a = report["before"].get("preferences"), report["after"].get("preferences")
    if prefs_b and prefs_a:
        rows.append(
            f"| held-out pairs: chosen over rejected | {prefs_b['chosen_over_rejected']} | {prefs_a['chosen_over_rejected']} | | |"
        )
    task_rows = []
    tb, ta = report["before"].get("task"), report["after"].get("task")
    if tb and ta:
        task_rows = [
            "",
            f"## The task on held-out records ({ta['records']}, greedy generation)",
            "",
            "| metric | before | after |",
            "| --- | ---: | ---: |",
            f"| {METRIC_NAMES.get(ta['metric'], ta['metric'])} | {tb['score']} | {ta['score']} |",
        ]
        if "label_in_answer" in ta:
            task_rows.append(f"| label named in the answer | {tb.get('label_in_answer')} | {ta['label_in_answer']} |")
    sb, sa = report["before"].get("style"), report["after"].get("style")
    if sb and sa:
        task_rows += [
            "",
            f"## Style in generations for {sa['generations']} held-out prompts (greedy)",
            "",
            f"Gendered terms counted by the rewrite engine (lexicons: {', '.join(cfg.style_eval.lexicons)}); the "
            f"prompts themselves hold {sa['prompts_gendered_per_100_words']} per 100 words.",
            "",
            "| measure | before | after |",
            "| --- | ---: | ---: |",
            f"| gendered terms per 100 words | {sb['gendered_per_100_words']} | {sa['gendered_per_100_words']} |",
            f"| answers with any gendered term | {sb['with_gendered_terms']} | {sa['with_gendered_terms']} |",
        ]
        cb, ca = sb.get("counterfactual"), sa.get("counterfactual")
        if cb and ca:
            task_rows += [
                f"| counterfactual ({ca['pairs']} prompts, gendered words swapped): identical answers | {cb['identical']} | {ca['identical']} |",
                f"| counterfactual: answers alike up to the swap | {cb['consistent']} | {ca['consistent']} |",
            ]
    for split in ("held_out", "replay"):
        b, a = report["before"].get(split), report["after"].get(split)
        if b and a:
            rows.append(
                f"| {split.replace('_', '-')} | {b['loss']} | {a['loss']} | {b['perplexity']} | {a['perplexity']} |"
            )
    hp = {k: getattr(cfg, k) for k in ("method", "learning_rate", "lr_scheduler_type", "num_train_epochs", "max_steps",
                                       "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "packing",
                                       "completion_only_loss", "template", "seed")}  # fmt: skip
    if cfg.method in ("lora", "qlora"):
        hp["lora"] = cfg.lora.model_dump()
    base = report.get("base_model") or {}
    prov = base.get("provenance") or {}
    lines = [
        f"# Fine-tuned from `{base.get('name', cfg.model)}` with curate",
        "",
        f"- Base model: {prov['converted_from']} (license {prov.get('license')}), converted to {prov.get('dtype')}"
        if prov
        else "",
        "",
        "> **Note:** the base model is a tiny random-initialised Llama built from a config for offline testing, not a "
        "real language model."
        if tiny
        else "",
        "",
        f"- Method: **{cfg.method}** (exported as {kind} weights)",
        f"- Data: `{cfg.dataset}` ({report.get('train_examples') or report.get('train_pairs')} training "
        f"{'pairs' if cfg.format == 'preference' else 'examples'}, format {cfg.format}"
        + (
            f"; {report['replay_examples_mixed']} of them replay text from `{cfg.replay_dataset}`"
            if report.get("replay_examples_mixed")
            else ""
        )
        + ")",
        f"- Curate run manifest hash: `{lineage.get('plan_fingerprint', 'n/a')}`",
        f"- Records: {lineage.get('records_out', 'n/a')} kept of {lineage.get('records_in', 'n/a')} ({lineage.get('rejected', 'n/a')} rejected)",
        f"- PII policy: {lineage.get('pii', 'none')}",
        f"- Lexicons applied: {lineage.get('lexicons', 'none')}",
        f"- Chat template: saved with the tokenizer (the one used in training: {cfg.template})",
        "",
        "## Evaluation (before -> after)",
        "",
        "| set | loss before | loss after | perplexity before | perplexity after |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Forgetting (relative change of replay loss): {report.get('forgetting')}",
        *task_rows,
        "",
        "## Hyperparameters",
        "",
        "```json",
        json.dumps(hp, indent=2, default=str),
        "```",
    ]
    return "\n".join(line for line in lines) + "\n"


def _lineage(dataset: str) -> dict[str, Any]:
    path = Path(dataset)
    if not (path / "manifest.json").exists():
        return {}
    manifest = json.loads((path / "manifest.json").read_text())
    stats = json.loads((path / "stats.json").read_text())
    stages = manifest.get("stages", [])
    pii = [
        f"{s['params'].get('profile')} ({s['params'].get('operator') or 'profile operators'})"
        for s in stages
        if s["stage"] == "pii.scrub"
    ]
    lex = [", ".join(s["params"].get("lexicons", [])) for s in stages if s["stage"] == "rewrite.lexicon"]
    return {
        "plan_fingerprint": manifest.get("plan_fingerprint"),
        "records_in": stats.get("records_in"),
        "records_out": stats.get("records_out"),
        "rejected": stats.get("rejected"),
        "pii": "; ".join(pii) or "none",
        "lexicons": "; ".join(lex) or "none",
    }
