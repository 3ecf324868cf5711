#!/usr/bin/env bash
# make test-slurm: the sharded pipeline on a real Slurm (slurm-wlm 22.05 from Debian).
#
# Starts a private single-node cluster (scripts/slurm-local.sh, under a temporary folder),
# then:
#  1. runs the tiny chain (pipelines/clevr-tiny.yaml) without Slurm: `make clevr-tiny`;
#  2. runs the same chain through the Slurm driver, sharded stages as 3-task job arrays:
#     `make slurm-clevr-tiny SHARDS=3 WAIT=1`, into the same path (so that paths recorded in
#     artifacts are equal), and compares every artifact with step 1's: byte for byte, except
#     the timings in reports and the sharded datasets (features, codes), which are compared
#     row by row by id (`remind-artifact compare`);
#  3. faults: a lost part (named by the completeness check, redone alone by a resubmission,
#     the other parts untouched); a task cancelled mid-write with scancel (its part absent,
#     the check job fails naming it, the next job never starts, resubmitting completes the
#     dataset); shards resubmitted with other parameters (refused); N changed between
#     submissions (refused, the check names the cause);
#  4. the tiny classification chain (pipelines/fashion-tiny.yaml) without Slurm and through
#     `make slurm-fashion-tiny SHARDS=3 WAIT=1`, compared as in step 2;
# and stops the daemons it started. Needs root (slurmd); one to a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${REMIND_BIN_DIR:-$PWD/target/release}
PY=${REMIND_PYTHON:-python3}
T=$(mktemp -d /tmp/remind-test-slurm.XXXXXX)
CLUSTER=$T/cluster
ART=$T/art
RUN=$ART/clevr-tiny
LOGS=$T/logs
mkdir -p "$LOGS"
export REMIND_BIN=$BIN REMIND_QUIET=1
# The makes driven here run on the binaries in BIN, built already (SETUP=), and must not
# inherit the flags and overrides of an outer make (`make test-slurm`).
unset MAKEFLAGS MFLAGS MAKELEVEL
mk() { make --no-print-directory -s SETUP= BIN="$BIN" ART="$ART" "$@"; }

