# remind-rs: set-up, the pipelines as file targets, tests and benchmarks.
# Every target installs what it needs first (Python env with libtorch, release build).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Every pipeline output is named explicitly as a target or prerequisite, so none is an
# intermediate file: one that is deleted is rebuilt (no .SECONDARY, which would keep make
# from rebuilding a deleted artifact whose dependents look up to date).

TORCH_VERSION ?= 2.13.0
VENV ?= $(HOME)/.cache/remind-rs/torch-$(TORCH_VERSION)
VENV_STAMP := $(VENV)/.remind-complete-v3
BIN := $(CURDIR)/target/release
ART ?= artifacts
THREADS ?= 2

# tch builds against the wheel's libtorch; binaries carry an rpath to it.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export REMIND_PYTHON := $(VENV)/bin/python
export REMIND_BIN_DIR := $(BIN)

.PHONY: help setup build test test-slurm lint fmt bench bench-pq bench-classify bench-vqa bench-features bench-contention clean

help:
	@echo "Pipelines (artifacts under $(ART)/<name>/; each step re-runs only when stale):"
	@echo "  make clevr-qtype      the main job: streaming VQA on mini-CLEVR, qtype order (CLEVR_DIR=...: real CLEVR)"
	@echo "  make clevr-iid        the same in iid order"
	@echo "  make clevr-tiny       the smallest VQA chain (tests)"
	@echo "  make tdiuc-qtype      streaming VQA on TDIUC, qtype order (needs TDIUC_DIR=... BACKBONE_WEIGHTS=...)"
	@echo "  make tdiuc-iid        the same in iid order"
	@echo "  make fashion-mnist    class-incremental image classification on Fashion-MNIST (FULL=1: whole stream)"
	@echo "  make fashion-parity   the protocol compared with the authors' REMIND (BENCHMARKS.md, about 25 min on 2 cores)"
	@echo "  make fashion-tiny     the smallest classification chain (tests)"
	@echo "  make imagenet         the ImageNet protocol (needs IMAGENET_DIR=..., optional CLASS_ORDER=...)"
	@echo "  make core50           CORe50's stream orders on mini-CORe50 (ORDER=iid|class_iid|instance|class_instance; CORE50_DIR=...: the release)"
	@echo "  make core50-orders    all four orders, and their table"
	@echo "  make slurm-<pipeline> submit any pipeline above to Slurm instead (SHARDS=N array tasks, WAIT=1)"
	@echo "Options of every local pipeline: SEEDS=\"0 1 2\" (one stream per seed; mean and spread),"
	@echo "  PRECISION=bf16, STAGE_THREADS=N, METHODS=\"remind offline\", CONFIG=file.yaml, ART=folder"
	@echo "Checks:"
	@echo "  make test            the test suite (installs and builds what is missing)"
	@echo "  make test-slurm      a local single-node Slurm cluster runs the tiny chains"
	@echo "  make lint            cargo fmt --check and clippy -D warnings"
	@echo "  make fmt             format the code"
	@echo "Benchmarks (results under $(ART)/bench/, table in BENCHMARKS.md):"
	@echo "  make bench           all of: bench-pq bench-classify bench-vqa bench-features bench-contention"
	@echo "  make bench-pq        PQ fit/encode/decode against faiss"
	@echo "  make bench-classify  REMIND's classification update against the bare F step, fp32 and bf16"
	@echo "  make bench-vqa       the VQA model's training step, fp32 and bf16"
	@echo "  make bench-features  feature extraction against PyTorch + torchvision"
	@echo "  make bench-contention the streaming updates alone and beside a second process (OpenMP spin)"
	@echo "Set-up:"
	@echo "  make setup           install the Python env (libtorch) and build the binaries"
	@echo "  make build           build the binaries"
	@echo "  make clean           remove the artifacts and the build"

$(VENV_STAMP): scripts/setup-python.sh
	@bash scripts/setup-python.sh >/dev/null

# Debian data packages: Fashion-MNIST's gzipped IDX files (the image-classification
# default). A file target, so `make setup` does nothing, silently, once it is installed.
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
FASHION_MNIST_STAMP := $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz

