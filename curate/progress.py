"""What a run prints: rich progress bars, JSON log lines for CI, or nothing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class Reporter:
    """Callbacks from the runner. The base class prints nothing (``--quiet``)."""

    def run_start(self, name: str, run_dir: Path, workers: int, resumed: int) -> None: ...

    def stage_start(self, stage: str, total: int | None, phase: str | None = None) -> None: ...

    def advance(self, n: int) -> None: ...

    def stage_end(self, summary: dict[str, Any], resumed: bool = False) -> None: ...

    def run_end(self, stats: dict[str, Any]) -> None: ...

    def message(self, text: str) -> None:
        """A line of news from work that is not a stage (training after the gate)."""


class JsonReporter(Reporter):
    """One JSON object per line on stderr: machine-readable logs for CI."""

    def _emit(self, event: str, **fields: Any) -> None:
        fields = {"ts": round(time.time(), 3), "event": event, **fields}
        print(json.dumps(fields, default=str), file=sys.stderr, flush=True)

    def run_start(self, name: str, run_dir: Path, workers: int, resumed: int) -> None:
        self._emit("run_start", run=name, run_dir=str(run_dir), workers=workers, resumed=resumed)

    def stage_start(self, stage: str, total: int | None, phase: str | None = None) -> None:
        self._emit("stage_start", stage=stage, total=total, phase=phase)

    def stage_end(self, summary: dict[str, Any], resumed: bool = False) -> None:
        self._emit("stage_end", resumed=resumed, **summary)

    def message(self, text: str) -> None:
        self._emit("message", text=text)

    def run_end(self, stats: dict[str, Any]) -> None:
        self._emit(
            "run_end",
            run=stats["name"],
            records_in=stats["records_in"],
            records_out=stats["records_out"],
            rejected=stats["rejected"],
            seconds=stats.get("seconds"),
        )


class RichReporter(Reporter):
    """A progress bar per stage (records and records/s) and a closing summary table."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None
        self.t0 = 0.0
        self.done = 0

    def run_start(self, name: str, run_dir: Path, workers: int, resumed: int) -> None:
        note = f", resuming (run {resumed + 1})" if resumed else ""
        self.console.print(f"[bold]curate run[/] {name} -> {run_dir} ({workers} workers{note})")

    def stage_start(self, stage: str, total: int | None, phase: str | None = None) -> None:
        self._stop()
        self.t0, self.done = time.perf_counter(), 0
        if not self.console.is_terminal:
            return  # bars in a log file are noise; the per-stage lines say it all
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10} rec/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.progress.start()
        label = f"{stage} ({phase})" if phase else stage
        self.task = self.progress.add_task(label, total=total, rate="")

    def advance(self, n: int) -> None:
        if self.progress is None:
            return
        self.done += n
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, advance=n, rate=f"{self.done / elapsed:,.0f}")

    def stage_end(self, summary: dict[str, Any], resumed: bool = False) -> None:
        self._stop()
        tag = " [dim](done earlier)[/]" if resumed else ""
        self.console.print(
            f"  [green]✓[/] {summary['stage']:<20} {summary['in']:>9,} -> {summary['kept']:>9,}  "
            f"({summary['rejected']:,} rejected){tag}",
            highlight=False,
        )

    def run_end(self, stats: dict[str, Any]) -> None:
        self._stop()
        self.console.print(stats_table(stats))

    def message(self, text: str) -> None:
        self._stop()
        self.console.print(f"  {text}", highlight=False, markup=False)

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def stats_table(stats: dict[str, Any]) -> Table:
    """The per-stage table shown at the end of a run and by `curate inspect`."""
    table = Table(title=f"run {stats['name']}" + ("" if stats.get("complete", True) else " (incomplete)"))
    table.add_column("stage", no_wrap=True)
    for col in ("in", "kept", "rejected", "modified", "seconds", "rec/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for s in stats["stages"]:
        rate = s.get("records_per_s")
        table.add_row(
            s["dir"],
            f"{s['in']:,}",
            f"{s['kept']:,}",
            f"{s['rejected']:,}",
            f"{s['modified']:,}",
            f"{s['seconds']:.2f}",
            f"{rate:,.0f}" if rate else "-",
        )
        for reason, n in s["rejected_by_reason"].items():
            table.add_row(f"  [dim]{reason}[/]", "", "", f"[dim]{n:,}[/]", "", "", "")
    table.caption = (
        f"{stats['records_in']:,} records in, {stats['records_out']:,} out, {stats['rejected']:,} rejected; "
        f"in = kept + rejected holds for every stage"
    )
    return table


def make_reporter(kind: str) -> Reporter:
    if kind == "json":
        return JsonReporter()
    if kind == "quiet":
        return Reporter()
    return RichReporter()