say() { echo "test-slurm: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

cleanup() {
    local status=$?
    bash scripts/slurm-local.sh stop "$CLUSTER" || true
    rm -rf "$T/synth"
    if [ $status -eq 0 ]; then
        rm -rf "$T"
    else
        say "kept $T for inspection (cluster logs in $CLUSTER/log)"
    fi
}
trap cleanup EXIT

# States of a job (an array: "<task> <state>" per task), one per line, sorted.
states() {
    scontrol -o show job "$1" | sed -n 's/.*ArrayTaskId=\([0-9]*\) .*JobState=\([A-Z_]*\).*/\1 \2/p; t; s/.*JobState=\([A-Z_]*\).*/\1/p' | sort
}
# Waits until none of the given jobs is pending or running (at most 5 minutes).
wait_jobs() {
    local ids i
    ids=$(
        IFS=,
        echo "$*"
    )
    for ((i = 0; i < 1500; i++)); do
        [ -z "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ] && return 0
        sleep 0.2
    done
    fail "jobs $ids still running after 5 minutes"
}
expect_states() { # job, expected states (as `states` prints them, joined by ';')
    local found
    found=$(states "$1" | paste -sd';')
    [ "$found" = "$2" ] || fail "job $1: expected states '$2', found '$found'"
}
expect_in() { # file, text
    grep -qF -- "$2" "$1" || {
        cat "$1" >&2
        fail "$1 does not say '$2'"
    }
}
# A file's identity: every write is a new file renamed into place, so an unchanged inode
# means never rewritten (an output found up to date has its mtime brought forward for make).
identity() { stat -c '%n %i %s' "$@"; }

start=$SECONDS
bash scripts/slurm-local.sh start "$CLUSTER"
export SLURM_CONF=$CLUSTER/slurm.conf

# compare_runs LOCAL SLURM NAME "DATASETS" "MUST": every artifact under the two roots (both
# runs wrote the same paths) byte for byte, reports but for their timings, the sharded
# DATASETS (under NAME) row by row by id, and the MUST files (under NAME) byte-identical.
compare_runs() {
    "$PY" - "$1" "$2" "$BIN" "$3" "$4" "$5" <<'EOF'
import json, os, subprocess, sys

local, slurm, bin_dir, run_name = sys.argv[1:5]
DATASETS = [f"{run_name}/{d}" for d in sys.argv[5].split()]
MUST = [f"{run_name}/{f}" for f in sys.argv[6].split()]

def listing(root):
    out = set()
    for dirpath, _, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == f"{run_name}/slurm" or rel_dir.startswith(f"{run_name}/slurm/"):
            continue  # the Slurm run's job list and logs
        if any(part.startswith(".") for part in rel_dir.split(os.sep) if part != "."):
            continue  # bookkeeping folders: section stamps, locks
        for name in names:
            if name == "manifest.json" or name.startswith("."):
                continue  # bookkeeping: times, part files, digests of this run's inputs
            if rel_dir in DATASETS and name.startswith("part-"):
                continue  # sharded differently: compared row by row below
            out.add(os.path.normpath(os.path.join(rel_dir, name)))
    return out

# What a run measures of itself rather than computes: every "*seconds*" field,
# stream-train's measured update rates, and the compute block's rate and peak memory
# (its counts, FLOPs and buffer bytes must agree).
MEASURED = {"update_rate", "updates_per_s", "peak_rss_bytes"}

def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if "seconds" not in k and k not in MEASURED}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value

a, b = listing(local), listing(slurm)
problems = [f"only without Slurm: {f}" for f in sorted(a - b)]
problems += [f"only with Slurm: {f}" for f in sorted(b - a)]
same_bytes, same_but_timings = [], []
for f in sorted(a & b):
    x = open(os.path.join(local, f), "rb").read()
    y = open(os.path.join(slurm, f), "rb").read()
    if x == y:
        same_bytes.append(f)
    elif f.endswith(".json") and without_timings(json.loads(x)) == without_timings(json.loads(y)):
        same_but_timings.append(f)
    else:
        problems.append(f"differs: {f}")
for must in MUST:
    # metrics.json holds each method's compute block, measured figures included.
    if must not in same_bytes and not (must.endswith(".json") and must in same_but_timings):
        problems.append(f"not byte-identical (a report: not equal but for timings): {must}")
for ds in DATASETS:
    parts = sorted(p for p in os.listdir(os.path.join(slurm, ds)) if p.startswith("part-"))
    if parts != [f"part-0000{k}-of-00003.arrow" for k in range(3)]:
        problems.append(f"{ds}: expected 3 parts with Slurm, found {parts}")
    r = subprocess.run([os.path.join(bin_dir, "remind-artifact"), "compare",
                        os.path.join(local, ds), os.path.join(slurm, ds)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"{ds}: {r.stderr.strip()}")
    else:
        print(f"test-slurm:    {ds}: 1 part vs 3, {r.stdout.strip()}", file=sys.stderr)
print(f"test-slurm:    {len(same_bytes)} files byte-identical, {len(same_but_timings)} reports "
      f"equal but for timings ({', '.join(same_but_timings)})", file=sys.stderr)
if problems:
    sys.exit("test-slurm: FAILED: the runs differ:\n  " + "\n  ".join(problems))
EOF
}

# --- 1. the tiny chain without Slurm -----------------------------------------------------------
say "1. the tiny chain without Slurm (make clevr-tiny)"
mk clevr-tiny STAGE_THREADS=1 QUIET=1 >"$LOGS/local.log" 2>&1 ||
    { tail -n 30 "$LOGS/local.log" >&2; fail "make clevr-tiny"; }
mv "$ART" "$T/local"
say "   done at $((SECONDS - start)) s"

# --- 2. the same chain through Slurm, 3 shards -------------------------------------------------
say "2. the same chain as Slurm jobs (make slurm-clevr-tiny SHARDS=3)"
mk slurm-clevr-tiny SHARDS=3 CPUS=1 WAIT=1 >"$LOGS/slurm.log" 2>&1 ||
    { cat "$LOGS/slurm.log" >&2; fail "make slurm-clevr-tiny"; }
grep -q "^features-train " "$RUN/slurm/jobs.txt" || fail "no features array in $RUN/slurm/jobs.txt"
for ds in features/train features/val codes/train codes/val; do
    for k in 0 1 2; do
        [ -f "$RUN/$ds/part-0000$k-of-00003.arrow" ] || fail "$ds: part $k/3 missing"
    done
done
say "   done at $((SECONDS - start)) s; comparing with the run without Slurm"

compare_runs "$T/local" "$ART" clevr-tiny "features/train features/val codes/train codes/val" \
    "metrics.json metrics.parquet pq/codebook.arrow backbone/weights.safetensors stream/remind/predictions/boundary-004.parquet"

# --- 3a. a lost part: named by the check, redone alone --------------------------------------------
say "3a. a lost part of codes/val: the check names it, a resubmission redoes only it"
rm "$RUN/codes/val/part-00001-of-00003.arrow"
kept=$(identity "$RUN/codes/val/part-00000-of-00003.arrow" "$RUN/codes/val/part-00002-of-00003.arrow")
if "$BIN/remind-artifact" check-complete "$RUN/codes/val" --shards 3 2>"$LOGS/check-lost.err"; then
    fail "check-complete passed on a dataset without part 1"
fi
expect_in "$LOGS/check-lost.err" "missing shard(s) 1/3 of 3"
mk slurm-clevr-tiny SHARDS=3 CPUS=1 WAIT=1 >"$LOGS/slurm-lost.log" 2>&1 ||
    { cat "$LOGS/slurm-lost.log" >&2; fail "resubmission after a lost part"; }
submitted=$(cut -d' ' -f1 "$RUN/slurm/jobs.txt" | paste -sd' ')
[ "$submitted" = "codes-val check-codes-val" ] || fail "resubmission submitted '$submitted'"
[ "$(identity "$RUN/codes/val/part-00000-of-00003.arrow" "$RUN/codes/val/part-00002-of-00003.arrow")" = "$kept" ] ||
    fail "finished parts were rewritten"
codes_job=$(awk '$1 == "codes-val" {print $2}' "$RUN/slurm/jobs.txt")
expect_in "$RUN/slurm/logs/clevr-tiny-codes-val-${codes_job}_0.out" "remind-extract-codes: up to date"
"$BIN/remind-artifact" compare "$T/local/clevr-tiny/codes/val" "$RUN/codes/val" >/dev/null ||
    fail "codes/val differs after the resubmission"

# --- 3b. a task cancelled mid-write -----------------------------------------------------------------
say "3b. scancel of a shard mid-write: part absent, check fails naming it, next job never starts"
SYNTH=$T/synth
synth=(synth-features --items 30000 --height 4 --width 4 --channels 256 --batch 64
    --out "$SYNTH" --run-dir "$T/synth-run")
array() { sbatch --parsable --array=0-2 --cpus-per-task=1 --output="$LOGS/synth-%A_%a.out" pipelines/slurm/shard.sbatch "$@"; }
check() { sbatch --parsable --dependency="afterany:$1" --output="$LOGS/check-%j.out" pipelines/slurm/check.sbatch "$SYNTH" --shards "${2:-3}"; }
a=$(array "${synth[@]}")
c=$(check "$a")
n=$(sbatch --parsable --dependency="afterok:$c" --kill-on-invalid-dep=yes --output="$LOGS/next-%j.out" \
    --wrap "touch $T/next-ran")
for ((i = 0; ; i++)); do
    tmp=$(find "$SYNTH" -maxdepth 1 -name '.tmp-part-00001-of-00003.arrow.*' -size +1M 2>/dev/null || true)
    [ -n "$tmp" ] && break
    [ -e "$SYNTH/part-00001-of-00003.arrow" ] && fail "shard 1 finished before it could be cancelled"
    ((i < 1500)) || fail "shard 1 never started writing"
    sleep 0.1
done
scancel "${a}_1"
wait_jobs "$a" "$c" "$n"
expect_states "$a" "0 COMPLETED;1 CANCELLED;2 COMPLETED"
expect_states "$c" "FAILED"
expect_states "$n" "CANCELLED"
[ ! -e "$T/next-ran" ] || fail "the job after the failed check ran"
[ ! -e "$SYNTH/part-00001-of-00003.arrow" ] || fail "the cancelled shard left a part"
expect_in "$LOGS/check-$c.out" "missing shard(s) 1/3 of 3 (1/3: an unfinished write"
kept=$(identity "$SYNTH/part-00000-of-00003.arrow" "$SYNTH/part-00002-of-00003.arrow")
say "   resubmitting the same array"
a=$(array "${synth[@]}")
c=$(check "$a")
wait_jobs "$a" "$c"
expect_states "$a" "0 COMPLETED;1 COMPLETED;2 COMPLETED"
expect_states "$c" "COMPLETED"
expect_in "$LOGS/check-$c.out" "complete: 3 features part(s), 30000 rows"
expect_in "$LOGS/synth-${a}_0.out" "already complete, skipped"
[ "$(identity "$SYNTH/part-00000-of-00003.arrow" "$SYNTH/part-00002-of-00003.arrow")" = "$kept" ] ||
    fail "finished parts were rewritten"
[ -z "$(find "$SYNTH" -name '.tmp-*')" ] || fail "the dead writer's temporary file is still there"

# --- 3c. shards with other parameters -----------------------------------------------------------------
say "3c. a shard resubmitted with other parameters (config hash differs): refused"
rm "$SYNTH/part-00002-of-00003.arrow"
a=$(array "${synth[@]}" --seed 7)
c=$(check "$a")
wait_jobs "$a" "$c"
expect_states "$a" "0 FAILED;1 FAILED;2 FAILED"
expect_in "$LOGS/synth-${a}_2.out" "the shards were configured with different parameters"
expect_in "$LOGS/check-$c.out" "missing shard(s) 2/3 of 3"
[ ! -e "$SYNTH/part-00002-of-00003.arrow" ] || fail "a shard with other parameters was written"

# --- 3d. N changed between submissions ------------------------------------------------------------------
say "3d. the shard count changed between submissions: refused"
a=$(sbatch --parsable --array=0-1 --cpus-per-task=1 --output="$LOGS/synth-%A_%a.out" pipelines/slurm/shard.sbatch "${synth[@]}")
c=$(check "$a" 2)
wait_jobs "$a" "$c"
expect_states "$a" "0 FAILED;1 FAILED"
expect_in "$LOGS/synth-${a}_0.out" "the shard count changed between submissions"
expect_in "$LOGS/check-$c.out" "parts were written for 3 shard(s)"
# The same through the driver: SHARDS=2 for a run made with 3.
if mk slurm-clevr-tiny SHARDS=2 CPUS=1 WAIT=1 >"$LOGS/slurm-n2.log" 2>&1; then
    fail "the driver accepted SHARDS=2 for datasets of 3 shards"
fi
check_job=$(awk '$1 == "check-features-train" {print $2}' "$RUN/slurm/jobs.txt")
expect_in "$RUN/slurm/logs/clevr-tiny-check-features-train-$check_job.out" "shard count changed between submissions"
codes_job=$(awk '$1 == "codes-train" {print $2}' "$RUN/slurm/jobs.txt")
[ -z "$(states "$codes_job" | grep -v CANCELLED)" ] || fail "codes-train ran after a failed check: $(states "$codes_job")"
"$BIN/remind-artifact" check-complete "$RUN/features/train" --shards 3 >/dev/null ||
    fail "the refused submission damaged features/train"

# --- 4. the classification chain, without Slurm and through it --------------------------------------
say "4. the tiny classification chain without Slurm and as Slurm jobs (fashion-tiny, SHARDS=3)"
mk fashion-tiny STAGE_THREADS=1 QUIET=1 >"$LOGS/local-classify.log" 2>&1 ||
    { tail -n 30 "$LOGS/local-classify.log" >&2; fail "make fashion-tiny"; }
mkdir -p "$T/local-classify"
mv "$ART/fashion-tiny" "$T/local-classify/"
mk slurm-fashion-tiny SHARDS=3 CPUS=1 WAIT=1 >"$LOGS/slurm-classify.log" 2>&1 ||
    { cat "$LOGS/slurm-classify.log" >&2; fail "make slurm-fashion-tiny"; }
mkdir -p "$T/slurm-classify"
mv "$ART/fashion-tiny" "$T/slurm-classify/"
compare_runs "$T/local-classify" "$T/slurm-classify" fashion-tiny "features codes" \
    "metrics.json metrics.parquet data/labels.parquet base/weights.safetensors pq/codebook.arrow stream/remind/probabilities/eval-004.arrow"

say "passed in $((SECONDS - start)) s"