$(FASHION_MNIST_STAMP):
	@bash scripts/setup-system.sh dataset-fashion-mnist

setup: $(VENV_STAMP) $(FASHION_MNIST_STAMP) build

build: $(VENV_STAMP)
	cargo build --release --workspace --bins

test: setup
	cargo test --release --workspace -- --test-threads=2

# Starts a private single-node Slurm cluster (installs slurm-wlm and munge when missing;
# needs root or sudo), runs the tiny chain through it and without it, compares every
# artifact, exercises cancelled shards and refused resubmissions, stops its daemons.
test-slurm: setup
	bash scripts/test-slurm.sh

lint: $(VENV_STAMP)
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: bench-pq bench-classify bench-vqa bench-features bench-contention

# The VQA and classification updates alone and beside a second process running the same
# update, with the binaries' OpenMP default and with libgomp's (SPINS="1000 10000": also
# those spin counts).
bench-contention: setup
	@mkdir -p $(ART)/bench
	$(REMIND_PYTHON) scripts/bench_contention.py --bin-dir $(BIN) --out $(ART)/bench/contention.json --threads $(THREADS) $(if $(SPINS),--spin $(SPINS))

# REMIND's classification update against the bare F step, at the paper's size (ResNet-18,
# 7x7x512 maps, 1000 classes) and at the embedded Fashion-MNIST size (width 16, 4x4x128).
bench-classify: setup
	@mkdir -p $(ART)/bench
	$(BIN)/remind-bench-classify --threads $(THREADS) > $(ART)/bench/classify.json
	$(BIN)/remind-bench-classify --threads $(THREADS) --width 16 --map 4 --classes 10 --items 8000 --iters 40 \
		> $(ART)/bench/classify-fashion.json

# The VQA model's training step (the floor of REMIND's VQA update) in fp32 and bf16,
# alternated, at the clevr-qtype default's size and the paper's.
bench-vqa: setup
	@mkdir -p $(ART)/bench
	$(REMIND_PYTHON) scripts/bench_vqa.py --bin-dir $(BIN) --out $(ART)/bench/vqa.json --threads $(THREADS)

# Feature extraction (ResNet-18 to layer3 at 224 px) against PyTorch + torchvision.
bench-features: setup
	@mkdir -p $(ART)/bench
	$(REMIND_PYTHON) scripts/bench_features.py --bin-dir $(BIN) --out $(ART)/bench/features.json --threads $(THREADS) --images 128

bench-pq: setup
	@mkdir -p $(ART)/bench
	$(REMIND_PYTHON) scripts/bench_pq.py --bin-dir $(BIN) --out $(ART)/bench/pq.json --threads $(THREADS)

# ---------------------------------------------------------------------------------------
# Streaming VQA pipelines. Every step is a file target, so a re-run redoes only what is
# stale. CLEVR_DIR=/path/to/CLEVR_v1.0 runs on real CLEVR (with pipelines/<name>-paper.yaml
# unless CONFIG is given); BACKBONE_WEIGHTS=resnet101.safetensors uses given backbone
# weights instead of training the small embedded one. TDIUC (`make tdiuc-qtype`,
# `make tdiuc-iid`) needs TDIUC_DIR=/path/to/TDIUC and BACKBONE_WEIGHTS (no scenes to train
# the embedded backbone on). SETUP= skips the install-and-build step before each stage
# (for callers that built the binaries already, such as the tests). STAGE_THREADS=N passes
# --threads N to every libtorch stage (default: libtorch's choice); results are
# bit-identical between runs with the same thread count. `make slurm-<pipeline>` submits a
# pipeline to Slurm instead (pipelines/slurm/submit.sh; SHARDS=N tasks per sharded stage).
CLEVR_DIR ?=
TDIUC_DIR ?=
BACKBONE_WEIGHTS ?=
CLEVR_DATA := $(if $(CLEVR_DIR),$(CLEVR_DIR),$(ART)/mini-clevr)
CLEVR_STAMP := $(if $(CLEVR_DIR),$(CLEVR_DIR)/questions/CLEVR_train_questions.json,$(ART)/mini-clevr/.complete)
STAGE = $(if $(QUIET),REMIND_QUIET=1 )$(BIN)/remind-$(1)
QUIET ?=
SETUP ?= setup
STAGE_THREADS ?=
THREADS_ARG = $(if $(STAGE_THREADS),--threads $(STAGE_THREADS))
# SEEDS="0 1 2": every method streamed once per seed into <run>/stream-seed-N/ and the
# runs evaluated together: mean, std, min and max over the seeds (README, "Several
# seeds"). Empty: one stream, <run>/stream/, with the config's seed.
SEEDS ?=
stream_dirs = $(if $(strip $(SEEDS)),$(foreach s,$(SEEDS),$(1)/stream-seed-$(s)),$(1)/stream)
# A stream rule's stem is "<sub>/<method>", sub "" or "-seed-N": the folder part and the
# --seed flag it stands for.
seed_sub = $(patsubst %/,%,$(dir $(1)))
seed_arg = $(if $(call seed_sub,$(1)),--seed $(subst -seed-,,$(call seed_sub,$(1))))
# <run>/.seeds holds the SEEDS of the run's last evaluation: rewritten when the command
# line's differ (as the config stamps are), so that metrics.json is evaluated again.
seeds_stamp = $(shell [ -d $(1) ] && [ "$$(cat $(1)/.seeds 2>/dev/null)" != "$(strip $(SEEDS))" ] && echo "$(strip $(SEEDS))" > $(1)/.seeds)$(1)/.seeds
%/.seeds:
	@mkdir -p $(@D) && echo "$(strip $(SEEDS))" > $@
