"""PII detection: precision/recall/F2 per entity type vs Presidio's default engine, and speed.

    python benchmarks/bench_pii.py [--split test] [--speed-docs 2000]

Writes benchmarks/results/pii.json. Documents come from curate.pii.synth
(templates with known spans; dev and test use disjoint templates and seeds;
detectors were tuned on dev only, the numbers reported are on test).

Speed is reported for the pii.scrub stage (curate_docs_per_s: from the
stage's start, engine loading in the workers included, to its last shard)
and end to end (the whole `curate run`, process start-up included).

A gold span counts as found when detected spans (of any type: what matters
for privacy is that the text is gone) cover at least 90% of its characters.
A detected span is correct when it overlaps some gold span. Structured
identifiers: SSN, phone, email, MRN, IBAN, card.

Speed, same documents, same run, both cores: Presidio's per-document
AnalyzerEngine.analyze loop, its BatchAnalyzerEngine (batch 64, n_process=2),
and `curate run` with pii.scrub (full profile, anonymisation and leak gate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DATA, write_result  # noqa: E402

from curate.pii.engine import DEFAULT_SPACY_MODEL, analyze, build_engine, offline_tldextract  # noqa: E402
from curate.pii.synth import pii_eval_set  # noqa: E402

STRUCTURED = ("US_SSN", "PHONE_NUMBER", "EMAIL_ADDRESS", "MEDICAL_RECORD_NUMBER", "IBAN_CODE", "CREDIT_CARD")


def presidio_default():
    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": DEFAULT_SPACY_MODEL}]}
    return AnalyzerEngine(
        nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine(), supported_languages=["en"]
    )


def score(docs: list[dict], predicted: list[list[tuple[int, int, str]]]) -> dict:
    found, total = defaultdict(int), defaultdict(int)
    pred_ok, pred_all = defaultdict(int), defaultdict(int)
    for doc, spans in zip(docs, predicted):
        covered = [False] * len(doc["text"])
        for s, e, _ in spans:
            for i in range(s, e):
                covered[i] = True
        for g in doc["spans"]:
            total[g["entity"]] += 1
            n = g["end"] - g["start"]
            if sum(covered[g["start"] : g["end"]]) >= 0.9 * n:
                found[g["entity"]] += 1
        for s, e, ent in spans:
            pred_all[ent] += 1
            if any(s < g["end"] and g["start"] < e for g in doc["spans"]):
                pred_ok[ent] += 1

    def prf(tp_r: int, n_r: int, tp_p: int, n_p: int) -> dict:
        r = tp_r / n_r if n_r else 1.0
        p = tp_p / n_p if n_p else 1.0
        f2 = 5 * p * r / (4 * p + r) if p + r else 0.0
        return {"precision": round(p, 4), "recall": round(r, 4), "f2": round(f2, 4), "gold": n_r, "detected": n_p}

    out = {"overall": prf(sum(found.values()), sum(total.values()), sum(pred_ok.values()), sum(pred_all.values()))}
    s_found = sum(found[e] for e in STRUCTURED)
    s_total = sum(total[e] for e in STRUCTURED)
    out["structured_recall"] = round(s_found / s_total, 4) if s_total else 1.0
    out["by_entity"] = {e: prf(found[e], total[e], pred_ok.get(e, 0), pred_all.get(e, 0)) for e in sorted(total)}
    out["detected_types_not_in_gold"] = {e: pred_all[e] for e in sorted(pred_all) if e not in total}
    return out


def run_ours(docs: list[dict]) -> list[list[tuple[int, int, str]]]:
    out: list = [None] * len(docs)
    for profile in sorted({d["profile"] for d in docs}):
        idx = [i for i, d in enumerate(docs) if d["profile"] == profile]
        engine = build_engine(profile)
        for i, spans in zip(idx, analyze(engine, [docs[i]["text"] for i in idx])):
            out[i] = [(s.start, s.end, s.entity) for s in spans]
    return out


def run_presidio(engine, docs: list[dict]) -> list[list[tuple[int, int, str]]]:
    return [[(r.start, r.end, r.entity_type) for r in engine.analyze(d["text"], language="en")] for d in docs]


def speed(docs: list[dict], workdir: Path) -> dict:
    from presidio_analyzer import BatchAnalyzerEngine

    texts = [d["text"] for d in docs]
    out: dict = {"docs": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts), 1)}
    engine = presidio_default()
    engine.analyze(texts[0], language="en")
    t = time.perf_counter()
    for text in texts:
        engine.analyze(text, language="en")
    out["presidio_loop_docs_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)

    batch = BatchAnalyzerEngine(analyzer_engine=engine)
    t = time.perf_counter()
    list(batch.analyze_iterator(texts, language="en", batch_size=64, n_process=2))
    out["presidio_batch_docs_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)

    from curate.pipeline import Runner
    from curate.recipe import load_recipe

    path = workdir / "speed.jsonl"
    with open(path, "w") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d["text"]}) + "\n")
    run_dir = workdir / "speed_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    plan = load_recipe(
        {
            "name": "bench-pii",
            "input": [str(path)],
            "stages": [{"stage": "pii.scrub", "profile": "hipaa", "leak_gate": "quarantine"}],
            "run": {"workers": os.cpu_count() or 2, "shard_size": 250},
            "output": {"run_dir": str(run_dir)},
        }
    )
    t = time.perf_counter()
    stats = Runner(plan).run()
    dt = time.perf_counter() - t
    # end to end: process start-up, reading, scrubbing, leak gate, writing; Presidio's figures
    # exclude building its engine (done before its clock starts)
    out["curate_end_to_end_docs_per_s"] = round(len(texts) / dt, 1)
    out["curate_docs_per_s"] = stats["stages"][-1]["records_per_s"]  # the pii.scrub stage itself
    out["leaks_quarantined"] = stats["stages"][-1]["rejected"]
    out["speedup_vs_presidio_batch"] = round(out["curate_docs_per_s"] / out["presidio_batch_docs_per_s"], 2)
    out["speedup_vs_presidio_loop"] = round(out["curate_docs_per_s"] / out["presidio_loop_docs_per_s"], 2)
    out["end_to_end_speedup_vs_presidio_batch"] = round(
        out["curate_end_to_end_docs_per_s"] / out["presidio_batch_docs_per_s"], 2
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["dev", "test"])
    ap.add_argument("--speed-docs", type=int, default=6000)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    docs = pii_eval_set(args.split)
    result: dict = {"split": args.split, "docs": len(docs), "spacy_model": DEFAULT_SPACY_MODEL}
    result["curate"] = score(docs, run_ours(docs))
    result["presidio_default"] = score(docs, run_presidio(presidio_default(), docs))
    for family in ("clinical", "ticket", "eu_form"):
        sub = [i for i, d in enumerate(docs) if d["family"] == family]
        ours = run_ours([docs[i] for i in sub])
        result.setdefault("curate_by_family", {})[family] = score([docs[i] for i in sub], ours)["overall"]
    result["recall"] = result["curate"]["overall"]["recall"]
    result["precision"] = result["curate"]["overall"]["precision"]
    result["f2"] = result["curate"]["overall"]["f2"]
    result["structured_recall"] = result["curate"]["structured_recall"]
    if not args.no_speed:
        workdir = DATA / "pii_work"
        workdir.mkdir(parents=True, exist_ok=True)
        # clinical notes and tickets, the hipaa profile's domain (EU forms would be quarantined by the
        # leak gate for their national ids, which HIPAA does not cover)
        pool = pii_eval_set("dev", per_template=400) + docs
        speed_docs = [d for d in pool if d["profile"] == "hipaa"][: args.speed_docs]
        result["speed"] = speed(speed_docs, workdir)
        result["docs_per_s"] = result["speed"]["curate_docs_per_s"]
    write_result("pii" if args.split == "test" else "pii_dev", result)


if __name__ == "__main__":
    main()
