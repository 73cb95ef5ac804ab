"""Reviewers' decisions on a run (``RUN/review/decisions.jsonl``) and how the next run applies them.

One JSON object per line, appended by ``curate review`` (or by hand):

    {"id": "9f1c...", "who": "dana", "when": "2026-12-06T14:02:11+00:00", "action": "keep",
     "record": "<record id>", "stage": "03_quality.heuristics", "why": "a real ticket, just short"}

Actions:

- ``keep``: a record a stage rejected goes on through the later stages (it is not published
  as it was: a record rejected before ``pii.scrub`` is still scrubbed);
- ``drop``: a kept record is rejected at the last stage (reason ``review_drop``);
- ``pii_missed``: an identifier the scrubber left (``entity``, and its span in the text before
  scrubbing: ``raw_start``/``raw_end``, with ``text_sha``, a hash of that text) is scrubbed;
- ``pii_false``: a detection that is not personal data (same span fields, and ``value``, the
  detected text, which the allow-list export needs) is left in the text;
- ``rewrite_undo``: the record keeps its text from before ``rewrite.lexicon``; ``rewrite_accept``
  records that a reviewer checked a rewrite (no change);
- ``retract``: takes back the decision whose id is ``retracts``.

Lines are appended under an exclusive lock (flock), each in one write: several reviewers (and
several review servers on one run) never lose or interleave each other's lines. A file edited
into nonsense fails with the line number and what is wrong, before any work.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curate.errors import RecipeError

DECISIONS = Path("review") / "decisions.jsonl"
Action = Literal["keep", "drop", "pii_missed", "pii_false", "rewrite_undo", "rewrite_accept", "retract"]
_SPAN_ACTIONS = ("pii_missed", "pii_false")


class DecisionsError(RecipeError):
    """The decisions file cannot be applied: says which line and why."""


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1)
    who: str = Field(min_length=1)
    when: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    action: Action
    record: str = ""
    """The record's id (every action but retract)."""
    stage: str = ""
    """The stage directory the reviewer acted in (NN_<stage>): where the record was rejected
    (keep), or the pii.scrub / rewrite.lexicon stage (their actions)."""
    why: str = ""
    entity: str | None = None
    raw_start: int | None = Field(default=None, ge=0)
    raw_end: int | None = Field(default=None, ge=1)
    text_sha: str | None = None
    value: str | None = None
    retracts: str | None = None

    @model_validator(mode="after")
    def _fields_for_action(self) -> Decision:
        if self.action == "retract":
            if not self.retracts:
                raise ValueError("retract needs 'retracts': the id of the decision it takes back")
            return self
        if not self.record:
            raise ValueError(f"{self.action} needs 'record': the record's id")
        if not self.stage or not self.stage[:2].isdigit():
            raise ValueError(f"{self.action} needs 'stage': a stage directory such as 05_dedup.exact")
        if self.action == "keep" and self.stage.startswith("00_"):
            raise ValueError("keep: a line ingest rejected (bad JSON, bad encoding) is not a record to keep")
        if self.action in _SPAN_ACTIONS or self.action == "rewrite_undo":
            if not self.text_sha:
                raise ValueError(f"{self.action} needs 'text_sha': the hash of the text it was decided on")
        if self.action in _SPAN_ACTIONS:
            if not self.entity or self.raw_start is None or self.raw_end is None:
                raise ValueError(f"{self.action} needs 'entity', 'raw_start' and 'raw_end'")
            if self.raw_end <= self.raw_start:
                raise ValueError(f"raw_end ({self.raw_end}) must be after raw_start ({self.raw_start})")
        if self.action == "pii_false" and not self.value:
            raise ValueError("pii_false needs 'value': the detected text (it is not personal data)")
        return self

    @property
    def stage_index(self) -> int:
        return int(self.stage.split("_", 1)[0])


def decisions_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / DECISIONS


