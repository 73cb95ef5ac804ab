"""curate.kernels: numba kernels compiled ahead of time once per machine, numba's JIT as the fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import kernels, minhash

from .conftest import REPO, need_aot_kernels

TINY = """
import numba as nb
import numpy as np

EXPORTS = {"scaled_sum": "f8(f8[::1], f8)"}


@nb.njit(cache=False)
def scaled_sum(values, factor):
    total = 0.0
    for v in values:
        total += v * factor
    return total
"""


@pytest.fixture
def tiny_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module of one kernel, and a cache folder of this test's own."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny_kernels.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(src), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CURATE_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.delitem(sys.modules, "tiny_kernels", raising=False)  # another test's, from its own folder
    kernels._paths.cache_clear()  # paths under this test's cache folder
    yield "tiny_kernels"
    kernels._paths.cache_clear()


def _load_in_child(module: str, how: str = "auto") -> dict:
    code = (
        "import json, sys, numpy as np\n"
        "from curate import kernels\n"
        f"k = kernels.load({module!r})\n"
        "print(json.dumps({'file': getattr(k, '__file__', ''), 'numba': 'numba' in sys.modules,"
        " 'value': k.scaled_sum(np.arange(4.0), 0.5)}))\n"
    )
    env = {**os.environ, "CURATE_KERNELS": how}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_builds_once_then_loads_the_extension_without_numba(tiny_module: str):
    """Two processes asking at once: one builds (the other waits on the lock), both get the
    extension module; a later process loads it without importing numba."""
    need_aot_kernels()  # a machine that builds at all
    so, failed = kernels._paths(tiny_module)
    code = f"from curate import kernels\nk = kernels.load({tiny_module!r})\nprint(k.__file__)\n"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == [str(so), str(so)]
    assert not failed.exists()
    assert [p.name for p in so.parent.iterdir() if p.name.startswith(".build-")] == []  # no scratch left
    later = _load_in_child(tiny_module)
    assert later == {"file": str(so), "numba": False, "value": 3.0}
    jit = _load_in_child(tiny_module, "jit")
    assert jit["numba"] and jit["value"] == 3.0 and jit["file"].endswith("tiny_kernels.py")


def test_a_failed_build_is_remembered_and_the_jit_runs(
    tiny_module: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    calls = []

    def failing_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "error: command 'gcc' failed: No such file or directory")

    monkeypatch.setattr(kernels.subprocess, "run", failing_run)
    k = kernels.load(tiny_module)
    assert k.__name__ == tiny_module  # the JIT module itself
    assert k.scaled_sum(np.arange(4.0), 0.5) == 3.0
    assert "compiling tiny_kernels for this machine's CPU, once" in caplog.text  # the wait is said
    assert "gcc" in kernels.build_failure(tiny_module)
    monkeypatch.setattr(kernels, "_loaded", {})
    assert kernels.load(tiny_module).__name__ == tiny_module
    assert len(calls) == 1  # not tried again
    assert not kernels.compiled_ahead(tiny_module)
    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.setenv("CURATE_KERNELS", "aot")
    with pytest.raises(kernels.KernelBuildError, match="gcc"):
        kernels.load(tiny_module)


def test_a_damaged_build_is_dropped_and_the_jit_runs(tiny_module: str):
    so, _ = kernels._paths(tiny_module)
    so.parent.mkdir(parents=True)
    so.write_bytes(b"not an extension module")
    assert kernels.load(tiny_module).__name__ == tiny_module
    assert not so.exists()  # built again by the next process


def test_jit_mode_builds_nothing(tiny_module: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CURATE_KERNELS", "jit")
    monkeypatch.setattr(kernels.subprocess, "run", lambda *a, **k: pytest.fail("built in jit mode"))
    assert kernels.load(tiny_module).__name__ == tiny_module
    assert not kernels._paths(tiny_module)[0].parent.exists()


def test_an_unknown_mode_names_the_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CURATE_KERNELS", "fast")
    with pytest.raises(ValueError, match=r"CURATE_KERNELS='fast': use one of auto, aot, jit"):
        kernels.mode()


def test_the_build_key_follows_the_source_and_the_cpu(tiny_module: str, tmp_path: Path, monkeypatch):
    key = kernels.build_key(tiny_module)
    assert key == kernels.build_key(tiny_module)
    (tmp_path / "src" / "tiny_kernels.py").write_text(TINY.replace("v * factor", "factor * v"))
    assert kernels.build_key(tiny_module) != key
    edited = kernels.build_key(tiny_module)
    monkeypatch.setattr(kernels, "_cpu", lambda: "vendor_id : another\nflags : sse2")
    assert kernels.build_key(tiny_module) != edited


@pytest.mark.slow
def test_minhash_kernels_agree_ahead_of_time_and_under_the_jit():
    """The ahead-of-time build and numba's JIT give the same shingle hashes, signatures, band
    keys, edges, Jaccards and components on real text (the shipped samples)."""
    need_aot_kernels()
    texts = [json.loads(line)["text"] for line in (REPO / "data_samples" / "general_english.jsonl").open()][:300]
    texts += [t.rsplit(" ", 1)[0] for t in texts[:50]]  # near-duplicates, so there are edges
    code = textwrap.dedent(
        """
        import json, sys
        import numpy as np, polars as pl
        from curate import minhash
        texts = json.loads(sys.stdin.read())
        sig, hashes, off = minhash.signatures_and_shingles(pl.Series(texts), num_perm=64, ngram=3)
        bands = minhash.band_hashes(sig, 16, 4)
        roots, members = minhash.bucket_edges(np.ascontiguousarray(bands[:, 0]), np.arange(len(texts)))
        jac = minhash.pair_jaccard(hashes, off, roots, members)
        labels = minhash.connected_components(len(texts), roots, members)
        print(json.dumps({"kernels": getattr(minhash.kernels(), "__name__", ""),
            "sig": sig.tolist(), "hashes": hashes.tolist(), "off": off.tolist(), "bands": [str(x) for x in bands.ravel()],
            "edges": [roots.tolist(), members.tolist()], "jac": jac.tolist(), "labels": labels.tolist()}))
        """
    )
    results = {}
    for how in ("aot", "jit"):
        env = {**os.environ, "CURATE_KERNELS": how}
        done = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True, env=env, timeout=900
        )
        assert done.returncode == 0, done.stderr
        results[how] = json.loads(done.stdout)
    aot, jit = results["aot"], results["jit"]
    assert aot["kernels"] == "_aot_curate_minhash_kernels" and jit["kernels"] == "curate.minhash_kernels"
    assert len(aot["edges"][0]) >= 40
    for key in ("sig", "hashes", "off", "bands", "edges", "jac", "labels"):
        assert aot[key] == jit[key], key


def test_kernel_wrappers_hand_over_the_compiled_types():
    """Inputs of other integer types or layouts are converted to the one type each kernel is
    compiled for; a float where integers belong is refused, not truncated."""
    u = np.array([0, 2], np.int32)
    v = np.array([1, 3], np.uint16)
    labels = minhash.connected_components(4, u, v)
    assert labels.tolist() == [0, 0, 2, 2]
    sig, _ = minhash.signatures(pl.Series(["a b c d e f", "a b c d e g"]), num_perm=8, ngram=2)
    strided = np.asfortranarray(sig)
    assert np.array_equal(minhash.band_hashes(strided, 2, 4), minhash.band_hashes(sig, 2, 4))
    with pytest.raises(TypeError):
        minhash.connected_components(4, np.array([0.5]), np.array([1.0]))


def test_ahead_of_time_kernels_release_the_gil():
    """Like ``nogil=True`` under the JIT, a kernel compiled ahead of time lets the process's other
    threads run while it does (the decide phase spreads pair_jaccard over threads; the runner's
    feeder thread hands out tasks meanwhile): a counting thread keeps counting through the call,
    at the pace it counts while this thread sleeps (holding the GIL, it would stand still but
    for one switch interval, 5 ms of a call of hundreds)."""
    need_aot_kernels()
    k = kernels.load(minhash.KERNELS)
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**32, 600_000, dtype=np.uint32)
    off = np.arange(0, 600_001, 300, dtype=np.int64)
    u, v = rng.integers(0, 2000, (2, 200_000), dtype=np.int64)
    stop = threading.Event()
    counts = [0]

    def count() -> None:
        while not stop.is_set():
            counts[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before, t0 = counts[0], time.perf_counter()
        time.sleep(0.2)
        pace = (counts[0] - before) / (time.perf_counter() - t0)
        before, t0 = counts[0], time.perf_counter()
        k.pair_jaccard(hashes, off, u, v)  # the kernel itself, called directly
        seconds = time.perf_counter() - t0
        during = counts[0] - before
    finally:
        stop.set()
        counter.join()
    assert seconds > 0.1, seconds  # long enough for one switch interval not to count
    assert during > 0.3 * pace * seconds, (during, pace, seconds)
