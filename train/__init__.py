"""Fine-tuning on curated runs: LoRA, QLoRA, full, partial, prompt and prefix tuning, classifiers.

config.py (TrainConfig), data.py (templates, masking, packing, cache), methods.py,
run.py (training, evaluation, forgetting), export.py (weights + model card),
tiny.py (an offline tiny Llama for tests and the demo).
"""
