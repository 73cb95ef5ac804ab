"""What the review app shows, read from a run directory lazily (polars scans of its Parquet files).

Nothing loads the run into memory: a page is a filtered, sliced scan (a search over a million
records scans the text column once, in parallel), and counts come from stats.json where they
are known. Texts that have not been through ``pii.scrub`` (stages before it, their rejects) are
shown masked (curate.report.previews.mask: names, numbers and uncommon words blanked) unless the
app was started with ``--show-raw``.
"""

from __future__ import annotations

import difflib
import fcntl
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import ValidationError

from curate.errors import CurateError
from curate.records import text_digest
from curate.report.previews import mask
from curate.review.decisions import Decision, append_decision, load_decisions, validation_message

MAX_CHARS = 20_000  # a record's text is cut here in a page (the record is not)
_WORD = re.compile(r"\S+|\s+")


class ReviewError(CurateError):
    """A request the run cannot answer: says what is wrong."""


class RunView:
    """A run directory, for the review app."""

    def __init__(self, run_dir: str | os.PathLike, show_raw: bool = False):
        self.dir = Path(run_dir)
        if not (self.dir / "manifest.json").is_file() or not (self.dir / "stats.json").is_file():
            raise CurateError(
                f"'{run_dir}' is not a run directory (no manifest.json and stats.json). "
                "Give the folder `curate run` wrote, such as runs/demo."
            )
        self.show_raw = show_raw
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.reload()

    def reload(self) -> None:
        self.stats = json.loads((self.dir / "stats.json").read_text())
        self.stages = [s for s in self.stats["stages"] if (self.dir / s["dir"]).is_dir()]
        names = [s["stage"] for s in self.stages]
        self.pii_index = names.index("pii.scrub") if "pii.scrub" in names else None

    # -- state ----------------------------------------------------------------

    @property
    def in_progress(self) -> bool:
        """A run still being written (its lock is held, or its stats say it is not complete):
        the app shows it read-only."""
        if not self.stats.get("complete", False):
            return True
        lock = self.dir.parent / f".{self.dir.name}.lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.stats["name"],
            "run_dir": str(self.dir),
            "complete": self.stats.get("complete", False),
            "read_only": self.in_progress,
            "show_raw": self.show_raw,
            "records_in": self.stats["records_in"],
            "records_out": self.stats["records_out"],
            "stages": [
                {k: s.get(k) for k in ("dir", "stage", "in", "kept", "rejected", "rejected_by_reason", "modified")}
                for s in self.stages
            ],
            "pii_stage": self.stages[self.pii_index]["dir"] if self.pii_index is not None else None,
            "rewrite_stage": self._dir_of("rewrite.lexicon"),
            "cluster_stages": [s["dir"] for s in self.stages if (self.dir / s["dir"] / "clusters.parquet").exists()],
            "entities": self._entities(),
        }

    def _entities(self) -> list[str]:
        if self.pii_index is None:
            return []
        from curate.pii.engine import load_profile

        params = next(
            (s["params"] for s in self.manifest.get("stages", []) if s["stage"] == "pii.scrub"), {"profile": "hipaa"}
        )
        try:
            return load_profile(params.get("profile", "hipaa")).entities
        except CurateError:
            return []

    def _dir_of(self, stage: str) -> str | None:
        return next((s["dir"] for s in self.stages if s["stage"] == stage), None)

    def _index(self, stage_dir: str) -> int:
        for i, s in enumerate(self.stages):
            if s["dir"] == stage_dir:
                return i
        raise ReviewError(f"no stage '{stage_dir}' in this run: {', '.join(s['dir'] for s in self.stages)}")

    def _masked(self, stage_index: int) -> bool:
        """Whether texts at this stage (or rejected by it) are shown masked: they had not been
        through pii.scrub yet, and the app was not started with --show-raw."""
        return not self.show_raw and self.pii_index is not None and stage_index <= self.pii_index

    def _shown(self, text: str | None, masked: bool) -> str:
        text = text or ""
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS] + " […]"
        return mask(text) if masked else text

    # -- queries -----------------------------------------------------------------

    def _scan(self, stage_dir: str) -> pl.LazyFrame:
        parts = sorted((self.dir / stage_dir).glob("part-*.parquet"))
        if not parts:
            raise ReviewError(f"stage '{stage_dir}' has no records")
        return pl.scan_parquet(parts)

    def records(
        self, stage: str | None = None, q: str = "", field: str = "", value: str = "", offset: int = 0, limit: int = 25
    ) -> dict[str, Any]:
        """Records a stage kept (default: the last stage), searched by text and by a column or
        meta field."""
        stage = stage or self.stages[-1]["dir"]
        i = self._index(stage)
        lf = self._scan(stage)
        schema = lf.collect_schema()
        filters = _filters(schema, q, field, value)
        total = self.stages[i]["kept"] if not filters else _count(lf, filters)
        rows = _page(lf, filters, offset, limit, [c for c in ("id", "text", "source", "meta") if c in schema])
        masked = self._masked(i) and i != self.pii_index  # pii.scrub's own output is scrubbed
        return {
            "stage": stage,
            "total": total,
            "offset": offset,
            "masked": masked,
            "rows": [{**r, "text": self._shown(r["text"], masked)} for r in rows],
        }

    def rejects(
        self,
        stage: str | None = None,
        reason: str = "",
        q: str = "",
        source: str = "",
        offset: int = 0,
        limit: int = 25,
    ) -> dict[str, Any]:
        """Rejected records of one stage (default: the first that rejected any), with counts by reason."""
        counts = {s["dir"]: s["rejected_by_reason"] for s in self.stages if s["rejected"]}
        if not counts:
            return {"counts": {}, "total": 0, "rows": [], "stage": None, "offset": 0, "masked": False}
        stage = stage or next(iter(counts))
        i = self._index(stage)
        path = self.dir / "rejects" / f"{stage}.parquet"
        if not path.exists():
            return {"counts": counts, "total": 0, "rows": [], "stage": stage, "offset": 0, "masked": False}
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
        filters = _filters(schema, q, "", "")
        if reason:
            filters.append(pl.col("reason") == reason)
        if source:
            filters.append(pl.col("source").str.starts_with(source))
        total = (
            (sum(counts[stage].values()) if not reason else counts[stage].get(reason, 0))
            if not (q or source)
            else _count(lf, filters)
        )
        cols = [c for c in ("id", "text", "source", "reason", "detail", "duplicate_of") if c in schema]
        rows = _page(lf, filters, offset, limit, cols)
        masked = self._masked(i)
        return {
            "counts": counts,
            "stage": stage,
            "total": total,
            "offset": offset,
            "masked": masked,
            "keepable": i > 0 and not self.in_progress,
            "rows": [{**r, "text": self._shown(r["text"], masked)} for r in rows],
        }

    def clusters(self, stage: str | None = None, offset: int = 0, limit: int = 10) -> dict[str, Any]:
        """Near-duplicate clusters, largest first, each member beside the kept one with the
        words that differ marked."""
        stages = self.summary()["cluster_stages"]
        if not stages:
            return {"stage": None, "total": 0, "clusters": []}
        stage = stage or stages[0]
        i = self._index(stage)
        members = pl.scan_parquet(self.dir / stage / "clusters.parquet")
        order = (
            members.group_by("cluster")
            .agg(pl.len().alias("size"), pl.col("_order").min().alias("first"))
            .sort(["size", "first"], descending=[True, False])
        )
        total = order.select(pl.len()).collect().item()
        page = order.slice(offset, limit).collect()
        chosen = members.filter(pl.col("cluster").is_in(page["cluster"].implode())).collect()
        texts = dict(
            self._scan(self.stages[i - 1]["dir"])
            .filter(pl.col("id").is_in(chosen["id"].implode()))
            .select("id", "text")
            .collect()
            .iter_rows()
        )
        masked = self._masked(i)
        out = []
        for cluster in page["cluster"].to_list():
            rows = chosen.filter(pl.col("cluster") == cluster).sort("_order")
            kept_text = texts.get(cluster, "")
            group = []
            for r in rows.iter_rows(named=True):
                text = texts.get(r["id"], "")
                a, b = _word_diff(self._shown(kept_text, masked), self._shown(text, masked))
                group.append(
                    {"id": r["id"], "kept": r["kept"], "similarity": r["similarity"], "kept_side": a, "side": b}
                )
            out.append({"cluster": cluster, "size": len(rows), "members": group})
        return {"stage": stage, "total": total, "offset": offset, "masked": masked, "clusters": out}

    def pii(self, q: str = "", entity: str = "", offset: int = 0, limit: int = 25) -> dict[str, Any]:
        """Records pii.scrub changed (or all with ``q``), each replacement marked by type."""
        if self.pii_index is None:
            return {"stage": None, "total": 0, "rows": []}
        stage = self.stages[self.pii_index]["dir"]
        lf = self._scan(stage)
        filters = _filters(lf.collect_schema(), q, "", "")
        if entity:
            filters.append(pl.col("pii_spans").list.eval(pl.element().struct.field("entity") == entity).list.any())
        elif not q:
            filters.append(pl.col("pii_spans").list.len() > 0)
        total = _count(lf, filters)
        rows = _page(lf, filters, offset, limit, ["id", "text", "source", "pii_spans"])
        if self.show_raw and rows:
            raw = self._texts(self.stages[self.pii_index - 1]["dir"], [r["id"] for r in rows])
            for r in rows:
                r["raw"] = raw.get(r["id"], "")
        return {"stage": stage, "total": total, "offset": offset, "show_raw": self.show_raw, "rows": rows}

    def rewrites(self, rule: str = "", offset: int = 0, limit: int = 25) -> dict[str, Any]:
        """Records rewrite.lexicon changed: the text before and after, each edit with its rule."""
        stage = self._dir_of("rewrite.lexicon")
        if stage is None:
            return {"stage": None, "total": 0, "rows": []}
        lf = self._scan(stage)
        if "original" not in lf.collect_schema():
            raise ReviewError(f"{stage} kept no text from before the rewrite (keep_original: false)")
        filters = [pl.col("rewrites").list.len() > 0]
        if rule:
            filters.append(pl.col("rewrites").list.eval(pl.element().struct.field("rule") == rule).list.any())
        total = _count(lf, filters)
        rows = _page(lf, filters, offset, limit, ["id", "original", "text", "rewrites"])
        return {"stage": stage, "total": total, "offset": offset, "rows": rows}

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one view per app; a finished run does not change
    def charts(self) -> dict[str, Any]:
        """Rejected records by stage, reason and input file, for the interactive charts."""
        rows = []
        for s in self.stages:
            path = self.dir / "rejects" / f"{s['dir']}.parquet"
            if not s["rejected"] or not path.exists():
                continue
            grouped = (
                pl.scan_parquet(path)
                .select("reason", pl.col("source").str.replace(r":[^:/\\]*$", "").alias("input"))
                .group_by("reason", "input")
                .len()
                .collect()
            )
            rows += [{"stage": s["dir"], "reason": r, "input": i, "n": n} for r, i, n in grouped.iter_rows()]
        funnel = [{"stage": s["dir"], "in": s["in"], "kept": s["kept"]} for s in self.stages]
        return {"rejects": sorted(rows, key=lambda r: -r["n"]), "funnel": funnel}

    def _texts(self, stage_dir: str, ids: list[str]) -> dict[str, str]:
        return by_id(self._scan(stage_dir), ids, "text")

    # -- decisions ------------------------------------------------------------------

    def decisions(self) -> list[dict[str, Any]]:
        return [d.model_dump(exclude_none=True) for d in load_decisions(self.dir)]

    def decide(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        """Record a reviewer's decision (the app's POST). Span decisions come as positions in
        the scrubbed text the page shows; they are stored as positions in the text before
        scrubbing, with its hash, which is what the next run's pii.scrub sees."""
        if self.in_progress:
            raise ReviewError("this run is still in progress: the review is read-only until it finishes")
        action = body.get("action")
        fields: dict[str, Any] = {
            "who": (body.get("who") or who).strip() or who,
            "action": action,
            "why": str(body.get("why") or ""),
        }
        if action == "retract":
            fields["retracts"] = body.get("retracts")
        else:
            record = str(body.get("record") or "")
            fields["record"] = record
            if action == "keep":
                fields["stage"] = str(body.get("stage") or "")
            elif action == "drop":
                fields["stage"] = self.stages[-1]["dir"]
            elif action in ("pii_missed", "pii_false"):
                fields.update(self._span_fields(record, body))
            elif action in ("rewrite_undo", "rewrite_accept"):
                stage = self._dir_of("rewrite.lexicon")
                if stage is None:
                    raise ReviewError("this run has no rewrite.lexicon stage")
                before = self._texts(self.stages[self._index(stage) - 1]["dir"], [record]).get(record)
                if before is None:
                    raise ReviewError(f"no record '{record}' reached {stage}")
                fields.update(stage=stage, text_sha=text_digest(before))
        try:
            decision = Decision.model_validate(fields)
        except ValidationError as e:
            raise ReviewError(validation_message(e)) from None
        return append_decision(self.dir, decision).model_dump(exclude_none=True)

    def _span_fields(self, record: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.pii_index is None:
            raise ReviewError("this run has no pii.scrub stage")
        stage = self.stages[self.pii_index]["dir"]
        entity = str(body.get("entity") or "")
        try:
            start, end = int(body["start"]), int(body["end"])
        except (KeyError, TypeError, ValueError):
            raise ReviewError("a span needs 'start' and 'end' (character positions in the scrubbed text)") from None
        row = self._scan(stage).filter(pl.col("id") == record).select("text", "pii_spans").collect()
        if not len(row):
            raise ReviewError(f"no record '{record}' in {stage}")
        scrubbed, spans = row["text"][0], sorted(row["pii_spans"].to_list()[0] or [], key=lambda s: s["start"])
        raw = self._texts(self.stages[self.pii_index - 1]["dir"], [record]).get(record, "")
        if not 0 <= start < end <= len(scrubbed):
            raise ReviewError(f"span {start}-{end} is outside the text (length {len(scrubbed)})")
        out: dict[str, Any] = {"stage": stage, "text_sha": text_digest(raw)}
        if body.get("action") == "pii_false":
            hit = next((s for s in spans if s["start"] <= start and end <= s["end"]), None)
            if hit is None:
                raise ReviewError("a false detection is one of the marked replacements: click one")
            return {**out, "entity": hit["entity"], "raw_start": hit["raw_start"], "raw_end": hit["raw_end"],
                    "value": raw[hit["raw_start"] : hit["raw_end"]]}  # fmt: skip
        if any(s["start"] < end and start < s["end"] for s in spans):
            raise ReviewError("the selection overlaps a replacement: select only the text that was missed")
        if not entity:
            raise ReviewError("pick the type of the identifier (PERSON, PHONE_NUMBER, ...)")
        shift = sum((s["raw_end"] - s["raw_start"]) - (s["end"] - s["start"]) for s in spans if s["end"] <= start)
        raw_start, raw_end = start + shift, end + shift
        if raw[raw_start:raw_end] != scrubbed[start:end]:
            raise ReviewError("the selection could not be placed in the text before scrubbing")
        return {**out, "entity": entity, "raw_start": raw_start, "raw_end": raw_end}


def by_id(records: pl.LazyFrame, ids: list[str], column: str) -> dict[str, Any]:
    """``column`` of the records whose id is in ``ids``, by id (one filtered scan)."""
    return dict(records.filter(pl.col("id").is_in(ids)).select("id", column).collect().iter_rows())


def _filters(schema: Any, q: str, field: str, value: str) -> list[pl.Expr]:
    out = []
    if q:
        out.append(pl.col("text").str.contains("(?i)" + re.escape(q)))
    if field and value:
        if field in schema:
            out.append(pl.col(field).cast(pl.String).str.contains("(?i)" + re.escape(value)))
        elif "meta" in schema:
            path = "$." + field if not field.startswith("$") else field
            out.append(pl.col("meta").str.json_path_match(path).str.contains("(?i)" + re.escape(value)))
    return out


def _count(lf: pl.LazyFrame, filters: list[pl.Expr]) -> int:
    for f in filters:
        lf = lf.filter(f)
    return lf.select(pl.len()).collect().item()


def _page(lf: pl.LazyFrame, filters: list[pl.Expr], offset: int, limit: int, cols: list[str]) -> list[dict[str, Any]]:
    for f in filters:
        lf = lf.filter(f)
    return lf.select(cols).slice(max(offset, 0), max(1, min(limit, 200))).collect().to_dicts()


def _word_diff(a: str, b: str) -> tuple[list[list[Any]], list[list[Any]]]:
    """Both texts as [piece, changed] runs, marking the words that differ (difflib over words)."""
    wa, wb = _WORD.findall(a), _WORD.findall(b)
    left: list[list[Any]] = []
    right: list[list[Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        same = op == "equal"
        if i2 > i1:
            left.append(["".join(wa[i1:i2]), not same])
        if j2 > j1:
            right.append(["".join(wb[j1:j2]), not same])
    return left, right
