"""Direct Preference Optimisation on {prompt, chosen, rejected} records (Rafailov et al. 2023).

loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

The reference model is the policy's starting point: for LoRA-style methods
the same model with its adapters switched off (no second copy in memory),
otherwise a frozen copy made before training.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from typing import Any

from train.data import Collator


class PreferenceCollator:
    """Chosen and rejected sequences of a batch, padded together: first all chosen, then all rejected."""

    def __init__(self, pad_id: int):
        self.base = Collator(pad_id)

    def __call__(self, pairs: list[dict]) -> dict[str, Any]:
        batch = self.base([p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
        batch["n_pairs"] = len(pairs)
        return batch


def sequence_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probabilities of each sequence's label tokens."""
    import torch

    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != -100
    token_logps = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1)


def reference(model: Any) -> tuple[Any, Any]:
    """(reference model, context manager to enter when computing reference log-probabilities)."""
    if hasattr(model, "disable_adapter"):
        return model, model.disable_adapter
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad = False
    return frozen, nullcontext


def dpo_trainer_class():
    import torch
    from transformers import Trainer

    class DPOTrainer(Trainer):
        def __init__(self, *args, beta: float = 0.1, **kwargs):
            super().__init__(*args, **kwargs)
            self.beta = beta
            self.ref_model, self.ref_context = reference(self.model)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            n = inputs.pop("n_pairs")
            logps = sequence_logps(model, inputs)
            with torch.no_grad(), self.ref_context():
                ref = sequence_logps(self.ref_model, inputs)
            margin = (logps[:n] - ref[:n]) - (logps[n:] - ref[n:])
            loss = -torch.nn.functional.logsigmoid(self.beta * margin).mean()
            return (loss, {"margin": margin}) if return_outputs else loss

    return DPOTrainer


def evaluate_preferences(model: Any, rows: list[dict], pad_id: int, batch_size: int = 16) -> dict[str, float] | None:
    """Share of held-out pairs where the model gives the chosen answer more probability than the rejected one."""
    if not rows:
        return None
    import torch

    collate = PreferenceCollator(pad_id)
    model.eval()
    wins, margins = 0, []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            batch = collate(rows[i : i + batch_size])
            n = batch.pop("n_pairs")
            logps = sequence_logps(model, batch)
            diff = logps[:n] - logps[n:]
            wins += int((diff > 0).sum())
            margins += diff.tolist()
    return {
        "chosen_over_rejected": round(wins / len(rows), 4),
        "mean_logp_margin": round(sum(margins) / len(margins), 4),
        "pairs": len(rows),
    }