# PRECISION=bf16: every training and feature stage computes in bf16 mixed precision
# (refused on a CPU without bf16 instructions); give it its own ART, as the flag is not
# part of make's view of what is stale.
PRECISION ?=
PRECISION_ARG = $(if $(PRECISION),--precision $(PRECISION))
METHODS := offline remind finetune
SHARDS ?= 4

# Per data set: its root, the file that stands for it, the import flag, the image folder of
# split $(2) under root $(1), and the default config of pipeline $(1).
clevr_DATA := $(CLEVR_DATA)
clevr_STAMP := $(CLEVR_STAMP)
clevr_IMPORT := --clevr-dir
clevr_images = $(1)/images/$(2)
clevr_config = $(if $(CLEVR_DIR),pipelines/$(1)-paper.yaml,pipelines/$(1).yaml)
clevr_GEN := $(if $(CLEVR_DIR),,pipelines/clevr-qtype.yaml)
tdiuc_DATA := $(TDIUC_DIR)
tdiuc_STAMP := $(TDIUC_DIR)/Questions/OpenEnded_mscoco_train2014_questions.json
tdiuc_IMPORT := --tdiuc-dir
tdiuc_images = $(1)/Images/$(2)2014
tdiuc_config = pipelines/$(1).yaml
tdiuc_GEN :=
# clevr-tiny: a tiny generated mini-CLEVR of its own (make test-slurm).
tinyclevr_DATA := $(ART)/mini-clevr-tiny
tinyclevr_STAMP := $(ART)/mini-clevr-tiny/.complete
tinyclevr_IMPORT := --clevr-dir
tinyclevr_images = $(1)/images/$(2)
tinyclevr_config = pipelines/$(1).yaml
tinyclevr_GEN := pipelines/clevr-tiny.yaml

TDIUC_GOALS := $(filter tdiuc-qtype tdiuc-iid slurm-tdiuc-qtype slurm-tdiuc-iid,$(MAKECMDGOALS))
ifneq ($(TDIUC_GOALS),)
ifeq ($(TDIUC_DIR),)
$(error make $(TDIUC_GOALS) needs TDIUC_DIR=/path/to/TDIUC, the TDIUC release (it cannot be downloaded here) holding Questions/OpenEnded_mscoco_{train,val}2014_questions.json, Annotations/mscoco_{train,val}2014_annotations.json and Images/{train,val}2014/COCO_*.jpg, and BACKBONE_WEIGHTS=resnet101.safetensors (ImageNet ResNet-101 converted with scripts/convert_weights.py); see README, "TDIUC")
endif
ifeq ($(wildcard $(tdiuc_STAMP)),)
$(error TDIUC_DIR=$(TDIUC_DIR) has no Questions/OpenEnded_mscoco_train2014_questions.json: pass the root of the TDIUC release (Questions/, Annotations/, Images/))
endif
ifeq ($(BACKBONE_WEIGHTS),)
$(error make $(TDIUC_GOALS) needs BACKBONE_WEIGHTS=resnet101.safetensors (ImageNet ResNet-101, torchvision state_dict converted with scripts/convert_weights.py): TDIUC has no scene annotations to train the embedded backbone on)
endif
endif

