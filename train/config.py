"""TrainConfig: one YAML for every method, validated before any work.

Names follow TRL's SFTConfig / transformers' TrainingArguments where the
meaning is the same (max_length, packing, completion_only_loss,
learning_rate, lr_scheduler_type, num_train_epochs, max_steps,
per_device_train_batch_size, gradient_accumulation_steps, seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curate.errors import RecipeError
from train.style import StyleEval

Method = Literal["full", "partial", "lora", "qlora", "prompt", "prefix", "classifier"]


class LoraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"
    """Module names (e.g. [q_proj, v_proj]) or "all-linear"."""
    use_dora: bool = False
    use_rslora: bool = False


class TrainConfig(BaseModel):
    """Fine-tune a model on a curated run (or any Parquet/JSONL/HF dataset)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str
    """A known name (smollm2-135m: SmolLM2-135M-Instruct, offline), a local folder, a .gguf file or a
    hub id. For classifier: an encoder (e.g. the offline MiniLM, `minilm`)."""
    dataset: str
    """A curate run directory, a .parquet/.jsonl file, or a saved HF dataset."""
    format: Literal["instruction", "chat", "completion", "preference", "classification"] = "instruction"
    """Which record fields to train on: instruction/input/output, messages, prompt/completion,
    prompt/chosen/rejected (DPO), or text/label."""
    beta: float = Field(default=0.1, gt=0)
    """For preference (DPO): how far the policy may move from the reference."""
    label_field: str = "label"
    """For classification: the column or meta key holding the label."""
    template: Literal["model", "chatml", "alpaca"] = "chatml"
    """How prompts are written: the tokenizer's own chat template, ChatML, or Alpaca."""
    method: Method = "lora"
    lora: LoraOptions = LoraOptions()
    freeze_layers: int = Field(default=1, ge=0)
    """For partial: freeze the embeddings and this many lower transformer layers."""
    num_virtual_tokens: int = Field(default=8, ge=1)
    """For prompt and prefix tuning."""
    max_length: int = Field(default=512, ge=8)
    truncation: Literal["truncate", "drop"] = "truncate"
    """Examples longer than max_length: cut from the end of the completion, or drop (counted either way)."""
    packing: bool = False
    """Pack short examples into max_length rows, without attention across examples."""
    completion_only_loss: bool = True
    """Mask prompt tokens from the loss (-100); the completion and its EOS are trained."""
    learning_rate: float = Field(default=2e-4, gt=0)
    lr_scheduler_type: str = "linear"
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    per_device_train_batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_grad_norm: float = 1.0
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """auto: bf16 on GPUs that support it, else fp32."""
    seed: int = 0
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of the records held out for evaluation (by seeded hash of the id)."""
    replay_dataset: str | None = None
    """General-domain data for replay mixing and the forgetting check: records in the training
    format, or plain text (a `text` column). Half of it (seeded) is only measured, never trained on."""
    replay_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of training examples drawn from replay_dataset."""
    task_eval_max: int = Field(default=64, ge=0)
    """Held-out records scored by greedy generation before and after training (0: off): exact
    match when the outputs are labels, ROUGE-L otherwise."""
    max_new_tokens: int = Field(default=128, ge=1)
    """Cap on generated tokens per held-out record in that evaluation."""
    style_eval: StyleEval | None = None
    """Measure a style in generations for held-out prompts before and after: gendered terms per 100
    words (counted by the rewrite engine with these lexicons) and a counterfactual check (the prompt
    with gendered words swapped should get the same answer). E.g. {lexicons: [gender_neutral]}."""
    max_forgetting: float | None = None
    """Fail the run if replay-set loss rises by more than this relative amount (0.1 = 10%)."""
    output_dir: str = "models/out"
    save_steps: int = 50
    eval_steps: int | None = None
    logging_steps: int = 10
    merge_adapters: bool = False
    """Export merged full weights instead of adapters (LoRA/QLoRA: merged into the unquantised base)."""
    cache_dir: str = ".cache/curate-train"
    """Tokenized data is cached here by content hash."""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.method == "classifier" and self.format != "classification":
            raise ValueError("method classifier trains on format: classification (text + label)")
        if self.format == "classification" and self.method != "classifier":
            raise ValueError("format classification needs method: classifier")
        if self.format == "preference" and self.method not in ("full", "partial", "lora", "qlora"):
            raise ValueError("format preference (DPO) trains with method full, partial, lora or qlora")
        if self.format == "preference" and self.packing:
            raise ValueError("format preference cannot be packed: each pair is scored as whole sequences")
        if self.replay_ratio > 0 and not self.replay_dataset:
            raise ValueError("replay_ratio > 0 needs replay_dataset")
        return self


def load_config(source: str | Path | dict[str, Any]) -> TrainConfig:
    from curate.recipe import format_validation_error

    data = source if isinstance(source, dict) else yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a train config is a mapping (model, dataset, method, ...)")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise RecipeError(
            format_validation_error(e, str(source) if not isinstance(source, dict) else "<train>", TrainConfig)
        ) from None
