#!/usr/bin/env bash
# Submits a streaming-VQA pipeline (pipelines/<name>.yaml) to Slurm as a chain of jobs:
#
#   generate-clevr (mini-CLEVR, unless the data set is given)
#     ├─> import-questions
#     └─> train-backbone (unless BACKBONE_WEIGHTS are given)
#           └─> extract-features: an array of N tasks per split ─> check
#                 └─> fit-pq (training split) ─> extract-codes: an array of N per split ─> check
#                       └─> stream-train: one job per method (after import-questions too)
#                             └─> evaluate
#
# Sharded stages run as job arrays of SHARDS tasks (K and N from SLURM_ARRAY_TASK_ID and
# SLURM_ARRAY_TASK_COUNT), each followed by a completeness check that runs however the
# array ended (afterany) and lets the next stage start (afterok) only once every part is
# present, valid, made with one set of parameters and covering the input. Jobs whose
# dependencies can no longer be met are cancelled (--kill-on-invalid-dep=yes).
#
# Run it again after a failure or a cancelled task: steps whose outputs exist are not
# submitted again, arrays are resubmitted whole and their finished shards exit at once, so
# only the missing work is redone. `make slurm-clevr-qtype` calls it with the Makefile's
# paths; settings come as KEY=VALUE arguments or environment variables:
#
#   CONFIG            pipeline config                      [pipelines/clevr-qtype.yaml]
#   ART, RUN          artifacts root, run folder           [artifacts, $ART/<config name>]
#   DATA              data set root                        [$CLEVR_DIR, else $ART/mini-clevr]
#   GEN_CONFIG        config whose generate_clevr section makes mini-CLEVR in DATA first
#                     (unless DATA/.complete exists); empty: DATA is given
#                     [empty with CLEVR_DIR, else $CONFIG]
#   IMPORT_FLAG       import-questions' data set flag: --clevr-dir or --tdiuc-dir  [--clevr-dir]
#   IMAGES            image folder of split {split}        [$DATA/images/{split}]
#   BACKBONE_WEIGHTS  given backbone weights; empty: train-backbone (CLEVR scenes) writes
#                     $RUN/backbone/weights.safetensors
#   SHARDS            tasks per sharded stage (N)          [4]
#   SPLITS, METHODS   image splits, stream methods          [train val], [offline remind finetune]
#   BIN               stage binaries, reachable from the compute nodes  [target/release]
#   DEVICE            --device of the libtorch stages       [the stages' default, auto]
#   PARTITION, ACCOUNT, QOS   sbatch --partition, --account, --qos  [cluster defaults]
#   SBATCH_EXTRA      further sbatch flags for every job (e.g. "--constraint=avx2")
#   CPUS, MEM, TIME, GPUS     resources of every job: --cpus-per-task (also the stages'
#                     --threads), --mem (empty: cluster default), --time, --gres=gpu:GPUS
#                     [1, -, 04:00:00, 0]
#   <STEP>_CPUS, <STEP>_MEM, <STEP>_TIME, <STEP>_GPUS   per step, STEP one of GENERATE,
#                     IMPORT, BACKBONE, FEATURES, PQ, CODES, STREAM, EVALUATE, CHECK
#   WAIT=1            wait for the chain (polling squeue every WAIT_POLL [2] seconds);
#                     exit 1 unless every job completed
#   DRY_RUN=1         print the sbatch commands instead of submitting
#
# Job ids go to stdout and to $RUN/slurm/jobs.txt, logs to $RUN/slurm/logs/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=pipelines/slurm/lib.sh
source "$here/lib.sh"
parse_settings "${BASH_SOURCE[0]}" "$@"

chain_settings pipelines/clevr-qtype.yaml
CLEVR_DIR=${CLEVR_DIR:-}
if [ -n "$CLEVR_DIR" ]; then
    DATA=${DATA:-$CLEVR_DIR}
    GEN_CONFIG=${GEN_CONFIG-}
else
    DATA=${DATA:-$ART/mini-clevr}
    GEN_CONFIG=${GEN_CONFIG-$CONFIG}
fi
IMPORT_FLAG=${IMPORT_FLAG:---clevr-dir}
IMAGES=${IMAGES:-$DATA/images/\{split\}}
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-}
SPLITS=${SPLITS:-train val}

[ -n "$GEN_CONFIG" ] || [ -d "$DATA" ] || die "no data set at $DATA (and no GEN_CONFIG to generate one)"
[ "$IMPORT_FLAG" = --clevr-dir ] || [ -n "$BACKBONE_WEIGHTS" ] ||
    die "BACKBONE_WEIGHTS is needed: train-backbone learns from CLEVR scene annotations only"