# Section stamps: $(1)/.config/<section>.json holds section <section> of config $(2) as
# canonical JSON, rewritten only when its content changes (remind-artifact sections), and
# each stage's rule depends on the sections it reads. So a touch or a comment in the YAML
# re-runs no stage, and an edit re-runs the stages reading the edited section and what
# depends on their outputs. Each stage then checks its fingerprint (inputs by content,
# config, version) and says "up to date" or why it runs. The stamps are refreshed when the
# Makefile is read, whenever the config given differs (by checksum) from the one they were
# last taken from (another CONFIG, an edit, an older copy put back), so `make -n` lists
# what would really run; the rule writes them the first time. Every section is read into
# its stage's settings first, so a typo in any section stops make before the first stage.
define section_stamps
$$(if $$(shell if [ -x $$(BIN)/remind-artifact ] && [ -d $(1)/.config ] && [ -f $(2) ] && \
	[ "$$$$(cksum < $(2))" != "$$$$(cat $(1)/.config/.source 2>/dev/null)" ]; then \
	{ $$(BIN)/remind-artifact sections $(2) $(1)/.config >&2 && cksum < $(2) > $(1)/.config/.source; } \
	|| echo failed; fi),$$(error $(2) does not read (the errors above); nothing was run))
$(1)/.config/%.json: | $$(SETUP)
	@$$(BIN)/remind-artifact sections $(2) $$(@D) && cksum < $(2) > $$(@D)/.source
# Named in a rule of their own, so that make never takes them for intermediate files.
$$(foreach s,$$(STAMPED_SECTIONS),$(1)/.config/$$(s).json):
endef
STAMPED_SECTIONS := generate_clevr generate_core50 import_questions import_images train_backbone train_classifier \
	extract_features fit_pq extract_codes stream model classify_stream evaluate

TINY_GEN_CONFIG := $(or $(CONFIG),pipelines/clevr-tiny.yaml)
$(eval $(call section_stamps,$(ART)/mini-clevr,pipelines/clevr-qtype.yaml))
$(eval $(call section_stamps,$(ART)/mini-clevr-tiny,$(TINY_GEN_CONFIG)))

$(ART)/mini-clevr/.complete: $(ART)/mini-clevr/.config/generate_clevr.json | $(SETUP)
	$(call STAGE,generate-clevr) --config pipelines/clevr-qtype.yaml --out $(ART)/mini-clevr --run-dir $(ART)/mini-clevr
	@touch $@

$(ART)/mini-clevr-tiny/.complete: $(ART)/mini-clevr-tiny/.config/generate_clevr.json | $(SETUP)
	$(call STAGE,generate-clevr) --config $(TINY_GEN_CONFIG) --out $(ART)/mini-clevr-tiny --run-dir $(ART)/mini-clevr-tiny
	@touch $@

# vqa_pipeline(name, dataset): the whole chain for pipelines/<name>.yaml (or CONFIG) on
# data set `clevr` or `tdiuc` into $(ART)/<name>.
define vqa_pipeline
$(1)_CONFIG := $$(or $$(CONFIG),$$(call $(2)_config,$(1)))
$(1)_RUN := $(ART)/$(1)
$(1)_DATA := $$($(2)_DATA)
$(1)_STAMP := $$($(2)_STAMP)
$(1)_WEIGHTS := $$(or $$(BACKBONE_WEIGHTS),$$($(1)_RUN)/backbone/weights.safetensors)
$(1)_ARGS = --config $$($(1)_CONFIG) --run-dir $$($(1)_RUN)
$(1)_SEC := $$($(1)_RUN)/.config
$$(eval $$(call section_stamps,$$($(1)_RUN),$$($(1)_CONFIG)))

