from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from curate.pipeline import Runner
from curate.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent
PLUGIN = str(REPO / "tests" / "plugins" / "fake_stages.py")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test inside its own temporary directory (recipe paths are cwd-relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(recipe: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    recipe = {"name": "t", "run": {"workers": 1}, "report": False, **recipe}
    return Runner(load_recipe(recipe), **kwargs).run()


def need_aot_kernels() -> None:
    """Skip unless the MinHash kernels run compiled ahead of time here (curate.kernels): the build
    needs a C compiler and Python's headers, and ``CURATE_KERNELS=jit`` turns it off. Without
    them curate runs numba's JIT, which the other tests cover."""
    from curate import kernels, minhash

    kernels.load(minhash.KERNELS)
    if not kernels.compiled_ahead(minhash.KERNELS):
        why = (kernels.build_failure(minhash.KERNELS) or f"CURATE_KERNELS={kernels.mode()}").strip()
        pytest.skip(f"no ahead-of-time kernels on this machine: {why.splitlines()[-1]}")


def fresh_python(code: str, cwd: Path = REPO) -> str:
    """Run ``code`` in a new interpreter (for what only a fresh process shows: imports, kernel
    loading, the forkserver); fail with its stderr unless it succeeds. Returns its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def output(run_dir: str | Path) -> pl.DataFrame:
    parts = sorted(Path(run_dir, "output").glob("*.parquet"))
    return pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame()


def rejects(run_dir: str | Path, stage_dir: str) -> pl.DataFrame:
    path = Path(run_dir, "rejects", f"{stage_dir}.parquet")
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema={"reason": pl.String})


def stage_stats(stats: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in stats["stages"] if s["stage"] == name)
