"""A tiny Llama-style model built from a config, with a BPE tokenizer trained locally.

No causal LM ships offline on this machine, so tests and the demo use this:
random weights, a few hundred thousand parameters, a tokenizer trained on the
curated text itself. It proves the training machinery end to end; it is not
a useful language model, and everything that uses it says so.

    python -m train.tiny models/tiny --corpus runs/demo
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|im_start|>", "</s>"],
    )  # fmt: skip
    fast.chat_template = CHATML
    return fast


def build_tiny(
    out: str | Path, texts: Iterable[str], vocab_size: int = 1024, hidden: int = 64, layers: int = 2, seed: int = 0
) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    tokenizer = train_tokenizer(texts, vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "TINY_MODEL.json").write_text(
        json.dumps(
            {
                "note": "tiny random-init Llama built from a config for offline testing; not a real language model",
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    )
    return out


def corpus_texts(path: str | Path, limit: int = 5000) -> list[str]:
    """Texts of a curate run (its output) or a JSONL/Parquet file, for tokenizer training."""
    from train.data import load_records

    return [t for t in load_records(str(path))["text"].to_list()[:limit] if t]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--corpus", required=True, help="a curate run dir or a JSONL/Parquet file")
    ap.add_argument("--vocab-size", type=int, default=1024)
    args = ap.parse_args()
    path = build_tiny(args.out, corpus_texts(args.corpus), args.vocab_size)
    print(f"{path}: tiny random-init Llama + BPE tokenizer trained on {args.corpus} (for offline testing only)")


if __name__ == "__main__":
    main()