$$($(1)_RUN)/questions/questions.parquet: $$($(1)_STAMP) $$($(1)_SEC)/import_questions.json | $$(SETUP)
	$$(call STAGE,import-questions) $$($(1)_ARGS) $$($(2)_IMPORT) $$($(1)_DATA) --out $$($(1)_RUN)/questions

$$($(1)_RUN)/backbone/weights.safetensors: $$($(1)_STAMP) $$($(1)_SEC)/train_backbone.json | $$(SETUP)
	$$(call STAGE,train-backbone) $$($(1)_ARGS) --clevr-dir $$($(1)_DATA) --out $$@ $$(THREADS_ARG) $$(PRECISION_ARG)

$$($(1)_RUN)/features/%/part-00000-of-00001.arrow: $$($(1)_WEIGHTS) $$($(1)_STAMP) $$($(1)_SEC)/extract_features.json | $$(SETUP)
	$$(call STAGE,extract-features) $$($(1)_ARGS) --images $$(call $(2)_images,$$($(1)_DATA),$$*) --weights $$($(1)_WEIGHTS) --out $$(@D) $$(THREADS_ARG) $$(PRECISION_ARG)

$$($(1)_RUN)/pq/codebook.arrow: $$($(1)_RUN)/features/train/part-00000-of-00001.arrow $$($(1)_SEC)/fit_pq.json | $$(SETUP)
	$$(call STAGE,fit-pq) $$($(1)_ARGS) --features $$($(1)_RUN)/features/train --out $$@ $$(THREADS_ARG)

$$($(1)_RUN)/codes/%/part-00000-of-00001.arrow: $$($(1)_RUN)/pq/codebook.arrow $$($(1)_RUN)/features/%/part-00000-of-00001.arrow $$($(1)_SEC)/extract_codes.json | $$(SETUP)
	$$(call STAGE,extract-codes) $$($(1)_ARGS) --features $$($(1)_RUN)/features/$$* --codebook $$< --out $$(@D) $$(THREADS_ARG)

# Named in a rule of their own, so that make never takes them for intermediate files
# (which it deletes after use, and does not rebuild when deleted).
$(1)_NAMED := $$(foreach d,features codes,$$(foreach s,train val,$$($(1)_RUN)/$$(d)/$$(s)/part-00000-of-00001.arrow))
$$($(1)_NAMED):

$(1)_STREAM_INPUTS := $$($(1)_RUN)/questions/questions.parquet $$($(1)_RUN)/pq/codebook.arrow \
	$$($(1)_RUN)/codes/train/part-00000-of-00001.arrow $$($(1)_RUN)/codes/val/part-00000-of-00001.arrow

$$($(1)_RUN)/stream%/complete.json: $$($(1)_STREAM_INPUTS) $$($(1)_SEC)/stream.json $$($(1)_SEC)/model.json | $$(SETUP)
	$$(call STAGE,stream-train) $$($(1)_ARGS) --method $$(notdir $$*) $$(call seed_arg,$$*) --questions $$($(1)_RUN)/questions \
		--train-codes $$($(1)_RUN)/codes/train --val-codes $$($(1)_RUN)/codes/val \
		--codebook $$($(1)_RUN)/pq/codebook.arrow --out $$($(1)_RUN)/stream$$(call seed_sub,$$*) --resume --restart-stale $$(THREADS_ARG) $$(PRECISION_ARG)

$$($(1)_RUN)/metrics.json: $$(foreach d,$$(call stream_dirs,$$($(1)_RUN)),$$(foreach m,$$(METHODS),$$(d)/$$(m)/complete.json)) $$($(1)_SEC)/evaluate.json $$(call seeds_stamp,$$($(1)_RUN)) | $$(SETUP)
	$$(call STAGE,evaluate) $$($(1)_ARGS) --questions $$($(1)_RUN)/questions/questions.parquet \
		--question-types $$($(1)_RUN)/questions/question_types.parquet \
		$$(foreach d,$$(call stream_dirs,$$($(1)_RUN)),--stream-dir $$(d)) --out $$($(1)_RUN)