[[ $IMAGES == *"{split}"* ]] || die "IMAGES must contain {split}, found '$IMAGES'"
init_chain

# --- data -------------------------------------------------------------------------------
gen=""
if [ -n "$GEN_CONFIG" ] && [ ! -e "$DATA/.complete" ]; then
    step_flags GENERATE "" afterok
    submit generate-clevr "${FLAGS[@]}" --export=ALL,REMIND_DONE="$DATA/.complete" \
        "$here/job.sbatch" generate-clevr --config "$GEN_CONFIG" --out "$DATA" --run-dir "$DATA"
    gen=$JOB
fi

imp=""
if [ ! -e "$RUN/questions/questions.parquet" ]; then
    step_flags IMPORT "$gen" afterok
    submit import-questions "${FLAGS[@]}" \
        "$here/job.sbatch" import-questions "${COMMON[@]}" "$IMPORT_FLAG" "$DATA" --out "$RUN/questions"
    imp=$JOB
fi

weights=${BACKBONE_WEIGHTS:-$RUN/backbone/weights.safetensors}
bb=""
if [ -z "$BACKBONE_WEIGHTS" ] && [ ! -e "$weights" ]; then
    step_flags BACKBONE "$gen" afterok
    submit train-backbone "${FLAGS[@]}" \
        "$here/job.sbatch" train-backbone "${COMMON[@]}" --clevr-dir "$DATA" --out "$weights" \
        --threads "$THREADS" "${device_flag[@]}"
    bb=$JOB
fi

# --- features: one array per split, then its check ----------------------------------------
declare -A feat_ready
for split in $SPLITS; do
    out=$RUN/features/$split
    feat_ready[$split]=""
    if ! parts_present "$out"; then
        step_flags FEATURES "$(deps "$gen" "$bb")" afterok
        submit "features-$split" "${FLAGS[@]}" --array="0-$((SHARDS - 1))" \
            "$here/shard.sbatch" extract-features "${COMMON[@]}" --images "${IMAGES//\{split\}/$split}" \
            --weights "$weights" --out "$out" --threads "$THREADS" "${device_flag[@]}"
        step_flags CHECK "$JOB" afterany
        submit "check-features-$split" "${FLAGS[@]}" "$here/check.sbatch" "$out" --shards "$SHARDS"
        feat_ready[$split]=$JOB
    fi
done

# --- PQ fit on the training features --------------------------------------------------------
codebook=$RUN/pq/codebook.arrow
pq=""
if [ ! -e "$codebook" ]; then
    step_flags PQ "${feat_ready[train]:-}" afterok
    submit fit-pq "${FLAGS[@]}" \
        "$here/job.sbatch" fit-pq "${COMMON[@]}" --features "$RUN/features/train" --out "$codebook" \
        --threads "$THREADS" "${device_flag[@]}"
    pq=$JOB
fi

# --- codes: one array per split, then its check ---------------------------------------------
codes_ready=()
for split in $SPLITS; do
    out=$RUN/codes/$split
    if ! parts_present "$out"; then
        step_flags CODES "$(deps "$pq" "${feat_ready[$split]}")" afterok
        submit "codes-$split" "${FLAGS[@]}" --array="0-$((SHARDS - 1))" \
            "$here/shard.sbatch" extract-codes "${COMMON[@]}" --features "$RUN/features/$split" \
            --codebook "$codebook" --out "$out" --threads "$THREADS" "${device_flag[@]}"
        step_flags CHECK "$JOB" afterany
        submit "check-codes-$split" "${FLAGS[@]}" "$here/check.sbatch" "$out" --shards "$SHARDS" \
            --covers "$RUN/features/$split"
        codes_ready+=("$JOB")
    fi
done

# --- streaming: one job per method ------------------------------------------------------------
submit_streams "$(deps "$imp" "$pq" "${codes_ready[@]}")" --questions "$RUN/questions" \
    --train-codes "$RUN/codes/train" --val-codes "$RUN/codes/val" --codebook "$codebook"

# --- evaluation ---------------------------------------------------------------------------------
if [ ${#STREAMS[@]} -gt 0 ] || [ ! -e "$RUN/metrics.json" ]; then
    step_flags EVALUATE "$(deps "$imp" "${STREAMS[@]}")" afterok
    submit evaluate "${FLAGS[@]}" \
        "$here/job.sbatch" evaluate "${COMMON[@]}" --questions "$RUN/questions/questions.parquet" \
        --question-types "$RUN/questions/question_types.parquet" --stream-dir "$RUN/stream" --out "$RUN"
fi

finish_chain
