"""The quality gate: thresholds on a finished run, checked before anything trains on it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from curate.errors import CurateError


class GateFailed(CurateError):
    """A gate threshold failed; the message lists every failing threshold."""


class GateSpec(BaseModel):
    """The `gate:` section of a recipe. Every threshold that is set must hold."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    min_records: int | None = Field(default=None, ge=0)
    """At least this many records in the output."""
    max_reject_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    """At most this share of the input records rejected, over all stages."""
    max_stage_reject_rate: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = {}
    """Per stage (by name, e.g. filter.length): at most this share of its input rejected, by every
    instance of the stage when the recipe lists it more than once."""
    max_pii_leaks: int | None = Field(default=None, ge=0)
    """At most this many records quarantined by the PII leak gate (pii_leak)."""
    validation_success: bool = False
    """The Great Expectations validation (the `validate:` section) must pass."""


def evaluate(spec: GateSpec, stats: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
    checks = []

    def check(name: str, ok: bool, actual: Any, limit: Any) -> None:
        checks.append({"threshold": name, "passed": bool(ok), "actual": actual, "limit": limit})

    if spec.min_records is not None:
        check("min_records", stats["records_out"] >= spec.min_records, stats["records_out"], spec.min_records)
    if spec.max_reject_rate is not None:
        rate = round(stats["rejected"] / stats["records_in"], 4) if stats["records_in"] else 0.0
        check("max_reject_rate", rate <= spec.max_reject_rate, rate, spec.max_reject_rate)
    for name, limit in spec.max_stage_reject_rate.items():
        instances = [s for s in stats["stages"] if s["stage"] == name]
        for s in instances:
            rate = round(s["rejected"] / s["in"], 4) if s["in"] else 0.0
            label = f"{name} ({s['dir']})" if len(instances) > 1 else name
            check(f"max_stage_reject_rate[{label}]", rate <= limit, rate, limit)
    if spec.max_pii_leaks is not None:
        leaks = sum(s["rejected_by_reason"].get("pii_leak", 0) for s in stats["stages"])
        check("max_pii_leaks", leaks <= spec.max_pii_leaks, leaks, spec.max_pii_leaks)
    if spec.validation_success:
        ok = bool(validation and validation["success"])
        check("validation_success", ok, validation["success"] if validation else None, True)
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def failure_message(result: dict[str, Any]) -> str:
    failed = [c for c in result["checks"] if not c["passed"]]
    lines = [f"{c['threshold']}: actual {c['actual']}, limit {c['limit']}" for c in failed]
    return "quality gate failed (report.html shows why):\n" + "\n".join(f"  - {line}" for line in lines)
