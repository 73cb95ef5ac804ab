"""Formatting, quality filters, Great Expectations validation, the gate, the report and export."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from curate.cli import main
from curate.errors import RecipeError
from curate.export import assign
from curate.gate import GateFailed
from curate.pipeline import Runner
from curate.recipe import load_recipe
from curate.records import make_batch
from curate.stages.format import ChatFormat, CompletionFormat, InstructionFormat
from curate.stages.quality import Heuristics, InstructionChecks, LanguageId

from .conftest import REPO, output, run, stage_stats, write_jsonl


def batch(texts: list[str], metas: list[dict] | None = None, **cols) -> pl.DataFrame:
    b = make_batch(
        {
            "id": [f"r{i}" for i in range(len(texts))],
            "text": texts,
            "source": ["t"] * len(texts),
            "meta": [json.dumps(m) for m in (metas or [{}] * len(texts))],
        }
    )
    return b.with_columns(**{k: pl.Series(v) for k, v in cols.items()})


# -- formatters ------------------------------------------------------------------------


def test_instruction_from_templates_meta_and_empty_input():
    b = batch(["note one", "note two", "note three"], [{"summary": "s1"}, {}, {"summary": 3}])
    split = InstructionFormat(instruction="Summarise this clinical note.", input="{text}", output="{summary}").process(
        b
    )
    assert split.kept.select("instruction", "input", "output").rows() == [
        ("Summarise this clinical note.", "note one", "s1")
    ]
    assert split.rejected.select("reason", "detail").rows() == [
        ("missing_field", "output: field 'summary' is missing"),
        ("wrong_type", "output: field 'summary' is int, expected string"),
    ]
    no_input = InstructionFormat(instruction="{text}", output="{answer}").process(
        batch(["What is a volcano?"], [{"answer": "A mountain that erupts."}])
    )
    assert no_input.kept.select("instruction", "input", "output").row(0) == (
        "What is a volcano?",
        "",
        "A mountain that erupts.",
    )


def test_chat_reads_sharegpt_and_openai_and_validates_roles():
    convs = [
        [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        [{"role": "user", "content": "q"}, {"role": "user", "content": "again"}],
        [{"role": "robot", "content": "q"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
        [{"role": "user", "content": "q"}],
    ]
    b = batch(["x"] * len(convs), [{"conv": c} for c in convs])
    split = ChatFormat(messages_field="conv").process(b)
    assert split.kept["messages"].to_list()[0] == [
        {"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
    ]  # fmt: skip
    assert split.rejected["reason"].to_list() == ["bad_alternation", "unknown_role", "empty_message", "bad_alternation"]
    share = ChatFormat(messages_field="conv", style="sharegpt").process(b.head(2)).kept["messages"].to_list()
    assert share[1] == [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]


def test_chat_from_instruction_records_and_completion_style():
    b = batch(["t"], instruction=["Explain."], input=["Volcanoes"], output=["They erupt."])
    msgs = ChatFormat(system="Be friendly.").process(b).kept["messages"][0].to_list()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"] and msgs[1][
        "content"
    ] == "Explain.\n\nVolcanoes"
    c = CompletionFormat(prompt="{q}", completion="{a}", style="friendly-for-children").process(
        batch(["x"], [{"q": "What is a volcano?", "a": "A mountain that can blow its top!"}])
    )
    assert c.kept.select("prompt", "completion", "style").row(0) == (
        "What is a volcano?",
        "A mountain that can blow its top!",
        "friendly-for-children",
    )


def test_formatted_records_round_trip_through_datasets(workdir: Path):
    datasets = pytest.importorskip("datasets")
    rows = [{"text": f"ticket {i} text", "priority": ["low", "high"][i % 2]} for i in range(40)]
    write_jsonl(workdir / "t.jsonl", rows)
    run({"input": ["t.jsonl"], "stages": [
        {"stage": "format.instruction", "instruction": "Classify.", "input": "{text}", "output": "{priority}"},
        {"stage": "format.chat", "system": "You triage."},
    ]})  # fmt: skip
    res = CliRunner().invoke(main, ["export", "runs/t", "--to", "hf", "-o", "exp_hf", "--splits", "train=0.8,test=0.2"])
    assert res.exit_code == 0, res.output
    dd = datasets.load_from_disk("exp_hf")
    assert set(dd) == {"train", "test"} and dd["train"].num_rows + dd["test"].num_rows == 40
    assert dd["train"][0]["messages"][0] == {"role": "system", "content": "You triage."}
    CliRunner().invoke(main, ["export", "runs/t", "--to", "jsonl", "-o", "exp_json"])
    js = datasets.load_dataset("json", data_files={s: f"exp_json/{s}.jsonl" for s in ("train", "validation", "test")})
    assert sum(js[s].num_rows for s in js) == 40 and js["train"][0]["output"] in ("low", "high")


# -- quality ------------------------------------------------------------------------------

GOOD = "The committee met on Tuesday to review the budget and to plan the new library with the staff. " * 6


F = "The committee reviewed the budget and planned the library with the staff."


@pytest.mark.parametrize(
    "text,reason",
    [
        ("too short to pass", "too_few_words"),
        (" ".join(["supercalifragilisticexpialidocious"] * 60), "mean_word_length"),
        ("#tag #news #today " * 10 + GOOD, "symbol_ratio"),
        ("\n".join(f"• {F}" for _ in range(10)), "bullet_lines"),
        ("\n".join(f"{F[:-1]} number {i}..." for i in range(10)), "ellipsis_lines"),
        ("1234 5678 9012 3456 " * 15 + F + " " + F, "alpha_words"),
        ("Lorem dolor amet consectetur adipiscing elit sed eiusmod tempor incididunt. " * 8, "no_stop_words"),
        ("\n".join([F] * 10 + [GOOD]), "duplicate_lines"),
        ("the budget and the staff " * 30, "repeated_ngrams"),
        ("\n".join(["Privacy policy and the terms of use apply to this site today."] * 8 + [F, GOOD]), "boilerplate"),
    ],
)
def test_each_heuristic_rejects_with_its_reason_and_keeps_good_text(text: str, reason: str):
    split = Heuristics(max_duplicate_lines=0.3 if reason != "boilerplate" else 1.0).process(batch([GOOD, text]))
    assert split.kept["id"].to_list() == ["r0"]
    assert split.rejected["reason"].to_list() == [reason]
    assert {"q_words", "q_stop_words", "q_top_2gram"} <= set(split.kept.columns)


def test_heuristic_bounds_can_be_switched_off():
    off = Heuristics(min_words=None, min_stop_words=None, max_top_2gram=None)
    assert len(off.process(batch(["too short"])).kept) == 1


def test_language_id_keeps_allowed_languages():
    texts = [
        GOOD,
        "Der Ausschuss hat am Dienstag den Haushalt geprüft und die neue Bibliothek mit dem Personal geplant. " * 3,
        "ok",
    ]
    split = LanguageId(allowed=["en"]).process(batch(texts))
    assert split.kept["lang"].to_list() == ["en"]
    assert split.rejected.select("id", "reason").rows() == [("r1", "language"), ("r2", "low_confidence")]
    assert split.kept["lang_confidence"][0] > 0.9
    assert split.rejected["detail"][0].startswith("detected de")
    with pytest.raises(RecipeError, match="unknown language 'englsh'"):
        load_recipe(
            {"name": "r", "input": ["a.jsonl"], "stages": [{"stage": "quality.language", "candidates": ["englsh"]}]}
        )


def test_instruction_checks():
    long_answer = "This answer keeps going for quite a long while and covers many points about the topic but somehow never ends properly"
    b = batch(
        ["a"] * 5,
        instruction=["Q"] * 5,
        input=[
            "The input passage about tides and the moon.",
            "The input passage about tides and the moon.",
            "x",
            "x",
            "x",
        ],
        output=[
            "Tides follow the moon.",
            "The input passage about tides and the moon.",
            "",
            long_answer,
            "I'm sorry, but I cannot help with that.",
        ],
    )
    split = InstructionChecks().process(b)
    assert split.kept["id"].to_list() == ["r0"]
    assert split.rejected.select("id", "reason").rows() == [
        ("r1", "copies_input"),
        ("r2", "empty_output"),
        ("r3", "truncated_output"),
        ("r4", "refusal"),
    ]
    ratio = InstructionChecks(max_length_ratio=0.1).process(b.head(1))
    assert ratio.rejected["reason"].to_list() == ["length_ratio"]


# -- validation, gate, report ----------------------------------------------------------------


def _recipe(workdir: Path, gate: dict, validate: dict | None = None) -> dict:
    rows = [{"text": f"Record number {i} says the library and the budget are fine today."} for i in range(30)] + [
        {"text": "x"}
    ] * 5
    write_jsonl(workdir / "a.jsonl", rows)
    recipe = {"input": ["a.jsonl"], "stages": [{"stage": "filter.length", "min_words": 3}], "gate": gate}
    if validate:
        recipe["validate"] = validate
    return recipe


def test_gate_passes_and_fails_with_the_threshold_named(workdir: Path):
    run(_recipe(workdir, {"min_records": 10, "max_reject_rate": 0.2}))
    gate = json.loads(Path("runs/t/gate.json").read_text())
    assert gate["passed"] and [c["threshold"] for c in gate["checks"]] == ["min_records", "max_reject_rate"]
    with pytest.raises(GateFailed, match=r"max_stage_reject_rate\[filter.length\]: actual 0.1429, limit 0.05"):
        run(_recipe(workdir, {"max_stage_reject_rate": {"filter.length": 0.05}}), force=True)
    assert json.loads(Path("runs/t/stats.json").read_text())["gate"] == {"passed": False}


def test_gate_failure_exits_3_from_the_cli(workdir: Path):
    recipe = {"name": "g", **_recipe(workdir, {"min_records": 1000})}
    Path("g.yaml").write_text(yaml.safe_dump(recipe))
    res = CliRunner().invoke(main, ["-q", "run", "g.yaml"])
    assert res.exit_code == 3 and "min_records: actual 30, limit 1000" in res.stderr


def test_gate_naming_an_unknown_stage_or_metric_is_a_recipe_error(workdir: Path):
    with pytest.raises(RecipeError, match="no stage 'filter.lenght' in this recipe. Did you mean 'filter.length'"):
        load_recipe({"name": "r", **_recipe(workdir, {"max_stage_reject_rate": {"filter.lenght": 0.1}})})
    with pytest.raises(RecipeError, match="gate.max_leaks: unknown key"):
        load_recipe({"name": "r", **_recipe(workdir, {"max_leaks": 0})})


def test_great_expectations_results_and_data_docs_are_written(workdir: Path):
    recipe = _recipe(
        workdir, {"validation_success": True}, {"unique": ["id"], "min_text_chars": 70, "no_raw_pii": True}
    )
    with pytest.raises(GateFailed, match="validation_success"):
        run(recipe)
    summary = json.loads(Path("runs/t/validation/summary.json").read_text())
    failed = [e for e in summary["expectations"] if not e["success"]]
    assert [e["expectation"] for e in failed] == ["expect_column_value_lengths_to_be_between"]
    assert json.loads(Path("runs/t/validation/results.json").read_text())["success"] is False
    assert Path("runs/t/validation/data_docs/index.html").exists()


@pytest.mark.slow
def test_report_of_the_demo_run_matches_its_stats(workdir: Path):
    shutil.copytree(REPO / "data_samples", workdir / "data_samples")
    stats = Runner(load_recipe(REPO / "pipelines" / "demo.yaml")).run()
    rd = Path("runs/demo")
    summary = json.loads((rd / "report.json").read_text())
    assert [(f["stage"], f["in"], f["kept"], f["rejected"]) for f in summary["funnel"]] == [
        (s["stage"], s["in"], s["kept"], s["rejected"]) for s in stats["stages"]
    ]
    assert summary["records_out"] == stats["records_out"] and summary["gate"]["passed"]
    html = (rd / "report.html").read_text()
    for s in stats["stages"]:
        assert f'<code>{s["stage"]}</code></td><td class="num">{s["in"]:,}</td>' in html
    assert html.count("<svg") >= 5 and "Quality gate" in html and "Great Expectations" in html
    assert "@example" not in html.split("Sample rejects")[1] or "[EMAIL]" in html  # previews are scrubbed
    md = (rd / "report.md").read_text()
    assert f"{stats['records_in']:,} records in" in md
    res = CliRunner().invoke(main, ["report", str(rd)])
    assert res.exit_code == 0 and "report.html" in res.output


def test_split_assignment_is_stable_and_keeps_groups_together():
    keys = pl.Series([f"g{i // 3}" for i in range(300)])
    splits = {"train": 0.8, "validation": 0.1, "test": 0.1}
    first = assign(keys, splits, seed=1)
    assert first == assign(keys, splits, seed=1) and first != assign(keys, splits, seed=2)
    for g in range(100):
        assert len({first[3 * g], first[3 * g + 1], first[3 * g + 2]}) == 1
    assert 0.6 < first.count("train") / 300 < 0.95


def test_export_groups_by_meta_key(workdir: Path):
    write_jsonl(workdir / "p.jsonl", [{"text": f"visit {i} note text", "patient": f"p{i % 7}"} for i in range(70)])
    run({"input": ["p.jsonl"]})
    res = CliRunner().invoke(
        main, ["export", "runs/t", "-o", "exp", "--group-by", "meta.patient", "--splits", "a=0.5,b=0.5"]
    )
    assert res.exit_code == 0, res.output
    where = {}
    for split in ("a", "b"):
        for line in open(f"exp/{split}.jsonl"):
            where.setdefault(json.loads(line)["meta"]["patient"], set()).add(split)
    assert all(len(s) == 1 for s in where.values()) and len(where) == 7
    bad = CliRunner().invoke(main, ["export", "runs/t", "-o", "exp", "--splits", "a=0.5,b=0.6"])
    assert bad.exit_code == 2 and "sum to 1" in bad.stderr


def test_stage_stats_include_quality_reasons(workdir: Path):
    write_jsonl(workdir / "q.jsonl", [{"text": GOOD}, {"text": "short text"}])
    stats = run({"input": ["q.jsonl"], "stages": ["quality.heuristics"]})
    assert stage_stats(stats, "quality.heuristics")["rejected_by_reason"] == {"too_few_words": 1}
    assert "q_words" in output("runs/t").columns


def test_export_train_loader_and_report_read_only_record_parts_after_a_global_stage(workdir: Path):
    """A global stage's directory also holds _decisions.parquet and clusters.parquet."""
    from curate.report import build_report
    from train.data import load_records

    base = "the same words in every one of these records about the library and the budget"
    write_jsonl(
        workdir / "g.jsonl",
        [{"text": f"{base} {i % 5}"} for i in range(20)] + [{"text": f"other text {i} here"} for i in range(10)],
    )
    stats = run({"input": ["g.jsonl"], "stages": ["dedup.minhash"]})
    n = stats["records_out"]
    assert len(load_records("runs/t")) == n
    res = CliRunner().invoke(main, ["export", "runs/t", "-o", "exp", "--splits", "train=1.0"])
    assert res.exit_code == 0 and f"train {n:,}" in res.output
    html = build_report("runs/t")["html"].read_text()
    # the example clusters show their members' sources and (masked) previews, read from ingest
    assert html.count("Example cluster of") >= 1
    sources = {f"g.jsonl:{i}" for i in range(1, 21)}
    shown = set(re.findall(r"g\.jsonl:\d+", html.split("Example cluster of", 1)[1]))
    assert shown and shown <= sources


