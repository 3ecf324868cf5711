# What the Slurm drivers (submit.sh: streaming VQA, submit-classify.sh: image
# classification) share: KEY=VALUE and common settings, sbatch flags per step, submission with job ids
# recorded, dependencies, and WAIT=1. Sourced; the driver sets `here` and calls
# chain_settings before init_chain.

# parse_settings <driver> <args...>: exports KEY=VALUE arguments; --help prints the driver's
# header comment.
parse_settings() {
    local driver=$1 arg
    shift
    for arg in "$@"; do
        case $arg in
            [A-Z]*=*) export "${arg%%=*}=${arg#*=}" ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "$driver" | sed '$d; s/^# \{0,1\}//'
                exit 0
                ;;
            *)
                echo "$(basename "$driver"): unknown argument '$arg' (settings are KEY=VALUE; see --help)" >&2
                exit 2
                ;;
        esac
    done
}

# chain_settings <default config>: the settings every driver has (CONFIG, NAME, ART, RUN,
# SHARDS, METHODS, BIN, DEVICE, WAIT, DRY_RUN), from the environment or their defaults.
chain_settings() {
    CONFIG=${CONFIG:-$1}
    NAME=$(basename "$CONFIG" .yaml)
    ART=${ART:-artifacts}
    RUN=${RUN:-$ART/$NAME}
    SHARDS=${SHARDS:-4}
    METHODS=${METHODS:-offline remind finetune}
    BIN=${BIN:-target/release}
    DEVICE=${DEVICE:-}
    WAIT=${WAIT:-}
    DRY_RUN=${DRY_RUN:-}
}

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# Checks what every chain needs, then sets up its job list and log folder, the stages'
# common flags (COMMON) and the --device flag (device_flag).
init_chain() {
    [ -f "$CONFIG" ] || die "no pipeline config $CONFIG"
    [[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a positive number, found '$SHARDS'"
    [ -x "$BIN/remind-artifact" ] || die "no stage binaries in $BIN (make build)"
    if [ -z "$DRY_RUN" ]; then
        command -v sbatch >/dev/null || die "sbatch not found: run on a Slurm submit host"
    fi
    BIN=$(cd "$BIN" && pwd)
    LOGS=$RUN/slurm/logs
    JOBS_FILE=$RUN/slurm/jobs.txt
    if [ -n "$DRY_RUN" ]; then
        JOBS_FILE=/dev/null
    else
        mkdir -p "$LOGS"
        : >"$JOBS_FILE"
    fi
    ALL_JOBS=()
    fake_id=1000
    export REMIND_BIN=$BIN REMIND_QUIET=1
    COMMON=(--config "$CONFIG" --run-dir "$RUN")
    device_flag=()
    [ -n "$DEVICE" ] && device_flag=(--device "$DEVICE")
    return 0
}

# sbatch flags for step $1: resources, partition, logs, dependencies $2 (job ids, ':'-joined).
step_flags() {
    local step=$1 deps=$2 kind=$3
    local v cpus mem time gpus
    v=${step}_CPUS && cpus=${!v:-${CPUS:-1}}
    v=${step}_MEM && mem=${!v:-${MEM:-}}
    v=${step}_TIME && time=${!v:-${TIME:-04:00:00}}
    v=${step}_GPUS && gpus=${!v:-${GPUS:-0}}
    FLAGS=(--parsable --kill-on-invalid-dep=yes --cpus-per-task="$cpus" --time="$time")
    [ -n "$mem" ] && FLAGS+=(--mem="$mem")
    [ "$gpus" != 0 ] && FLAGS+=(--gres="gpu:$gpus")
    [ -n "${PARTITION:-}" ] && FLAGS+=(--partition="$PARTITION")
    [ -n "${ACCOUNT:-}" ] && FLAGS+=(--account="$ACCOUNT")
    [ -n "${QOS:-}" ] && FLAGS+=(--qos="$QOS")
    if [ -n "$deps" ]; then
        FLAGS+=(--dependency="$kind:$deps")
    fi
    # shellcheck disable=SC2206
    [ -n "${SBATCH_EXTRA:-}" ] && FLAGS+=($SBATCH_EXTRA)
    THREADS=$cpus
    return 0
}

# submit <label> <sbatch flags...> <template> <args...>: names the job <name>-<label>, logs
# it under $LOGS, records its id in $JOBS_FILE and sets JOB.
submit() {
    local label=$1
    shift
    local log="$LOGS/%x-%j.out"
    [[ " $* " == *" --array="* ]] && log="$LOGS/%x-%A_%a.out"
    local cmd=(sbatch --job-name="$NAME-$label" --output="$log" "$@")
    if [ -n "$DRY_RUN" ]; then
        fake_id=$((fake_id + 1))
        JOB=$fake_id
        printf '%q ' "${cmd[@]}" >&2
        echo >&2
    else
        JOB=$("${cmd[@]}")
        JOB=${JOB%%;*}
    fi
    ALL_JOBS+=("$JOB")
    printf '%-24s %s\n' "$label" "$JOB" | tee -a "$JOBS_FILE"
}

# Joins job ids (skipping empty ones) with ':'.
deps() {
    local out="" id
    for id in "$@"; do
        [ -n "$id" ] && out=${out:+$out:}$id
    done
    echo "$out"
}

# Whether every part of dataset folder $1 written for $SHARDS shards exists (by name).
parts_present() {
    local k
    for ((k = 0; k < SHARDS; k++)); do
        [ -f "$(printf '%s/part-%05d-of-%05d.arrow' "$1" "$k" "$SHARDS")" ] || return 1
    done
}

# submit_streams <deps> <stream-train args...>: one stream-train job per method of METHODS
# whose $OUT/stream/<method>/complete.json is missing (OUT: the folder of the streams and
# metrics, $RUN unless a driver sets it), after <deps>, resuming what a killed job left;
# their ids go to STREAMS.
submit_streams() {
    local after=$1 method
    shift
    STREAMS=()
    for method in $METHODS; do
        if [ ! -e "${OUT:-$RUN}/stream/$method/complete.json" ]; then
            step_flags STREAM "$after" afterok
            submit "stream-$method" "${FLAGS[@]}" "$here/job.sbatch" stream-train "${COMMON[@]}" \
                --method "$method" "$@" --out "${OUT:-$RUN}/stream" --resume --restart-stale \
                --threads "$THREADS" "${device_flag[@]}"
            STREAMS+=("$JOB")
        fi
    done
}

# After the last submission: says what was submitted and, with WAIT=1, waits for the chain
# and reports each job's outcome (exit 1 unless all completed and ${OUT:-$RUN}/metrics.json
# exists).
finish_chain() {
    local ids active failed label id states
    if [ ${#ALL_JOBS[@]} -eq 0 ]; then
        echo "$(basename "$0"): $RUN is complete, nothing to submit" >&2
        exit 0
    fi
    echo "$(basename "$0"): ${#ALL_JOBS[@]} job(s) submitted for $NAME; logs in $LOGS" >&2
    [ -z "$WAIT" ] || [ -n "$DRY_RUN" ] && exit 0

    # --- WAIT=1: until no job of the chain is pending or running, then their outcome -----------
    ids=$(
        IFS=,
        echo "${ALL_JOBS[*]}"
    )
    # squeue lists the chain's jobs still pending or running; a failed call is retried, unless it
    # only says that the ids are unknown (jobs purged after MinJobAge: finished).
    while true; do
        if active=$(squeue -h -j "$ids" -o %i 2>"$RUN/slurm/.squeue.err"); then
            [ -z "$active" ] && break
        elif grep -q "Invalid job id" "$RUN/slurm/.squeue.err"; then
            break
        fi
        sleep "${WAIT_POLL:-2}"
    done
    rm -f "$RUN/slurm/.squeue.err"
    failed=0
    while read -r label id; do
        states=$(scontrol -o show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort | uniq -c | xargs)
        if [ -z "$states" ]; then
            echo "  $label ($id): no longer known to slurmctld" >&2
        elif [[ $states =~ ^[0-9]+\ COMPLETED$ ]]; then
            echo "  $label ($id): $states" >&2
        else
            echo "  $label ($id): $states  (logs: $LOGS/$NAME-$label-$id*.out)" >&2
            failed=1
        fi
    done <"$JOBS_FILE"
    if [ $failed -ne 0 ] || [ ! -e "${OUT:-$RUN}/metrics.json" ]; then
        echo "$(basename "$0"): $NAME did not complete; fix the cause and run it again (only the missing work is redone)" >&2
        exit 1
    fi
    echo "$(basename "$0"): $NAME complete: ${OUT:-$RUN}/metrics.json" >&2
}
