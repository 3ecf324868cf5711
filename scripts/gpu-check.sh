#!/usr/bin/env bash
# The GPU check, in two halves:
#   scripts/gpu-check.sh pack BIN_DIR [PROBE_BIN_DIR]
#                                       (here) strip and gzip the binaries it needs, built
#                                       against the GPU machine's libtorch, into .gpu/bin;
#                                       take the ABI probe's hashes with PROBE_BIN_DIR's
#                                       (default BIN_DIR), binaries that run here
#   scripts/gpu-check.sh run [STEP...]  (on the GPU machine) CUDA against the CPU
#                                       (remind-cuda-check), then GPU timings in fp32 and
#                                       bf16: the classification and VQA updates against
#                                       their bare steps, feature extraction against
#                                       PyTorch's, PQ against faiss-cpu, the clevr-qtype
#                                       chain (steps: bench-classify bench-vqa bench-features
#                                       cuda-check cuda-check-fp32 bench-pq bench-pq-cpu
#                                       clevr-qtype clevr-qtype-bf16 core50 fashion-mnist).
# `run` uses the machine's PyTorch for libtorch (python3 -c 'import torch'), faiss-cpu from
# .whl/ when present. Each step's log and JSON go to /tmp/gpu-out, packed after every step
# into $OUT/gpu-check.tgz (default OUT=artifacts/gpu), so a run cut short still brings
# back what it finished.
set -uo pipefail
BINS="remind-cuda-check remind-artifact remind-backbone remind-synth-features remind-bench-pq remind-bench-classify
remind-bench-vqa remind-generate-clevr remind-import-questions remind-train-backbone
remind-extract-features remind-fit-pq remind-extract-codes remind-stream-train remind-evaluate
remind-import-images remind-train-classifier remind-generate-core50"

# Seeded features and a CPU PQ fit on them (2 threads): bit-identical on any machine that
# runs the same code on the same libtorch ABI, so the hashes taken here at pack time,
# compared on the GPU machine, check that the binaries work against its libtorch.
abi_probe() {
    local bin=$1 dir=$2
    rm -rf "$dir" && mkdir -p "$dir"
    REMIND_QUIET=1 "$bin/remind-synth-features" --out "$dir/f" --items 300 --height 7 --width 7 \
        --channels 64 --seed 3 --run-dir "$dir" >/dev/null 2>&1 || return 1
    REMIND_QUIET=1 "$bin/remind-fit-pq" --features "$dir/f" --out "$dir/codebook.arrow" --device cpu \
        --threads 2 --run-dir "$dir" --num-subspaces 8 >/dev/null 2>&1 || return 1
    (cd "$dir" && sha256sum f/part-00000-of-00001.arrow codebook.arrow)
}

