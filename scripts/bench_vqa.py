#!/usr/bin/env python3
"""The VQA model's training step in fp32 and in bf16 mixed precision, alternated in one run.

    python scripts/bench_vqa.py --bin-dir target/release --out artifacts/bench/vqa.json

Runs `remind-bench-vqa` (forward + backward + Adamax on a prepared batch of 1 + r items: the
floor REMIND's update is timed against in `stream-train`) at the clevr-qtype default's size
and at the paper's (S-MAC dim 512 on 14x14x1024 maps), fp32 and bf16 in turn, `--rounds`
times each, and writes per size the medians as fp32_floor_per_s and bf16_floor_per_s, their
ratio, and the CPU's bf16 flags. bf16 is skipped where the CPU has no bf16 instructions.
"""
import argparse
import json
import os
import statistics
import subprocess

from cpu_info import BF16_FLAGS, cpu_flags, cpu_has_bf16

SIZES = {
    "clevr_qtype_default": ["--in-channels", "64", "--iters", "60", "--warmup", "5"],
    "paper": ["--dim", "512", "--in-channels", "1024", "--map", "14", "--iters", "4", "--warmup", "1"],
}
# A GPU step takes milliseconds: more of them, after a longer warm-up (cuDNN's choices).
SIZES_CUDA = {
    "clevr_qtype_default": ["--in-channels", "64", "--iters", "200", "--warmup", "20"],
    "paper": ["--dim", "512", "--in-channels", "1024", "--map", "14", "--iters", "40", "--warmup", "5"],
}


def rate(bin_dir, threads, args, precision, device="cpu"):
    cmd = [os.path.join(bin_dir, "remind-bench-vqa"), "--threads", str(threads), "--device", device,
           "--precision", precision] + args
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["updates_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--out", default="artifacts/bench/vqa.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: time on the GPU (bf16 autocast on the card)")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args()
    flags = cpu_flags()
    # On CUDA, remind-bench-vqa itself refuses bf16 on a card without it.
    bf16 = cpu_has_bf16() or args.device == "cuda"
    result = {"bench": "vqa_step", "threads": args.threads, "device": args.device,
              "cpu_flags": sorted(flags & BF16_FLAGS)}
    sizes = SIZES_CUDA if args.device == "cuda" else SIZES
    for size in args.sizes:
        runs = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            runs["fp32"].append(rate(args.bin_dir, args.threads, sizes[size], "fp32", args.device))
            if bf16:
                runs["bf16"].append(rate(args.bin_dir, args.threads, sizes[size], "bf16", args.device))
        entry = {"fp32_floor_per_s": statistics.median(runs["fp32"]), "runs": runs}
        if bf16:
            entry["bf16_floor_per_s"] = statistics.median(runs["bf16"])
            entry["bf16_floor_vs_fp32_floor"] = entry["bf16_floor_per_s"] / entry["fp32_floor_per_s"]
        else:
            entry["bf16"] = "not measured: no avx512_bf16/amx_bf16 in /proc/cpuinfo"
        result[size] = entry
        print(f"{size}: fp32 {entry['fp32_floor_per_s']:.2f}/s"
              + (f", bf16 {entry['bf16_floor_per_s']:.2f}/s ({entry['bf16_floor_vs_fp32_floor']:.2f}x)" if bf16 else ""))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
