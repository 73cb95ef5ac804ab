"""Stages used only by tests, loaded through the recipe's `plugins:` key."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
from pydantic import PrivateAttr

from curate.records import with_reason
from curate.registry import Split, Stage, stage


@stage("test.sleep")
class Sleep(Stage):
    """Sleep per batch (so a test can kill a run mid-stage), then uppercase the text."""

    seconds: float = 0.1

    def process(self, batch: pl.DataFrame) -> Split:
        time.sleep(self.seconds)
        out = batch.with_columns(pl.col("text").str.to_uppercase())
        return Split(kept=out, rejected=out.clear(), modified=len(out))


@stage("test.lose_rows")
class LoseRows(Stage):
    """A buggy stage: drops a row without rejecting it."""

    def process(self, batch: pl.DataFrame) -> Split:
        return Split(kept=batch.tail(max(len(batch) - 1, 0)), rejected=batch.clear())


@stage("test.reject_odd")
class RejectOdd(Stage):
    """Reject every other record with reason 'odd'."""

    def process(self, batch: pl.DataFrame) -> Split:
        odd = pl.int_range(0, pl.len()) % 2 == 1
        return Split(kept=batch.filter(~odd), rejected=with_reason(batch.filter(odd), self.name, "odd"))


@stage("test.unpicklable_setup")
class UnpicklableSetup(Stage):
    """setup() attaches something that cannot be pickled (like a loaded model); tags each record."""

    _resource: Any = PrivateAttr(default=None)

    def setup(self) -> None:
        self._resource = lambda text: text + " [seen]"  # a lambda does not pickle

    def process(self, batch: pl.DataFrame) -> Split:
        time.sleep(0.05)
        out = batch.with_columns(pl.col("text").map_elements(self._resource, return_dtype=pl.String))
        return Split(kept=out, rejected=out.clear(), modified=len(out))


@stage("test.crash_unless_resumed")
class CrashUnlessResumed(Stage):
    """Passes records through; while the file `marker` exists, fails on every shard whose records
    all come after line `after` (a run that dies part-way through a stage, for resume tests)."""

    marker: str
    after: int = 0

    def process(self, batch: pl.DataFrame) -> Split:
        import os

        lines = [int(s.rsplit(":", 1)[1]) for s in batch["source"]]
        if os.path.exists(self.marker) and lines and min(lines) > self.after:
            raise RuntimeError("simulated crash")
        return Split(kept=batch, rejected=batch.clear())


@stage("test.die_once")
class DieOnce(Stage):
    """Kill its own process (SIGKILL, as the OOM killer does) the first time it sees each of
    ``parts`` batches: ``flags`` holds a file per batch it died on. Uppercases the text."""

    flags: str
    every: int = 3
    """Die on every ``every``-th batch (by its first text's hash), once each."""

    def process(self, batch: pl.DataFrame) -> Split:
        import hashlib
        import os
        import signal
        from pathlib import Path

        first = batch["text"][0] if len(batch) else ""  # the text, not the id: ids hash the input's path
        digest = hashlib.sha1(first.encode()).hexdigest()[:12]
        flag = Path(self.flags) / digest
        if int(digest, 16) % self.every == 0 and not flag.exists():
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.write_text(first)
            os.kill(os.getpid(), signal.SIGKILL)
        out = batch.with_columns(pl.col("text").str.to_uppercase())
        return Split(kept=out, rejected=out.clear(), modified=len(out))


@stage("test.log_calls")
class LogCalls(Stage):
    """Append each batch's first id to ``log`` (one line per call, any process), sleep, keep all."""

    log: str
    seconds: float = 0.1

    def process(self, batch: pl.DataFrame) -> Split:
        import os

        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{batch['id'][0] if len(batch) else ''}\n".encode())
        finally:
            os.close(fd)
        time.sleep(self.seconds)
        return Split(kept=batch, rejected=batch.clear())
