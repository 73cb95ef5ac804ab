"""Helpers shared by the benchmarks: machine facts, peak memory, writing results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parent / "data"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def vm_hwm_mb() -> float:
    """This process's own peak RSS (VmHWM, as curate's tasks report theirs). Unlike ru_maxrss,
    it is not inherited across exec."""
    from curate.executor import process_memory

    peak = process_memory()["peak_rss_mb"]
    return float("nan") if peak is None else peak


def peak_rss_mb(stats: dict[str, Any]) -> dict[str, float | None]:
    """Peak resident memory of this (main) process, and of the largest pool process as the run's
    stats report it (each task records its process's VmHWM). Pool processes are children of the
    forkserver, not of this process, so RUSAGE_CHILDREN never sees them."""
    peaks = [s["worker_peak_rss_mb"] for s in stats["stages"] if s.get("worker_peak_rss_mb") is not None]
    return {"peak_rss_mb": vm_hwm_mb(), "peak_rss_mb_worker": max(peaks) if peaks else None}


def run_timed(cmd: list[str], cwd: str | Path | None = None) -> tuple[float, float]:
    """Run a command in a fresh process: (wall seconds from start to exit, peak RSS in MB of the
    largest process of its tree, os.wait4's ru_maxrss). Fails with the end of its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"{cmd} failed ({code}): {stderr.decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def write_result(topic: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{topic}.json"
    result = {
        "topic": topic,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **result,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def _process_table() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, label, resident MB), read from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry.name}/status") as fh:
                rss = next((int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:")), 0.0)
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (ppid, _label(argv), rss)
    return table


def _label(argv: list[bytes]) -> str:
    """A process's kind, for peak memory by kind: Ray names its workers ``ray::<task>``."""
    first = argv[0].decode(errors="replace") if argv else ""
    if first.startswith("ray::"):
        return "ray worker"
    name = Path(first).name
    if name in ("raylet", "gcs_server"):
        return f"ray {name}"
    joined = b" ".join(argv).decode(errors="replace")
    if "ray/_private" in joined or "ray/dashboard" in joined or "ray/autoscaler" in joined:
        return "ray helper"
    if "multiprocessing" in joined or "forkserver" in joined:
        return "pool process"
    return name or "?"


def run_sampled(cmd: list[str], cwd: str | Path | None = None, every: float = 0.25) -> tuple[float, dict[str, float]]:
    """Run a command in a fresh process: (wall seconds, peak resident MB of the largest process of
    each kind in its process tree: the command itself is "main"). Sampled from /proc every
    ``every`` seconds, as pool and Ray processes are not all children the command waits for."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            table = _process_table()
            tree, frontier = {proc.pid}, [proc.pid]
            while frontier:
                parent = frontier.pop()
                children = [pid for pid, (ppid, _, _) in table.items() if ppid == parent and pid not in tree]
                tree.update(children)
                frontier.extend(children)
            for pid in tree & table.keys():
                if not table[pid][2]:
                    continue  # exiting (a zombie has no memory)
                label = "main" if pid == proc.pid else table[pid][1]
                peaks[label] = max(peaks.get(label, 0.0), round(table[pid][2], 1))
            stop.wait(every)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {stderr.decode()[-3000:]}")
    return wall, dict(sorted(peaks.items(), key=lambda kv: -kv[1]))
