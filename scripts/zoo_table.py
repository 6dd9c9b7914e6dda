#!/usr/bin/env python3
"""The method-zoo table (issue #4) from pretraining run directories.

usage: python3 scripts/zoo_table.py RUNS_DIR [FLOOR]

Each RUNS_DIR/<method>/metrics.jsonl is read (written by `selfsup pretrain ... --set
train.knn_every=4`); the last epoch record gives kNN top-1 and the collapse diagnostics, the
epoch records' `seconds` the training time. If RUNS_DIR/<method>.stderr holds GNU time's `-v`
report, its wall clock (training + kNN evaluation + start-up) is shown too. FLOOR (default
32.95, the random-init kNN of the same encoder) gives the last column.
"""
import json
import re
import sys
from pathlib import Path


def wall_minutes(stderr: Path):
    if not stderr.exists():
        return None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr.read_text())
    if not m:
        return None
    parts = [float(p) for p in m.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return seconds / 60


def main():
    runs = Path(sys.argv[1])
    floor = float(sys.argv[2]) if len(sys.argv) > 2 else 32.95
    print("| method | kNN top-1 | − floor | effective rank / dim | embedding std (1/√dim) | final loss | "
          "training min | wall min | views/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for metrics in sorted(runs.glob("*/metrics.jsonl")):
        epochs = [json.loads(l) for l in metrics.read_text().splitlines() if '"type":"epoch"' in l]
        if not epochs or "knn_top1" not in epochs[-1]:
            continue
        last = epochs[-1]
        d = last["diagnostics"]
        knn = 100 * last["knn_top1"]
        train_min = sum(e["seconds"] for e in epochs) / 60
        views = sum(e["views_per_second"] * e["seconds"] for e in epochs) / (60 * train_min)
        wall = wall_minutes(metrics.parent.parent / f"{metrics.parent.name}.stderr")
        wall_text = f"{wall:.1f}" if wall is not None else "–"
        print(f"| {metrics.parent.name} (epoch {last['epoch']}) | {knn:.1f} | {knn - floor:+.1f} | "
              f"{d['effective_rank']:.1f} / {d['dim']} | {d['embedding_std']:.3f} ({d['dim'] ** -0.5:.3f}) | "
              f"{last['loss']:.3f} | "
              f"{train_min:.1f} | {wall_text} | {views:.0f} |")


if __name__ == "__main__":
    main()