def test_extract_regex_fields_feed_templates_and_reject_misses():
    from curate.stages.extract import ExtractRegex

    b = batch([
        "Amanda is an 85-year-old patient admitted with community-acquired pneumonia. Treatment was started with amoxicillin 500 mg.",
        "Seen in clinic for a check-up. Treatment was started with metformin 1000 mg.",
    ])  # fmt: skip
    stage = ExtractRegex(fields={"condition": r"admitted with (.+?)\.", "medication": r"started with (.+?)\."})
    split = stage.process(b)
    assert split.kept.select("condition", "medication").rows() == [
        ("community-acquired pneumonia", "amoxicillin 500 mg")
    ]
    assert split.rejected.select("reason", "detail").rows() == [("no_match", "no match for condition")]
    assert len(split.kept) + len(split.rejected) == len(b)
    formatted = InstructionFormat(
        instruction="Summarise.", input="{text}", output="Admitted with {condition}."
    ).process(split.kept)
    assert formatted.kept["output"].to_list() == ["Admitted with community-acquired pneumonia."]
    lenient = ExtractRegex(fields={"condition": r"admitted with (.+?)\."}, required=False).process(b)
    assert lenient.kept["condition"].to_list() == ["community-acquired pneumonia", None] and not len(lenient.rejected)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        ExtractRegex(fields={"x": "admitted with ("})
    with pytest.raises(ValueError, match="new identifier-like column name"):
        ExtractRegex(fields={"text": "a"})