.PHONY: $(1) slurm-$(1)
$(1): $$($(1)_RUN)/metrics.json
	@echo "$(1): metrics in $$($(1)_RUN)/metrics.json, plot in $$($(1)_RUN)/metrics.png (and .svg)"

# The same chain as Slurm jobs (pipelines/slurm/submit.sh: resources, WAIT=1, ...).
slurm-$(1): | $$(SETUP)
	bash pipelines/slurm/submit.sh CONFIG=$$($(1)_CONFIG) RUN=$$($(1)_RUN) DATA=$$($(1)_DATA) \
		GEN_CONFIG=$$($(2)_GEN) IMPORT_FLAG=$$($(2)_IMPORT) IMAGES='$$(call $(2)_images,$$($(1)_DATA),{split})' \
		BACKBONE_WEIGHTS=$$(BACKBONE_WEIGHTS) SHARDS=$$(SHARDS) BIN=$$(BIN) METHODS="$$(METHODS)"
endef

$(eval $(call vqa_pipeline,clevr-qtype,clevr))
$(eval $(call vqa_pipeline,clevr-iid,clevr))
$(eval $(call vqa_pipeline,tdiuc-qtype,tdiuc))
$(eval $(call vqa_pipeline,tdiuc-iid,tdiuc))
$(eval $(call vqa_pipeline,clevr-tiny,tinyclevr))

# ---------------------------------------------------------------------------------------
# Class-incremental image classification (REMIND's ImageNet protocol). `make fashion-mnist`
# runs on Fashion-MNIST from Debian's dataset-fashion-mnist (FULL=1: the whole stream);
# `make imagenet IMAGENET_DIR=... CLASS_ORDER=...` on ImageNet-style folders.
# BASE_WEIGHTS=... skips the base training with given weights of the whole network.
FASHION_DIR ?= /usr/share/datasets/fashion-mnist
IMAGENET_DIR ?=
CLASS_ORDER ?=
BASE_WEIGHTS ?=
FULL ?=

# class_chain(name, config, import-args, image-root, data-stamp): import, base
# initialisation, features, PQ and codes into $(ART)/<name>.
define class_chain
$(1)_CONFIG := $$(or $$(CONFIG),$(2))
$(1)_RUN := $(ART)/$(1)
$(1)_WEIGHTS := $$(or $$(BASE_WEIGHTS),$$($(1)_RUN)/base/weights.safetensors)
$(1)_ARGS = --config $$($(1)_CONFIG) --run-dir $$($(1)_RUN)
$(1)_SEC := $$($(1)_RUN)/.config
$$(eval $$(call section_stamps,$$($(1)_RUN),$$($(1)_CONFIG)))

$$($(1)_RUN)/data/labels.parquet: $$($(1)_SEC)/import_images.json $(5) | $$(SETUP)
	$$(call STAGE,import-images) $$($(1)_ARGS) $(3) --out $$($(1)_RUN)/data

$$($(1)_RUN)/base/weights.safetensors: $$($(1)_RUN)/data/labels.parquet $$($(1)_SEC)/train_classifier.json | $$(SETUP)
	$$(call STAGE,train-classifier) $$($(1)_ARGS) --labels $$< --out $$@ $$(THREADS_ARG) $$(PRECISION_ARG)

$$($(1)_RUN)/features/part-00000-of-00001.arrow: $$($(1)_WEIGHTS) $$($(1)_RUN)/data/labels.parquet $$($(1)_SEC)/extract_features.json | $$(SETUP)
	$$(call STAGE,extract-features) $$($(1)_ARGS) --images $(4) --weights $$($(1)_WEIGHTS) --id-from sorted --out $$(@D) $$(THREADS_ARG) $$(PRECISION_ARG)

$$($(1)_RUN)/pq/codebook.arrow: $$($(1)_RUN)/features/part-00000-of-00001.arrow $$($(1)_SEC)/fit_pq.json | $$(SETUP)
	$$(call STAGE,fit-pq) $$($(1)_ARGS) --features $$($(1)_RUN)/features --ids $$($(1)_RUN)/data/base_train.parquet --out $$@ $$(THREADS_ARG)

