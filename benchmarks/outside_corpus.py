"""An outside near-duplicate corpus: real prose nobody in the project wrote, planted duplicates, gold.

    python benchmarks/outside_corpus.py [--docs 100000] [--out benchmarks/data/outside]

Text: paragraphs of the English documentation installed on this machine by its
OS packages (``/usr/share/doc``: READMEs, guides, changelogs, copyright files;
``/usr/share/man/man*``: man pages with the roff markup stripped) and the long
descriptions of the Python packages installed from PyPI (``*.dist-info/METADATA``).
Nothing from ``curate.synth``. Paragraphs of 12-400 words, at most 60 per file.

The base is cleaned of its own near-duplicates first (licence texts and
changelog lines repeat across packages): candidates from a rensa LSH tuned for
Jaccard 0.5, then every candidate pair's exact 5-word-shingle Jaccard (both
tokenisations below); a paragraph at >= 0.5 with an earlier one is dropped.
So every unplanted pair is far below any usual threshold.

Planted: ``--dup-share`` of the records are variants of a base paragraph,
each placed after its source at a random later position: exact copies, case
changes, whitespace changes, word edits (1-25% of words replaced, deleted or
doubled), sentence moves, web boilerplate added at the start or end, and
truncation (the last 5-40% of words cut). Their strength varies, so some
variants fall below the threshold: those are negatives.

Gold (``gold.jsonl``): each variant's id, its source's id, its kind and its
exact Jaccard with the source under two tokenisations: ``jaccard_ws`` (lower
case, split on whitespace: what a plain datasketch/rensa script does) and
``jaccard_curate`` (curate's: lower case, punctuation and symbols are
separators). A variant is a true near-duplicate at threshold t iff its
Jaccard >= t. The corpus is ``corpus.jsonl`` (``id``, ``text``); ``meta.json``
records the sources, counts and a SHA-256 of the corpus (it depends on the
packages installed, so compare numbers only on the same corpus).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
import sysconfig
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA  # noqa: E402

MIN_WORDS, MAX_WORDS, PER_FILE = 12, 400, 60
CLEAN_THRESHOLD = 0.5

# Web page furniture, the kind of text a crawl leaves around the content.
BOILERPLATE = [
    "Share this page: Facebook Twitter LinkedIn Email",
    "Skip to main content",
    "This site uses cookies to improve your experience. By continuing you agree to our cookie policy.",
    "Posted in Documentation | Leave a comment",
    "Read more >>",
    "Subscribe to our newsletter for updates.",
    "Copyright (c) 2024 All rights reserved. Privacy Policy | Terms of Use",
    "Home > Docs > Reference",
    "Was this page helpful? Yes No",
    "Previous | Next | Index",
]
KINDS = ["exact", "case", "whitespace", "edit", "reorder", "boilerplate", "truncate"]


# ---------------------------------------------------------------------------
# Sources


def _read(path: Path) -> str | None:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b"\0" in raw[:4096]:
        return None  # binary
    return raw.decode("utf-8", "replace")


_ROFF_ESCAPE = re.compile(r"\\f(?:\(..|\[[^]]*\]|.)|\\\(..|\\\[[^]]*\]|\\[-&e|^%]|\\s[-+]?\d")
_ROFF_BREAK = {".PP", ".LP", ".P", ".SH", ".SS", ".TP", ".IP", ".HP", ".sp", ".br"}


def _man_text(text: str) -> str:
    """A man page's prose: macro lines become paragraph breaks, inline escapes go."""
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            if line.split(" ", 1)[0] in _ROFF_BREAK:
                lines.append("")
            continue
        lines.append(_ROFF_ESCAPE.sub("", line))
    return "\n".join(lines)


