#!/usr/bin/env python3
"""Streaming updates alone and beside a second process running the same update (issue #16).

For each update kind (the VQA update: S-MAC at the clevr-qtype default's size; the
classification update: REMIND at the fashion-mnist default's size) this measures, in one
run and alternating so that drift hits both alike:

- idle_per_s: updates/s alone, with the project's OpenMP default (the binaries' launcher);
- loaded_per_s: updates/s of each of two identical processes started together (mean);
- today_idle_per_s / today_loaded_per_s: the same with libgomp's default spin
  (REMIND_SPIN_COUNT=libgomp), the behaviour before the launcher;
- loaded_vs_idle = loaded_per_s / idle_per_s (a fair share of the cores is 0.5);
- idle_vs_today = idle_per_s / today_idle_per_s (what the default costs alone).

Usage: bench_contention.py --bin-dir target/release --out artifacts/bench/contention.json
       [--threads 2] [--repeats 3] [--spin N ...]  (--spin: also measure other spin counts)
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

KINDS = {
    "vqa": (
        "remind-bench-vqa",
        ["--in-channels", "64", "--iters", "150", "--warmup", "10"],
        "updates_per_s",
    ),
    "classify": (
        "remind-bench-classify",
        ["--width", "16", "--map", "4", "--classes", "10", "--items", "8000",
         "--iters", "15", "--blocks", "3"],
        "remind_updates_per_s",
    ),
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def start(bin_dir, kind, threads, env_extra):
    binary, args, _ = KINDS[kind]
    env = dict(os.environ)
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "REMIND_SPIN_COUNT", "REMIND_OPENMP_SET"):
        env.pop(k, None)
    env.update(env_extra)
    cmd = [os.path.join(bin_dir, binary), "--threads", str(threads), "--device", "cpu"] + args
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def rate(proc, kind):
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"bench_contention: {KINDS[kind][0]} failed ({proc.returncode}): {err.strip()}")
    line = [l for l in out.splitlines() if l.startswith("{")][0]
    return json.loads(line)[KINDS[kind][2]]


def alone(bin_dir, kind, threads, env):
    return rate(start(bin_dir, kind, threads, env), kind)


def pair(bin_dir, kind, threads, env):
    a = start(bin_dir, kind, threads, env)
    b = start(bin_dir, kind, threads, env)
    return statistics.mean([rate(a, kind), rate(b, kind)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--spin", type=int, nargs="*", default=[],
                    help="also measure these spin counts (to choose the default)")
    a = ap.parse_args()
    variants = {"default": {}, "today": {"REMIND_SPIN_COUNT": "libgomp"},
                "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
    for s in a.spin:
        variants[f"spin_{s}"] = {"REMIND_SPIN_COUNT": str(s)}
    result = {"cpu": cpu_model(), "threads": a.threads, "repeats": a.repeats,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for kind in KINDS:
        idle = {v: [] for v in variants}
        loaded = {v: [] for v in variants}
        for r in range(a.repeats):
            for v, env in variants.items():
                idle[v].append(alone(a.bin_dir, kind, a.threads, env))
                loaded[v].append(pair(a.bin_dir, kind, a.threads, env))
                print(f"{kind} {v} repeat {r + 1}: idle {idle[v][-1]:.3g}/s, "
                      f"loaded {loaded[v][-1]:.3g}/s", file=sys.stderr)
        med = {v: (statistics.median(idle[v]), statistics.median(loaded[v])) for v in variants}
        row = {
            "idle_per_s": med["default"][0],
            "loaded_per_s": med["default"][1],
            "loaded_vs_idle": med["default"][1] / med["default"][0],
            "idle_vs_today": med["default"][0] / med["today"][0],
            "today_idle_per_s": med["today"][0],
            "today_loaded_per_s": med["today"][1],
            "today_loaded_vs_idle": med["today"][1] / med["today"][0],
            "variants": {v: {"idle_per_s": i, "loaded_per_s": l, "loaded_vs_idle": l / i,
                             "idle_vs_today": i / med["today"][0]}
                         for v, (i, l) in med.items()},
        }
        result[kind] = row
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, a.out)
    for kind in KINDS:
        r = result[kind]
        print(f"{kind}: idle {r['idle_per_s']:.3g}/s, loaded {r['loaded_per_s']:.3g}/s, "
              f"loaded_vs_idle {r['loaded_vs_idle']:.3f}, idle_vs_today {r['idle_vs_today']:.3f} "
              f"(libgomp's default: loaded_vs_idle {r['today_loaded_vs_idle']:.3f})")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