$$($(1)_RUN)/codes/part-00000-of-00001.arrow: $$($(1)_RUN)/pq/codebook.arrow $$($(1)_RUN)/features/part-00000-of-00001.arrow $$($(1)_SEC)/extract_codes.json | $$(SETUP)
	$$(call STAGE,extract-codes) $$($(1)_ARGS) --features $$($(1)_RUN)/features --codebook $$< --out $$(@D) $$(THREADS_ARG)
endef

# class_streams(name, folder, stream-train flags): the methods' streams and the evaluation
# of chain <name> into <folder> (its stream/ and metrics.json).
define class_streams
$(2)/stream%/complete.json: $$($(1)_RUN)/codes/part-00000-of-00001.arrow $$($(1)_WEIGHTS) $$($(1)_SEC)/classify_stream.json | $$(SETUP)
	$$(call STAGE,stream-train) $$($(1)_ARGS) --task classification --method $$(notdir $$*) $$(call seed_arg,$$*) $(3) \
		--labels $$($(1)_RUN)/data/labels.parquet --codes $$($(1)_RUN)/codes \
		--codebook $$($(1)_RUN)/pq/codebook.arrow --base-weights $$($(1)_WEIGHTS) \
		--out $(2)/stream$$(call seed_sub,$$*) --resume --restart-stale $$(THREADS_ARG) $$(PRECISION_ARG)

$(2)/metrics.json: $$(foreach d,$$(call stream_dirs,$(2)),$$(foreach m,$$(METHODS),$$(d)/$$(m)/complete.json)) $$($(1)_SEC)/evaluate.json $$(call seeds_stamp,$(2)) | $$(SETUP)
	$$(call STAGE,evaluate) $$($(1)_ARGS) --task classification --labels $$($(1)_RUN)/data/labels.parquet \
		$$(foreach d,$$(call stream_dirs,$(2)),--stream-dir $$(d)) --out $(2)
endef

# class_pipeline(name, config, import-args, image-root): the chain, its streams in the
# config's order, and the targets <name> and slurm-<name>.
define class_pipeline
$$(eval $$(call class_chain,$(1),$(2),$(3),$(4)))
$$(eval $$(call class_streams,$(1),$$($(1)_RUN)))

.PHONY: $(1) slurm-$(1)
$(1): $$($(1)_RUN)/metrics.json
	@echo "$(1): metrics in $$($(1)_RUN)/metrics.json, plots in $$($(1)_RUN)/metrics.png and metrics_matrix.png (and .svg)"

# The same chain as Slurm jobs (pipelines/slurm/submit-classify.sh).
slurm-$(1): | $$(SETUP)
	bash pipelines/slurm/submit-classify.sh CONFIG=$$($(1)_CONFIG) RUN=$$($(1)_RUN) IMPORT="$(3)" \
		IMAGES=$(4) BASE_WEIGHTS=$$(BASE_WEIGHTS) SHARDS=$$(SHARDS) BIN=$$(BIN) METHODS="$$(METHODS)"
endef

FASHION_NAME := $(if $(FULL),fashion-mnist-full,fashion-mnist)
$(eval $(call class_pipeline,$(FASHION_NAME),pipelines/$(FASHION_NAME).yaml,--idx $(FASHION_DIR),$(ART)/$(FASHION_NAME)/data/images))
ifneq ($(FULL),)
.PHONY: fashion-mnist
fashion-mnist: fashion-mnist-full
endif
# fashion-parity: the protocol run side by side with the authors' code (BENCHMARKS.md).
$(eval $(call class_pipeline,fashion-parity,pipelines/fashion-parity.yaml,--idx $(FASHION_DIR),$(ART)/fashion-parity/data/images))
# fashion-tiny: the smallest classification chain (make test-slurm).
$(eval $(call class_pipeline,fashion-tiny,pipelines/fashion-tiny.yaml,--idx $(FASHION_DIR),$(ART)/fashion-tiny/data/images))
$(eval $(call class_pipeline,imagenet,pipelines/imagenet.yaml,--folder $(IMAGENET_DIR) $(if $(CLASS_ORDER),--class-order $(CLASS_ORDER)),$(IMAGENET_DIR)))

