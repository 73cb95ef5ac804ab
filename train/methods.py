"""Training methods: one config, one function to apply it (the PEFT way)."""

from __future__ import annotations

from typing import Any

from curate.errors import RecipeError, did_you_mean
from train.config import TrainConfig


def load_model(cfg: TrainConfig, tokenizer: Any, num_labels: int | None = None) -> Any:
    import torch
    import transformers

    transformers.set_seed(cfg.seed)  # before any adapter or head is created
    dtype = _dtype(cfg)
    if cfg.method == "classifier":
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(cfg.model, num_labels=num_labels)
    from transformers import AutoModelForCausalLM

    if cfg.method == "qlora":
        if not torch.cuda.is_available():
            raise RecipeError(
                "method qlora loads the base model in 4 bits with bitsandbytes and needs a CUDA GPU; on CPU use method: lora"
            )
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        model = prepare_model_for_kbit_training(
            AutoModelForCausalLM.from_pretrained(cfg.model, quantization_config=quant)
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    return apply_method(model, cfg)


def apply_method(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

    if cfg.method == "full":
        return model
    if cfg.method == "partial":
        layers = _layers(model)
        if cfg.freeze_layers > len(layers):
            raise RecipeError(f"freeze_layers {cfg.freeze_layers} > the model's {len(layers)} layers")
        for p in model.get_input_embeddings().parameters():
            p.requires_grad = False
        for layer in layers[: cfg.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad = False
        return model
    if cfg.method in ("lora", "qlora"):
        targets = cfg.lora.target_modules
        if targets != "all-linear":
            names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n})
            unknown = [t for t in targets if t not in names]
            if unknown:
                raise RecipeError(
                    f"lora.target_modules: {unknown} not in the model.{did_you_mean(unknown[0], names)} "
                    f"Its module names: {', '.join(names)}"
                )
        lora = LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=targets, use_dora=cfg.lora.use_dora, use_rslora=cfg.lora.use_rslora,
        )  # fmt: skip
        return get_peft_model(model, lora)
    if cfg.method == "prompt":
        return get_peft_model(
            model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
        )
    if cfg.method == "prefix":
        return get_peft_model(
            model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
        )
    raise RecipeError(f"unknown method {cfg.method}")


def _layers(model: Any) -> Any:
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "encoder.layer"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise RecipeError("method partial: cannot find the model's layer list")


def _dtype(cfg: TrainConfig) -> Any:
    import torch

    if cfg.precision == "bf16" or (
        cfg.precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    if cfg.precision == "fp16":
        return torch.float16
    return torch.float32


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
