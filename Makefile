# remind-rs: set-up, the pipelines as file targets, tests and benchmarks.
# Every target installs what it needs first (Python env with libtorch, release build).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TORCH_VERSION ?= 2.13.0
VENV ?= $(HOME)/.cache/remind-rs/torch-$(TORCH_VERSION)
VENV_STAMP := $(VENV)/.remind-complete-v2
BIN := $(CURDIR)/target/release
ART ?= artifacts
THREADS ?= 2

# tch builds against the wheel's libtorch; binaries carry an rpath to it.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export REMIND_PYTHON := $(VENV)/bin/python
export REMIND_BIN_DIR := $(BIN)

.PHONY: help setup build test lint fmt bench bench-pq clevr-qtype clean

help:
	@echo "make clevr-qtype   run the main job (streaming VQA on mini-CLEVR, qtype order)"
	@echo "make test          run the test suite (installs and builds what is missing)"
	@echo "make bench         run the benchmarks, results under $(ART)/bench/"
	@echo "make setup         install the Python env (libtorch) and build the binaries"

$(VENV_STAMP): scripts/setup-python.sh
	@bash scripts/setup-python.sh >/dev/null

setup: $(VENV_STAMP) build

build: $(VENV_STAMP)
	cargo build --release --workspace --bins

test: setup
	cargo test --release --workspace -- --test-threads=2

lint: $(VENV_STAMP)
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: bench-pq

bench-pq: setup
	@mkdir -p $(ART)/bench
	$(REMIND_PYTHON) scripts/bench_pq.py --bin-dir $(BIN) --out $(ART)/bench/pq.json --threads $(THREADS)

clevr-qtype: setup
	@echo "clevr-qtype: the streaming VQA pipeline is not complete yet (issues #4 and #5);"
	@echo "             the artifact layer, PQ fitting and code extraction are in place."

clean:
	rm -rf $(ART)/*/ target