imagenet-check:
	@test -n "$(IMAGENET_DIR)" || { echo "make imagenet needs IMAGENET_DIR=/path/with/train/and/val" >&2; exit 2; }
# Checked when the Makefile is read, before set-up or any stage runs; and before the
# chain's first stage when a file of the chain is asked for directly.
ifneq ($(filter imagenet slurm-imagenet,$(MAKECMDGOALS)),)
ifeq ($(IMAGENET_DIR),)
$(error make imagenet needs IMAGENET_DIR=/path/with/train/and/val)
endif
endif
$(ART)/imagenet/data/labels.parquet: | imagenet-check

# ---------------------------------------------------------------------------------------
# CORe50 and the four stream orders (README, "CORe50"). `make core50 ORDER=<order>` runs on
# mini-CORe50, generated in CORe50's release layout; CORE50_DIR=/data/core50_128x128 on
# the release (pipelines/core50-release.yaml unless CONFIG is given). Import, base
# initialisation, features, PQ and codes are shared by the orders; each order's streams
# and metrics go to $(ART)/<run>/<order>/. `make core50-orders` runs all four and prints
# their table.
CORE50_DIR ?=
ORDER ?= class_instance
CORE50_ORDERS := iid class_iid instance class_instance
CORE50_NAME := $(if $(CORE50_DIR),core50-release,core50)
CORE50_DATA := $(if $(CORE50_DIR),$(CORE50_DIR),$(ART)/mini-core50/core50_mini)
CORE50_STAMP := $(if $(CORE50_DIR),,$(ART)/mini-core50/.complete)
ifneq ($(filter core50 slurm-core50 core50-orders,$(MAKECMDGOALS)),)
ifeq ($(filter $(ORDER),$(CORE50_ORDERS)),)
$(error ORDER=$(ORDER): expected one of $(CORE50_ORDERS))
endif
ifneq ($(CORE50_DIR),)
ifeq ($(wildcard $(CORE50_DIR)/s1),)
$(error CORE50_DIR=$(CORE50_DIR) has no s1/ folder: pass the root of CORe50's release (s1..s11/o1..o50/C_ss_oo_fff.png, e.g. core50_128x128))
endif
endif
endif

MINI_CORE50_CONFIG := $(or $(CONFIG),pipelines/core50.yaml)
$(eval $(call section_stamps,$(ART)/mini-core50,$(MINI_CORE50_CONFIG)))
$(ART)/mini-core50/.complete: $(ART)/mini-core50/.config/generate_core50.json | $(SETUP)
	$(call STAGE,generate-core50) --config $(MINI_CORE50_CONFIG) --out $(ART)/mini-core50/core50_mini --run-dir $(ART)/mini-core50
	@touch $@

$(eval $(call class_chain,$(CORE50_NAME),pipelines/$(CORE50_NAME).yaml,--core50 $(CORE50_DATA),$(CORE50_DATA),$(CORE50_STAMP)))
$(foreach o,$(CORE50_ORDERS),$(eval $(call class_streams,$(CORE50_NAME),$($(CORE50_NAME)_RUN)/$(o),--order $(o))))
CORE50_METRICS := $(foreach o,$(CORE50_ORDERS),$($(CORE50_NAME)_RUN)/$(o)/metrics.json)

.PHONY: core50 core50-orders slurm-core50
core50: $($(CORE50_NAME)_RUN)/$(ORDER)/metrics.json
	@echo "core50 ($(ORDER)): metrics in $<, plots in $(<D)/metrics.png and metrics_matrix.png (and .svg)"

core50-orders: $(CORE50_METRICS)
	@$(REMIND_PYTHON) scripts/core50_table.py $^

# The same chain as Slurm jobs, the streams in order ORDER.
slurm-core50: $(CORE50_STAMP) | $(SETUP)
	bash pipelines/slurm/submit-classify.sh CONFIG=$($(CORE50_NAME)_CONFIG) RUN=$($(CORE50_NAME)_RUN) \
		IMPORT="--core50 $(CORE50_DATA)" IMAGES=$(CORE50_DATA) ORDER=$(ORDER) SHARDS=$(SHARDS) \
		BIN=$(BIN) METHODS="$(METHODS)"

clean:
	rm -rf $(ART)/*/ target
