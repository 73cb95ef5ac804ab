"""Training throughput: tokens/s, peak memory and MFU for LoRA and full fine-tuning.

    python benchmarks/bench_train.py

On a CUDA GPU: a Llama-style model of about 1B parameters built from a config
(random init is fine for speed), sequence length 2048, bf16, LoRA and full.
MFU counts 6N FLOPs per token for full fine-tuning and about 4N for LoRA
(no weight gradients for the frozen base) against 989 TFLOP/s (H100 bf16 dense).
Without a GPU it measures the tiny CPU model instead and says so: those
numbers show the machinery runs, not what a GPU does.
Writes benchmarks/results/train.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_result  # noqa: E402

PEAK_FLOPS = 989e12  # H100 SXM bf16 dense


def measure(method: str, steps: int, seq: int, batch: int, gpu: bool) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if gpu:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
                          num_key_value_heads=16, max_position_embeddings=seq)  # fmt: skip
        model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
        model.gradient_checkpointing_enable()
    else:
        cfg = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=4, max_position_embeddings=seq)  # fmt: skip
        model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    device = "cuda" if gpu else "cpu"
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            if gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens_per_s = steps * batch * seq / seconds
    flops_per_token = (6 if method == "full" else 4) * n_params
    out = {"parameters": n_params, "seq_len": seq, "batch": batch, "tokens_per_s": round(tokens_per_s, 1)}
    if gpu:
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["mfu"] = round(tokens_per_s * flops_per_token / PEAK_FLOPS, 4)
    return out


def main() -> None:
    import torch

    gpu = torch.cuda.is_available()
    result = {"device": torch.cuda.get_device_name(0) if gpu else "cpu (no GPU lent: tiny model, not representative)"}
    for method in ("lora", "full"):
        result[method] = measure(
            method, steps=10 if gpu else 5, seq=2048 if gpu else 256, batch=4 if gpu else 4, gpu=gpu
        )
    result["tokens_per_s"] = result["lora"]["tokens_per_s"]
    if gpu:
        result["mfu_lora"] = result["lora"]["mfu"]
        result["mfu_full"] = result["full"]["mfu"]
    write_result("train", result)


if __name__ == "__main__":
    main()
