"""Lexicons: substitution catalogues as data, one CSV file per lexicon in lexicons/.

Schema (a header row, then one entry per row; lines starting with # are comments):

    source       the form to replace: a singular noun, or a phrase ("every man")
    replacement  what it becomes (singular; the engine inflects it)
    pos          NOUN (matched only where spaCy tags a noun), PHRASE (token sequence), or ANY
    notes        free text: where the entry came from, why it is there
    context      optional condition: "not_before:WORD" or "not_after:WORD" (may repeat, ';'-separated)

`curate lexicon check FILE` validates a lexicon: empty fields, unknown pos,
duplicate or conflicting entries, and replacements that are themselves
rewritten (chains and cycles) are errors that name the line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import RecipeError, did_you_mean

LEXICON_DIR = Path(__file__).resolve().parents[2] / "lexicons"
POS_VALUES = ("NOUN", "PHRASE", "ANY")
COLUMNS = ("source", "replacement", "pos", "notes", "context")


@dataclass(frozen=True)
class Entry:
    source: str
    replacement: str
    pos: str
    notes: str
    context: tuple[tuple[str, str], ...]
    line: int
    lexicon: str

    @property
    def rule_id(self) -> str:
        return f"{self.lexicon}:{self.source}"


@dataclass
class Lexicon:
    name: str
    path: Path
    entries: list[Entry] = field(default_factory=list)


class LexiconError(RecipeError):
    """A lexicon file is invalid; the message names the file and line."""


def available_lexicons() -> list[str]:
    return sorted(p.stem for p in LEXICON_DIR.glob("*.csv") if not p.stem.endswith(".exclusions"))


def resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".csv":
        if not path.exists():
            raise LexiconError(f"lexicon file '{path}' does not exist.")
        return path
    path = LEXICON_DIR / f"{name_or_path}.csv"
    if not path.exists():
        raise LexiconError(
            f"unknown lexicon '{name_or_path}'.{did_you_mean(name_or_path, available_lexicons())} "
            f"Shipped: {', '.join(available_lexicons())}; or give a path to a .csv lexicon."
        )
    return path


def load_lexicon(name_or_path: str) -> Lexicon:
    """Read and validate a lexicon; raises LexiconError listing every problem with its line."""
    path = resolve(name_or_path)
    name = path.stem
    problems: list[str] = []
    entries: list[Entry] = []
    with open(path, newline="", encoding="utf-8") as fh:
        numbered = [(i, line) for i, line in enumerate(fh, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise LexiconError(f"{path}: empty lexicon (expected a header row: {','.join(COLUMNS)})")
    reader = csv.reader([line for _, line in numbered])
    header = [h.strip() for h in next(reader)]
    missing = [c for c in ("source", "replacement") if c not in header]
    if missing:
        raise LexiconError(f"{path}:{numbered[0][0]}: header lacks {missing}; columns are {','.join(COLUMNS)}")
    for (lineno, _), row in zip(numbered[1:], reader):
        rec = {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)}
        source, repl = rec.get("source", ""), rec.get("replacement", "")
        pos = (rec.get("pos") or "NOUN").upper()
        if not source:
            problems.append(f"line {lineno}: empty source")
            continue
        if not repl:
            problems.append(f"line {lineno}: empty replacement for '{source}'")
            continue
        if pos not in POS_VALUES:
            problems.append(f"line {lineno}: pos '{pos}' for '{source}' is not one of {', '.join(POS_VALUES)}")
            continue
        context = []
        for cond in filter(None, (c.strip() for c in rec.get("context", "").split(";"))):
            kind, _, word = cond.partition(":")
            if kind not in ("not_before", "not_after") or not word:
                problems.append(f"line {lineno}: context '{cond}' must be not_before:WORD or not_after:WORD")
            context.append((kind, word.lower()))
        entries.append(Entry(source, repl, pos, rec.get("notes", ""), tuple(context), lineno, name))

    by_source: dict[str, Entry] = {}
    for e in entries:
        key = e.source.lower()
        if key in by_source:
            first = by_source[key]
            kind = "duplicate" if first.replacement == e.replacement else "conflicting"
            problems.append(
                f"line {e.line}: {kind} entry for '{e.source}' (also line {first.line}: -> '{first.replacement}')"
            )
        else:
            by_source[key] = e
    for e in by_source.values():
        seen, current, chain = {e.source.lower()}, e, [e]
        while current.replacement.lower() in by_source:
            current = by_source[current.replacement.lower()]
            chain.append(current)
            if current.source.lower() in seen:
                path_txt = " -> ".join([c.source for c in chain])
                lines = ", ".join(str(c.line) for c in chain[:-1])
                problems.append(f"line {e.line}: cycle {path_txt} (lines {lines})")
                break
            seen.add(current.source.lower())
        else:
            if len(chain) > 1:
                problems.append(
                    f"line {e.line}: '{e.source}' -> '{e.replacement}', which line {chain[1].line} rewrites again; "
                    f"map '{e.source}' to the final form directly"
                )
    if problems:
        unique = list(dict.fromkeys(problems))
        raise LexiconError(f"{path}: {len(unique)} problem(s):\n" + "\n".join(f"  - {p}" for p in unique))
    return Lexicon(name=name, path=path, entries=entries)
