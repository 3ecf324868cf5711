#!/usr/bin/env bash
# Submits an image-classification pipeline (pipelines/<name>.yaml: fashion-mnist, imagenet)
# to Slurm as a chain of jobs:
#
#   import-images
#     └─> train-classifier (base initialisation, unless BASE_WEIGHTS are given)
#           └─> extract-features: an array of N tasks ─> check
#                 └─> fit-pq (base-initialisation items) ─> extract-codes: an array of N ─> check
#                       └─> stream-train: one job per method
#                             └─> evaluate
#
# Sharded stages, completeness checks, resubmission after a failure, resources and WAIT=1
# work as in submit.sh (the streaming-VQA driver). `make slurm-fashion-mnist` and
# `make slurm-imagenet` call it with the Makefile's paths; settings come as KEY=VALUE
# arguments or environment variables:
#
#   CONFIG            pipeline config                      [pipelines/fashion-mnist.yaml]
#   ART, RUN          artifacts root, run folder           [artifacts, $ART/<config name>]
#   IMPORT            import-images' data flags: "--idx DIR" (IDX files), "--folder DIR
#                     [--class-order FILE]" (ImageNet-style folders) or "--core50 DIR"
#                     (CORe50's release layout)
#                     [--idx /usr/share/datasets/fashion-mnist]
#   IMAGES            the image root extract-features reads  [$RUN/data/images with --idx,
#                     the --folder root with --folder]
#   BASE_WEIGHTS      given weights of the whole network; empty: train-classifier writes
#                     $RUN/base/weights.safetensors
#   ORDER             stream order (iid, class_iid, instance, class_instance): the
#                     streams and metrics go to $RUN/<order>/  [the config's, into $RUN]
#   SHARDS            tasks per sharded stage (N)          [4]
#   METHODS           stream methods                       [offline remind finetune]
#   BIN, DEVICE, PARTITION, ACCOUNT, QOS, SBATCH_EXTRA, CPUS, MEM, TIME, GPUS, WAIT,
#   DRY_RUN           as in submit.sh; per-step resources <STEP>_CPUS/_MEM/_TIME/_GPUS with
#                     STEP one of IMPORT, BASE, FEATURES, PQ, CODES, STREAM, EVALUATE, CHECK
#
# Job ids go to stdout and to $RUN/slurm/jobs.txt, logs to $RUN/slurm/logs/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=pipelines/slurm/lib.sh
source "$here/lib.sh"
parse_settings "${BASH_SOURCE[0]}" "$@"

chain_settings pipelines/fashion-mnist.yaml
IMPORT=${IMPORT:---idx /usr/share/datasets/fashion-mnist}
BASE_WEIGHTS=${BASE_WEIGHTS:-}

# shellcheck disable=SC2206
import_flags=($IMPORT)
case ${import_flags[0]:-} in
    --idx) IMAGES=${IMAGES:-$RUN/data/images} ;;
    --folder | --core50) IMAGES=${IMAGES:-${import_flags[1]:-}} ;;
    *) die "IMPORT must start with --idx DIR, --folder DIR or --core50 DIR, found '$IMPORT'" ;;
esac
[ -d "${import_flags[1]:-}" ] || die "no data set at '${import_flags[1]:-}' (IMPORT=$IMPORT)"
ORDER=${ORDER:-}
order_flag=()
if [ -n "$ORDER" ]; then
    case $ORDER in
        iid | class_iid | instance | class_instance) ;;
        *) die "ORDER must be iid, class_iid, instance or class_instance, found '$ORDER'" ;;
    esac
    OUT=$RUN/$ORDER
    order_flag=(--order "$ORDER")
fi
OUT=${OUT:-$RUN}
init_chain

labels=$RUN/data/labels.parquet
weights=${BASE_WEIGHTS:-$RUN/base/weights.safetensors}
features=$RUN/features
codes=$RUN/codes
codebook=$RUN/pq/codebook.arrow

# --- data and base initialisation ------------------------------------------------------------
imp=""
if [ ! -e "$labels" ]; then
    step_flags IMPORT "" afterok
    submit import-images "${FLAGS[@]}" \
        "$here/job.sbatch" import-images "${COMMON[@]}" "${import_flags[@]}" --out "$RUN/data"
    imp=$JOB
fi

base=""
if [ -z "$BASE_WEIGHTS" ] && [ ! -e "$weights" ]; then
    step_flags BASE "$imp" afterok
    submit train-classifier "${FLAGS[@]}" \
        "$here/job.sbatch" train-classifier "${COMMON[@]}" --labels "$labels" --out "$weights" \
        --threads "$THREADS" "${device_flag[@]}"
    base=$JOB
fi

# --- features (every image, ids in sorted order) ------------------------------------------------
feat=""
if ! parts_present "$features"; then
    step_flags FEATURES "$(deps "$imp" "$base")" afterok
    submit features "${FLAGS[@]}" --array="0-$((SHARDS - 1))" \
        "$here/shard.sbatch" extract-features "${COMMON[@]}" --images "$IMAGES" --weights "$weights" \
        --id-from sorted --out "$features" --threads "$THREADS" "${device_flag[@]}"
    step_flags CHECK "$JOB" afterany
    submit check-features "${FLAGS[@]}" "$here/check.sbatch" "$features" --shards "$SHARDS"
    feat=$JOB
fi

# --- PQ on the base-initialisation items, then codes of every item --------------------------------
pq=""
if [ ! -e "$codebook" ]; then
    step_flags PQ "$feat" afterok
    submit fit-pq "${FLAGS[@]}" \
        "$here/job.sbatch" fit-pq "${COMMON[@]}" --features "$features" \
        --ids "$RUN/data/base_train.parquet" --out "$codebook" --threads "$THREADS" "${device_flag[@]}"
    pq=$JOB
fi

code=""
if ! parts_present "$codes"; then
    step_flags CODES "$(deps "$pq" "$feat")" afterok
    submit codes "${FLAGS[@]}" --array="0-$((SHARDS - 1))" \
        "$here/shard.sbatch" extract-codes "${COMMON[@]}" --features "$features" \
        --codebook "$codebook" --out "$codes" --threads "$THREADS" "${device_flag[@]}"
    step_flags CHECK "$JOB" afterany
    submit check-codes "${FLAGS[@]}" "$here/check.sbatch" "$codes" --shards "$SHARDS" \
        --covers "$features"
    code=$JOB
fi

# --- streaming: one job per method, then the evaluation ---------------------------------------------
submit_streams "$(deps "$imp" "$base" "$pq" "$code")" --task classification "${order_flag[@]}" \
    --labels "$labels" --codes "$codes" --codebook "$codebook" --base-weights "$weights"

if [ ${#STREAMS[@]} -gt 0 ] || [ ! -e "$OUT/metrics.json" ]; then
    step_flags EVALUATE "$(deps "$imp" "${STREAMS[@]}")" afterok
    submit evaluate "${FLAGS[@]}" \
        "$here/job.sbatch" evaluate "${COMMON[@]}" --task classification --labels "$labels" \
        --stream-dir "$OUT/stream" --out "$OUT"
fi

finish_chain
