"""GPU-only training checks (bf16, qlora, packing on CUDA). Skipped cleanly without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from train.tiny import build_tiny

    return build_tiny(
        tmp_path_factory.mktemp("tiny") / "m",
        [f"Say something about item {i}. It is nice." for i in range(500)],
        vocab_size=400,
    )


@pytest.mark.parametrize("method,packing", [("lora", False), ("qlora", False), ("full", True)])
def test_bf16_training_on_gpu(tiny: Path, tmp_path: Path, method: str, packing: bool):
    pytest.importorskip("bitsandbytes") if method == "qlora" else None
    from train.config import load_config
    from train.run import train

    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "instruction": f"Item {i}?", "input": "", "output": "It is nice."}) + "\n"
            for i in range(64)
        )
    )
    cfg = load_config({"model": str(tiny), "dataset": str(data), "method": method, "precision": "bf16", "packing": packing,
                       "max_length": 128, "max_steps": 20, "learning_rate": 0.01, "eval_fraction": 0.25,
                       "output_dir": str(tmp_path / "o"), "cache_dir": str(tmp_path / "c")})  # fmt: skip
    result = train(cfg, log=lambda m: None)
    assert result["after"]["held_out"]["loss"] < result["before"]["held_out"]["loss"]
