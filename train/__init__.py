"""Fine-tuning on curated runs (LoRA, QLoRA, full, partial, prompt, prefix).

The training package arrives with its own issue; see ../shared/DESIGN.md.
"""