def append_decision(run_dir: str | os.PathLike, decision: Decision) -> Decision:
    """Append one decision: an exclusive lock, one write of one line."""
    path = decisions_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (decision.model_dump_json(exclude_none=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return decision


def load_decisions(run_dir: str | os.PathLike) -> list[Decision]:
    """Every decision in the file, in order (retractions included). Raises DecisionsError naming
    the first bad line."""
    path = decisions_path(run_dir)
    if not path.exists():
        return []
    out: list[Decision] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # not half a line another reviewer is writing
        raw = fh.read()
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            decision = Decision.model_validate(obj)
        except ValidationError as e:
            raise DecisionsError(f"{path}:{n}: {validation_message(e)}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise DecisionsError(f"{path}:{n}: not a JSON object ({e})") from None
        if decision.id in seen:
            raise DecisionsError(f"{path}:{n}: decision id '{decision.id}' appears twice")
        if decision.action == "retract" and decision.retracts not in seen:
            raise DecisionsError(f"{path}:{n}: retracts '{decision.retracts}', which no earlier line is")
        seen.add(decision.id)
        out.append(decision)
    return out


def validation_message(e: ValidationError) -> str:
    """The first problem pydantic found, in a line: ``field: what is wrong``."""
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return (f"{where}: " if where else "") + err["msg"].removeprefix("Value error, ")


def effective(decisions: list[Decision]) -> list[Decision]:
    """The decisions in force: not retracted, and of several on the same thing the latest (keep
    or drop of a record; undo or accept of its rewrite; one span's verdict)."""
    retracted = {d.retracts for d in decisions if d.action == "retract"}
    latest: dict[tuple, Decision] = {}
    for d in decisions:
        if d.action == "retract" or d.id in retracted:
            continue
        if d.action in ("keep", "drop"):
            key: tuple = (d.record, "status")
        elif d.action in ("rewrite_undo", "rewrite_accept"):
            key = (d.record, "rewrite")
        else:
            key = (d.record, "span", d.raw_start, d.raw_end)
        latest.pop(key, None)
        latest[key] = d
    return list(latest.values())


@dataclass
class Overrides:
    """What the runner applies for the decisions in force (see Runner and executor._finish)."""

    decisions: list[Decision] = field(default_factory=list)

    @property
    def digest(self) -> str:
        ids = sorted(d.id for d in self.decisions)
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16] if ids else ""

    def for_stage(self, stage_dir: str, reviewable: tuple[str, ...], last: bool) -> StageReview | None:
        """The part of the decisions one stage applies, or None when none concerns it."""
        # a keep applies where the reviewer saw the rejection only: a later stage's own
        # rejection of the record (the PII leak gate) stands
        keep = {d.record: d for d in self.decisions if d.action == "keep" and d.stage == stage_dir}
        drop = {d.record: d for d in self.decisions if d.action == "drop"} if last else {}
        mine: dict[str, list[dict[str, Any]]] = {}
        for d in self.decisions:
            if d.action in reviewable and d.stage == stage_dir:
                mine.setdefault(d.record, []).append(d.model_dump(exclude_none=True))
        if not (keep or drop or mine):
            return None
        return StageReview(
            keep={k: f"kept by {d.who}" + (f": {d.why}" if d.why else "") for k, d in keep.items()},
            drop={k: f"dropped by {d.who}" + (f": {d.why}" if d.why else "") for k, d in drop.items()},
            records=mine,
        )

    def first_changed_stage(self, applied: list[str], n_stages: int) -> int | None:
        """The first stage whose output the change from the ``applied`` decision ids to these
        changes (its index in the run's stage dirs), or None when nothing changed."""
        now = {d.id: d for d in self.decisions}
        changed = set(now) ^ set(applied)
        if not changed:
            return None
        stages = []
        for ident in changed:
            d = now.get(ident)
            if d is None:  # retracted, or its line removed: we no longer know where; redo all
                return 1
            if d.action == "rewrite_accept":
                continue
            stages.append(n_stages - 1 if d.action == "drop" else d.stage_index)
        return min(stages) if stages else None


@dataclass
class StageReview:
    """Decisions one stage's tasks apply: records to keep (id -> detail) wherever the stage
    rejected them, records to drop (the last stage), and per record the decisions the stage
    applies itself (in the batch's REVIEW_COLUMN)."""

    keep: dict[str, str]
    drop: dict[str, str]
    records: dict[str, list[dict[str, Any]]]


def load_overrides(run_dir: str | os.PathLike) -> Overrides:
    return Overrides(effective(load_decisions(run_dir)))


def summary(decisions: list[Decision]) -> dict[str, Any]:
    """For the manifest and the report: counts by action and reviewer, and the list itself."""
    by_action: dict[str, int] = {}
    by_who: dict[str, int] = {}
    for d in decisions:
        by_action[d.action] = by_action.get(d.action, 0) + 1
        by_who[d.who] = by_who.get(d.who, 0) + 1
    return {
        "decisions": len(decisions),
        "by_action": dict(sorted(by_action.items())),
        "by_reviewer": dict(sorted(by_who.items())),
        "applied": sorted(d.id for d in decisions),
    }
