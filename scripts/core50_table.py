#!/usr/bin/env python3
"""Prints the table of CORe50's stream orders from their metrics.json files (make
core50-orders): final top-1 of REMIND, fine-tune and offline, and REMIND's and fine-tune's
Omega (top-1, against offline), as a Markdown table for README.md and BENCHMARKS.md."""
import json
import pathlib
import sys


def final(metrics, method):
    m = metrics.get(method)
    if not m:
        return None
    values = [v for v in m["seen_classes_top1"] if v is not None]
    return values[-1] if values else None


def cell(v, pct=True):
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def main(paths):
    print("| order | REMIND top-1 (%) | fine-tune top-1 (%) | offline top-1 (%) "
          "| REMIND Omega | fine-tune Omega |")
    print("|---|---:|---:|---:|---:|---:|")
    for p in paths:
        path = pathlib.Path(p)
        metrics = json.loads(path.read_text())
        order = metrics.get("order", "class_iid")
        omega = lambda m: (metrics.get(m) or {}).get("omega_all_top1")
        print(f"| {order} | {cell(final(metrics, 'remind'))} | "
              f"{cell(final(metrics, 'finetune'))} | {cell(final(metrics, 'offline'))} | "
              f"{cell(omega('remind'), False)} | {cell(omega('finetune'), False)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: core50_table.py <order>/metrics.json ...")
    main(sys.argv[1:])