def _paragraphs(text: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        words = block.split()
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            out.append(" ".join(words))
        if len(out) >= PER_FILE:
            break
    return out


def source_paragraphs() -> tuple[list[tuple[str, str]], Counter]:
    """(origin, paragraph) from every source, in a fixed order, exact repeats dropped."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    counts: Counter = Counter()

    def add(origin: str, paras: list[str]) -> None:
        for p in paras:
            if p.lower() not in seen:
                seen.add(p.lower())
                found.append((origin, p))
                counts[origin] += 1

    for path in sorted(Path("/usr/share/doc").rglob("*")):
        if path.is_file() and path.suffix not in {".png", ".gif", ".jpg", ".svg", ".css", ".js", ".pdf"}:
            if (text := _read(path)) is not None:
                add("debian-doc", _paragraphs(text))
    for path in sorted(Path("/usr/share/man").glob("man[0-9]*/*")):
        if (text := _read(path)) is not None:
            add("man", _paragraphs(_man_text(text)))
    site = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(site.glob("*.dist-info/METADATA")):
        if (text := _read(path)) is not None:
            add("pypi-metadata", _paragraphs(text.split("\n\n", 1)[-1]))
    return found, counts


# ---------------------------------------------------------------------------
# Similarity


def ws_shingles(text: str, n: int = 5) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def curate_shingles(text: str, n: int = 5) -> set[bytes]:
    from curate.minhash import shingles

    return set(shingles(text, n))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def clean_base(paras: list[str]) -> list[int]:
    """Indices of the paragraphs kept after dropping those >= CLEAN_THRESHOLD like an earlier kept one."""
    from rensa import RMinHash, RMinHashLSH

    # 32 bands x 4 rows: a pair at Jaccard 0.5 is a candidate 1 - (1 - 0.5**4)**32 = 87% of the
    # time, at 0.6 99%, at 0.8 100%; candidates are then checked exactly.
    lsh = RMinHashLSH(threshold=CLEAN_THRESHOLD, num_perm=128, num_bands=32)
    kept: list[int] = []
    ws: dict[int, set] = {}
    cur: dict[int, set] = {}
    for i, p in enumerate(paras):
        ws[i], cur[i] = ws_shingles(p), curate_shingles(p)
        m = RMinHash(num_perm=128, seed=7)
        m.update([s.decode() for s in cur[i]] or [p])
        near = any(max(jaccard(ws[i], ws[j]), jaccard(cur[i], cur[j])) >= CLEAN_THRESHOLD for j in lsh.query(m))
        if not near:
            lsh.insert(i, m)
            kept.append(i)
        else:
            del ws[i], cur[i]
    return kept


# ---------------------------------------------------------------------------
# Variants


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?;:])\s+", text) if s]


def make_variant(text: str, rng: random.Random) -> tuple[str, str]:
    """(kind, variant text) of one planted near-duplicate."""
    kind = rng.choice(KINDS)
    words = text.split(" ")
    if kind == "exact":
        return kind, text
    if kind == "case":
        return kind, rng.choice([text.upper(), text.lower(), text.title()])
    if kind == "whitespace":
        return kind, "".join(w + rng.choice([" ", "  ", "\n", "\t", " \n "]) for w in words).strip() + "\n"
    if kind == "edit":
        rate = rng.choice([0.01, 0.03, 0.05, 0.08, 0.12, 0.18, 0.25])
        out: list[str] = []
        vocab = [w for w in words if w.isalpha()] or words
        for w in words:
            r = rng.random()
            if r < rate / 3:
                continue  # deleted
            if r < 2 * rate / 3:
                out.append(rng.choice(vocab))  # replaced by another word of the paragraph
            elif r < rate:
                out.extend([w, w])  # doubled
            else:
                out.append(w)
        return kind, " ".join(out or words)
    if kind == "reorder":
        sents = _sentences(text)
        if len(sents) < 2:
            return "edit", " ".join(words[1:] + words[:1])  # nothing to move: the first word goes last
        i = rng.randrange(len(sents))
        moved = sents.pop(i)
        sents.insert(rng.choice([j for j in range(len(sents) + 1) if j != i]), moved)
        return kind, " ".join(sents)
    if kind == "boilerplate":
        extra = " ".join(rng.sample(BOILERPLATE, rng.randint(1, 2)))
        return kind, (f"{extra}\n{text}" if rng.random() < 0.5 else f"{text}\n{extra}")
    cut = rng.choice([0.05, 0.1, 0.2, 0.3, 0.4])
    return "truncate", " ".join(words[: max(MIN_WORDS // 2, round(len(words) * (1 - cut)))])


def build(docs: int, dup_share: float, seed: int, out: Path) -> dict:
    rng = random.Random(seed)
    found, counts = source_paragraphs()
    n_base = docs - round(docs * dup_share)
    order = list(range(len(found)))
    rng.shuffle(order)
    pool = [found[i] for i in order[: int(n_base * 1.3)]]  # spare for what cleaning drops
    kept = clean_base([p for _, p in pool])
    if len(kept) < n_base:
        raise SystemExit(f"only {len(kept)} distinct paragraphs after cleaning; ask for fewer --docs")
    base = [pool[i] for i in kept[:n_base]]
    records: list[dict] = [{"id": f"p{i:06d}", "text": p} for i, (_, p) in enumerate(base)]
    origins = Counter(o for o, _ in base)

    gold = []
    sources = rng.sample(range(n_base), docs - n_base)
    positions = []  # (position among the base records after which the variant goes, variant)
    for k, src in enumerate(sources):
        kind, text = make_variant(base[src][1], rng)
        vid = f"v{k:06d}"
        gold.append(
            {
                "id": vid,
                "source": f"p{src:06d}",
                "kind": kind,
                "jaccard_ws": round(jaccard(ws_shingles(base[src][1]), ws_shingles(text)), 4),
                "jaccard_curate": round(jaccard(curate_shingles(base[src][1]), curate_shingles(text)), 4),
            }
        )
        positions.append((rng.randint(src, n_base - 1), k, {"id": vid, "text": text}))
    merged: list[dict] = []
    after: dict[int, list[dict]] = {}
    for pos, _, rec in sorted(positions, key=lambda x: (x[0], x[1])):
        after.setdefault(pos, []).append(rec)
    for i, rec in enumerate(records):
        merged.append(rec)
        merged.extend(after.get(i, []))

    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    with open(corpus, "w") as fh:
        for rec in merged:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with open(out / "gold.jsonl", "w") as fh:
        for g in gold:
            fh.write(json.dumps(g) + "\n")
    meta = {
        "docs": len(merged),
        "base": n_base,
        "variants": len(gold),
        "seed": seed,
        "kinds": dict(Counter(g["kind"] for g in gold)),
        "base_by_source": dict(origins),
        "paragraphs_found_by_source": dict(counts),
        "dropped_as_natural_near_duplicates": len(pool) - len(kept),
        "mean_words": round(sum(len(r["text"].split()) for r in merged) / len(merged), 1),
        "sha256": hashlib.sha256(corpus.read_bytes()).hexdigest(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def ensure(docs: int = 100_000, dup_share: float = 1 / 6, seed: int = 0, out: Path | None = None) -> Path:
    """The corpus folder for these settings, built once and reused."""
    out = out or DATA / f"outside_{docs}_{seed}"
    meta = out / "meta.json"
    if not meta.exists() or json.loads(meta.read_text()).get("docs") != docs:
        build(docs, dup_share, seed, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dup-share", type=float, default=1 / 6, help="share of records that are planted variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or DATA / f"outside_{args.docs}_{args.seed}"
    print(json.dumps(build(args.docs, args.dup_share, args.seed, out), indent=2))
    print(f"wrote {out}/corpus.jsonl and gold.jsonl")


if __name__ == "__main__":
    main()
