"""Gender-neutral rewriting quality and speed on hand-written sentences with references.

    python benchmarks/bench_rewrite.py

Writes benchmarks/results/rewrite.json. Two sets in tests/data/:
gender_neutral_eval.tsv (112 sentences, written together with the engine:
the development set) and gender_neutral_heldout.tsv (30 sentences written
afterwards and never tuned on). Exact match is the share of sentences whose
output equals the reference exactly; token accuracy is the share of
reference tokens reproduced in place (difflib alignment on whitespace
tokens); name_changes counts sentences in which a person's name changed.
"""

from __future__ import annotations

import csv
import difflib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

from curate.rewrite.engine import build_rewriter  # noqa: E402
from curate.rewrite.lexicon import load_lexicon  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def score(path: Path, rewriter) -> dict:
    rows = list(csv.DictReader(open(path, encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE))
    t = time.perf_counter()
    outs = [o for o, _ in rewriter.rewrite_many([r["original"] for r in rows])]
    seconds = time.perf_counter() - t
    exact = sum(o == r["reference"] for o, r in zip(outs, rows))
    matched = total = 0
    for o, r in zip(outs, rows):
        ref, got = r["reference"].split(), o.split()
        matched += sum(b.size for b in difflib.SequenceMatcher(a=ref, b=got, autojunk=False).get_matching_blocks())
        total += len(ref)
    name_changes = 0
    for o, r in zip(outs, rows):
        if r["category"] in ("names", "named"):
            names = [w.strip(".,") for w in r["original"].split()[1:] if w[:1].isupper() and w.strip(".,").isalpha()]
            name_changes += any(n not in o for n in names)
    failures = [
        {"original": r["original"], "got": o, "reference": r["reference"]}
        for o, r in zip(outs, rows)
        if o != r["reference"]
    ]
    return {
        "sentences": len(rows),
        "exact_match": round(exact / len(rows), 4),
        "token_accuracy": round(matched / total, 4),
        "name_changes": name_changes,
        "sentences_per_s": round(len(rows) / seconds, 1),
        "failures": failures,
    }


def full_parse_rewriter():
    """The engine as it was before the parse was trimmed: the whole spaCy pipeline (NER included)
    on every text that needs a parse, and the attribute ruler's own Matcher. Same output (checked
    below); the baseline the speed-up is measured against, in the same run."""
    from curate.nlp import light_imports
    from curate.rewrite.engine import DEFAULT_SPACY_MODEL, Rewriter
    from curate.rewrite.lexicon import load_lexicon

    with light_imports():
        import spacy

        nlp = spacy.load(DEFAULT_SPACY_MODEL)
    rw = Rewriter(load_lexicon("gender_neutral").entries, True)
    rw.__dict__["nlp"] = nlp
    rw.__dict__["_ner"] = None  # parse with the NER, every time
    return rw


def sample_sets() -> dict[str, list[str]]:
    import gzip
    import json

    import polars as pl

    repo = Path(__file__).resolve().parents[1]
    sets = {
        "job_posts": pl.read_csv(repo / "data_samples" / "job_posts.csv")["text"].to_list(),
        "web_scrape": [json.loads(x)["content"] for x in gzip.open(repo / "data_samples" / "web_scrape.jsonl.gz")],
    }
    sets["both"] = [x for texts in sets.values() for x in texts]
    return sets


def samples(rewriter, repeats: int = 5) -> dict:
    """Records per second on one core (this process) on the job-post and web samples: how many
    the no-parse check lets through, how many change, and the time rewrite_many takes (median
    of ``repeats``, interleaved with the full-parse baseline, whose output must be the same)."""
    import statistics

    sets = sample_sets()
    baseline = full_parse_rewriter()
    baseline.rewrite("Warm up the chairman.")
    out = {}
    for name, texts in sets.items():
        runs: dict[str, list[float]] = {"curate": [], "full_parse": []}
        for _ in range(repeats):
            for label, rw in (("curate", rewriter), ("full_parse", baseline)):
                t = time.perf_counter()
                rewritten = rw.rewrite_many(texts)
                runs[label].append(time.perf_counter() - t)
                if label == "curate":
                    ours = rewritten
                else:
                    assert rewritten == ours, f"{name}: output differs from the full parse"
        seconds = statistics.median(runs["curate"])
        base = statistics.median(runs["full_parse"])
        out[name] = {
            "records": len(texts),
            "parsed": sum(rewriter.may_change(x) for x in texts),
            "changed": sum(o != x for (o, _), x in zip(ours, texts)),
            "records_per_s_per_core": round(len(texts) / seconds, 1),
            "full_parse_records_per_s_per_core": round(len(texts) / base, 1),
            "speedup_vs_full_parse": round(base / seconds, 2),
            "same_output_as_full_parse": True,
        }
    return out


def parse_floor(rewriter, sets: dict[str, list[str]], repeats: int = 5) -> dict:
    """What the parse alone costs on the texts the stage must parse (those may_change lets
    through): seconds per spaCy component (median of ``repeats``, one core), and the records a
    second a core the stage could reach if everything but the embedding and the parser were
    free. The rewrite's output depends on both (parts of speech, dependencies, sentences), so
    this is a ceiling for the same output with this model."""
    import statistics

    nlp = rewriter.nlp
    out = {}
    for name, texts in sets.items():
        parsed = [t for t in texts if rewriter.may_change(t)]
        runs: dict[str, list[float]] = {}
        for _ in range(repeats):
            docs = [nlp.make_doc(t) for t in parsed]
            for component, proc in nlp.pipeline:
                if component == "ner":  # runs only on a name-shaped token (Rewriter._is_person)
                    continue
                t = time.perf_counter()
                docs = list(proc.pipe(docs, batch_size=64))
                runs.setdefault(component, []).append(time.perf_counter() - t)
        seconds = {k: round(statistics.median(v), 4) for k, v in runs.items()}
        neural = seconds.get("tok2vec", 0.0) + seconds.get("parser", 0.0)
        out[name] = {
            "records": len(texts),
            "parsed": len(parsed),
            "tokens_per_parsed_record": round(sum(len(d) for d in docs) / max(len(docs), 1), 1),
            "component_seconds": seconds,
            "ceiling_records_per_s_per_core": round(len(texts) / neural, 1) if neural else None,
        }
    return out


def main() -> None:
    lex = load_lexicon("gender_neutral")
    rewriter = build_rewriter(("gender_neutral",))
    rewriter.rewrite("Warm up the chairman.")
    result = {
        "catalogue_entries": len(lex.entries),
        "catalogue_singular_nouns": sum(e.pos == "NOUN" for e in lex.entries),
        "dev": score(DATA / "gender_neutral_eval.tsv", rewriter),
        "heldout": score(DATA / "gender_neutral_heldout.tsv", rewriter),
    }
    # throughput on more text: the dev sentences repeated
    rows = list(
        csv.DictReader(open(DATA / "gender_neutral_eval.tsv", encoding="utf-8"), delimiter="\t", quoting=csv.QUOTE_NONE)
    )
    texts = [r["original"] for r in rows] * 20
    t = time.perf_counter()
    rewriter.rewrite_many(texts)
    result["sentences_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    result["samples"] = samples(rewriter)
    result["parse_floor"] = parse_floor(rewriter, sample_sets())
    result["exact_match"] = result["dev"]["exact_match"]
    result["exact_match_heldout"] = result["heldout"]["exact_match"]
    result["token_accuracy"] = result["dev"]["token_accuracy"]
    write_result("rewrite", result)


if __name__ == "__main__":
    main()
