"""Helpers shared by the benchmarks: machine facts, peak memory, writing results."""

from __future__ import annotations

import json
import os
import platform
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