pack() {
    local src=${1:?usage: gpu-check.sh pack BIN_DIR}
    rm -rf .gpu/bin && mkdir -p .gpu/bin
    for b in $BINS; do
        strip -o ".gpu/bin/$b" "$src/$b" && gzip -9 ".gpu/bin/$b" || exit 1
    done
    cp "$(command -v make)" .gpu/bin/make
    # GPU_FASHION=1: take Fashion-MNIST along for the fashion-mnist step (30 MB; leave the
    # faiss wheel behind then: a call carries at most 64 MiB).
    if [ -n "${GPU_FASHION:-}" ]; then
        mkdir -p .gpu/fashion && cp /usr/share/datasets/fashion-mnist/*.gz .gpu/fashion/
    fi
    abi_probe "${2:-$src}" /tmp/gpu-abi >.gpu/abi.sha256 || exit 1
    du -sh .gpu
}

# step NAME LIMIT_S CMD...: runs CMD under a time limit, output under $LOG/NAME.{out,err},
# then packs $LOG into $OUT/gpu-check.tgz.
step() {
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$LOG/$name.out" 2>"$LOG/$name.err"
    rc=$?
    echo "-- $name: rc=$rc in $((SECONDS - start)) s"
    tail -n 12 "$LOG/$name.err"
    head -c 2500 "$LOG/$name.out"
    echo
    tar czf "$OUT/gpu-check.tgz" -C "$LOG" .
}

# The clevr-qtype run under ART: update rates and metrics into $LOG/NAME.json.
summarise() {
    python3 - "$1" "$LOG/$2.json" <<'EOF'
import json, sys, os
art, out = sys.argv[1] + "/clevr-qtype", {}
for m in ("remind", "finetune", "offline"):
    p = f"{art}/stream/{m}/complete.json"
    if os.path.exists(p):
        out[m] = json.load(open(p)).get("update_rate")
if os.path.exists(f"{art}/metrics.json"):
    out["metrics"] = json.load(open(f"{art}/metrics.json"))
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps({k: out[k] for k in out if k != "metrics"})[:1500])
print(json.dumps(out.get("metrics", {}))[:1500])
EOF
}

run() {
    OUT=${OUT:-artifacts/gpu}
    LOG=/tmp/gpu-out
    mkdir -p "$OUT" "$LOG" /tmp/gpu-bin
    for f in .gpu/bin/*.gz; do gunzip -c "$f" >"/tmp/gpu-bin/$(basename "$f" .gz)"; done
    chmod +x /tmp/gpu-bin/*
    command -v make >/dev/null || export PATH=$PWD/.gpu/bin:$PATH
    local bin=/tmp/gpu-bin lib
    lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} REMIND_QUIET=1
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch; print("torch", torch.__version__, "cpus", __import__("os").cpu_count())'
    if abi_probe "$bin" /tmp/gpu-abi >"$LOG/abi.sha256" && cmp -s "$LOG/abi.sha256" .gpu/abi.sha256; then
        echo "abi probe: the same bytes as on the packing machine"
    else
        echo "abi probe: DIFFERENT bytes from the packing machine"; cat "$LOG/abi.sha256" .gpu/abi.sha256
    fi
    local steps=${*:-bench-classify bench-vqa bench-features cuda-check clevr-qtype-bf16 clevr-qtype}
    for s in $steps; do
        case $s in
        cuda-check) step cuda-check 120 "$bin/remind-cuda-check" --threads 16 ;;
        cuda-check-fp32) step cuda-check-fp32 120 env NVIDIA_TF32_OVERRIDE=0 "$bin/remind-cuda-check" --threads 16 ;;
        bench-pq) step bench-pq 150 python3 scripts/bench_pq.py --bin-dir "$bin" --out "$LOG/pq.json" \
            --threads 16 --device cuda --work /tmp/bench ;;
        bench-pq-cpu) step bench-pq-cpu 150 python3 scripts/bench_pq.py --bin-dir "$bin" \
            --out "$LOG/pq-cpu.json" --threads 16 --device cpu --work /tmp/bench ;;
        # fp32 and bf16 floors and updates: blocks of 40 updates, the median of 7.
        bench-classify) step bench-classify 90 "$bin/remind-bench-classify" --device cuda --threads 16 \
            --iters 40 --blocks 7 --warmup 10 ;;
        bench-vqa) step bench-vqa 120 python3 scripts/bench_vqa.py --bin-dir "$bin" --out "$LOG/vqa.json" \
            --threads 16 --device cuda --rounds 2 ;;
        bench-features) step bench-features 150 python3 scripts/bench_features.py --bin-dir "$bin" \
            --out "$LOG/features.json" --threads 16 --decode-threads 14 --images 1024 --batch 64 \
            --device cuda ;;
        clevr-qtype) step clevr-qtype 200 make clevr-qtype SETUP= BIN="$bin" ART=/tmp/art STAGE_THREADS=16
            summarise /tmp/art clevr-qtype ;;
        clevr-qtype-bf16) step clevr-qtype-bf16 200 make clevr-qtype SETUP= BIN="$bin" ART=/tmp/art16 \
            STAGE_THREADS=16 PRECISION=bf16
            summarise /tmp/art16 clevr-qtype-bf16 ;;
        # Classification end to end on generated mini-CORe50 (REMIND's update split on two
        # threads on the card).
        core50) step core50 150 make core50 SETUP= BIN="$bin" ART=/tmp/art STAGE_THREADS=16 ;;
        # REMIND on the core50 chain's codes again, twice with its update split on two
        # threads and twice whole (REMIND_OVERLAP): final top-1 of each (GPU runs differ
        # run to run, so the spread within each pair is the yardstick).
        core50-split) local c=/tmp/art/core50 i=0
            for v in 1 1 0 0; do
                i=$((i + 1))
                step "core50-split-$i-$v" 60 env REMIND_OVERLAP=$v "$bin/remind-stream-train" \
                    --config pipelines/core50.yaml --run-dir $c --task classification --method remind \
                    --order class_instance --labels $c/data/labels.parquet --codes $c/codes \
                    --codebook $c/pq/codebook.arrow --base-weights $c/base/weights.safetensors \
                    --out /tmp/split-$i --threads 16
            done ;;
        fashion-mnist) step fashion-mnist 240 make fashion-mnist SETUP= BIN="$bin" ART=/tmp/art \
            FASHION_DIR="$PWD/.gpu/fashion" ;;
        *) echo "unknown step $s" ;;
        esac
    done
    tar czf "$OUT/gpu-check.tgz" -C "$LOG" .
}

case "${1:-}" in
pack) pack "${2:-}" "${3:-}" ;;
run) shift; run "$@" ;;
*) echo "usage: scripts/gpu-check.sh pack BIN_DIR [PROBE_BIN_DIR] | run [STEP...]" >&2; exit 2 ;;
esac
