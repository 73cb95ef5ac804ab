"""dedup.semantic: the real offline MiniLM encoder on small paraphrase sets."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from curate.errors import RecipeError
from curate.recipe import load_recipe
from curate.stages.semantic import SemanticDedup, _kmeans

from .conftest import output, rejects, run, stage_stats, write_jsonl

pytestmark = pytest.mark.slow  # loads torch and the encoder

# Paraphrase pairs (MiniLM cosine 0.92-0.99) and unrelated sentences (below 0.5 with everything).
PAIRS = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("The patient was discharged home in stable condition.", "Patient discharged home, condition stable."),
    ("My order arrived damaged and I want a refund.", "The order I received was damaged, I would like a refund."),
    ("The meeting has been moved to Thursday afternoon.", "We moved the meeting to Thursday afternoon."),
    ("Please update the billing address on my account.", "Please change the billing address on my account."),
    ("The server crashed after the latest update.", "After the latest update the server crashed."),
]
DISTINCT = [
    "Quarterly revenue rose by 12 percent.",
    "The contract expires at the end of March.",
    "Blood pressure was 120 over 80.",
    "Our office is closed on public holidays.",
    "The shipment is delayed by customs.",
    "Install the driver before connecting the printer.",
    "The court adjourned until next week.",
    "Interest rates were left unchanged.",
]


def corpus(workdir: Path) -> list[str]:
    texts = [a for a, _ in PAIRS] + DISTINCT + [b for _, b in PAIRS]  # each copy after its source
    write_jsonl(workdir / "a.jsonl", [{"text": t} for t in texts])
    return texts


def semantic_run(workdir: Path, workers: int = 2, run_dir: str = "runs/t", **params) -> dict:
    return run(
        {
            "input": ["a.jsonl"],
            "stages": [{"stage": "dedup.semantic", "threshold": 0.9, **params}],
            "run": {"workers": workers, "shard_size": 5},
            "output": {"run_dir": run_dir},
        }
    )


def test_paraphrases_removed_distinct_kept_and_conserved(workdir: Path):
    import torch
    from transformers import PreTrainedModel
    from transformers.initialization import TORCH_INIT_FUNCTIONS

    def inits() -> dict:
        swapped = {"init_weights": PreTrainedModel.init_weights, "tie_weights": PreTrainedModel.tie_weights}
        return swapped | {name: getattr(torch.nn.init, name) for name in TORCH_INIT_FUNCTIONS}

    before = inits()
    texts = corpus(workdir)
    stats = semantic_run(workdir)
    # The encoder loads once, by one thread. from_pretrained swaps PreTrainedModel.init_weights,
    # tie_weights and torch.nn.init functions for no-ops while it loads; two loads at once (the warm-up
    # thread and the first task) left tie_weights a no-op for the rest of the process, so a model
    # trained afterwards had untied embeddings (a DPO test caught it).
    assert inits() == before
    st = stage_stats(stats, "dedup.semantic")
    assert st["in"] == len(texts) == st["kept"] + st["rejected"]
    kept = output("runs/t")["text"].to_list()
    assert sorted(kept) == sorted([a for a, _ in PAIRS] + DISTINCT)
    rej = rejects("runs/t", "01_dedup.semantic")
    assert set(rej["reason"]) == {"semantic_duplicate"}
    assert rej["similarity"].min() >= 0.9 and rej["duplicate_of"].null_count() == 0
    clusters = pl.read_parquet("runs/t/01_dedup.semantic/clusters.parquet")
    assert len(clusters) == 2 * len(PAIRS) and clusters["kept"].sum() == len(PAIRS)
    assert st["global"]["near_duplicates"] == len(PAIRS)


def test_one_and_two_workers_decide_the_same(workdir: Path):
    corpus(workdir)
    semantic_run(workdir, workers=1, run_dir="runs/w1")
    semantic_run(workdir, workers=2, run_dir="runs/w2")
    a = rejects("runs/w1", "01_dedup.semantic").sort("id")
    b = rejects("runs/w2", "01_dedup.semantic").sort("id")
    assert a.select("id", "duplicate_of", "similarity").equals(b.select("id", "duplicate_of", "similarity"))


def test_keep_longest(workdir: Path):
    corpus(workdir)
    semantic_run(workdir, keep="longest")
    kept = set(output("runs/t")["text"].to_list())
    for a, b in PAIRS:
        assert (a if len(a) >= len(b) else b) in kept


def test_small_buckets_still_pair_paraphrases(workdir: Path):
    corpus(workdir)
    stats = semantic_run(workdir, bucket_size=4)
    st = stage_stats(stats, "dedup.semantic")
    assert st["global"]["buckets"] > 1
    assert st["global"]["near_duplicates"] == len(PAIRS)  # close pairs share a k-means bucket


def test_kmeans_separates_clear_groups():
    import numpy as np

    rng = np.random.default_rng(0)
    centers = np.eye(4, 16)
    emb = np.repeat(centers, 25, axis=0) + rng.normal(0, 0.05, (100, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = _kmeans(emb.astype(np.float32), 4, 20, seed=1)
    assert len(set(labels)) == 4
    assert all(len(set(labels[i * 25 : (i + 1) * 25])) == 1 for i in range(4))


def test_encoder_errors_come_before_work(workdir: Path):
    with pytest.raises(RecipeError, match="no config.json"):
        load_recipe({"name": "t", "input": ["a.jsonl"], "stages": [{"stage": "dedup.semantic", "model": "./nope"}]})
    with pytest.raises(Exception, match="threshold"):
        SemanticDedup(threshold=1.5)
