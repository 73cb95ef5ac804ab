"""Deleting only what this tool wrote.

`--force` (a run directory) and `curate export -o DIR` replace a folder. They
must never delete a folder a user keeps other things in, least of all one
holding the inputs: a folder is removed only when it is absent, empty, or
carries the file this tool writes into it (a run's manifest.json, an export's
export.json), and holds no protected path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from curate.errors import CurateError


class UnsafeDeleteError(CurateError):
    """A folder that --force or an export would replace is not one this tool wrote."""


def check_removable(path: Path, kind: str, marker: str, protected: list[Path] = ()) -> None:
    """Raise unless ``path`` may be deleted and rewritten as a ``kind``."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise UnsafeDeleteError(f"{kind} '{path}' exists and is not a folder: choose another path.")
    for p in protected:
        if overlap(path, p):
            raise UnsafeDeleteError(
                f"refusing to replace {kind} '{path}': it holds or is inside '{p}', which this command reads. "
                "Choose another output folder."
            )
    if not any(path.iterdir()):
        return
    if not _ours(path / marker):
        raise UnsafeDeleteError(
            f"refusing to replace {kind} '{path}': it is not empty and this tool did not write it (no {marker}). "
            "Choose another output folder, or remove it yourself if you mean to."
        )


def overlap(a: Path, b: Path) -> bool:
    """Whether two existing paths are the same, or one lies inside the other (links resolved)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


def remove_owned(path: Path, kind: str, marker: str, protected: list[Path] = ()) -> None:
    check_removable(path, kind, marker, protected)
    if Path(path).exists():
        shutil.rmtree(path)


def _ours(marker: Path) -> bool:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # a run's manifest has its plan fingerprint; an export's export.json its splits
    return isinstance(data, dict) and ("plan_fingerprint" in data or ("splits" in data and "counts" in data))
