#!/usr/bin/env python3
"""The method-zoo table (issue #4) from pretraining run directories.

usage: python3 scripts/zoo_table.py [--floor F] RUNS_DIR [RUNS_DIR ...]

Each RUNS_DIR/<method>/metrics.jsonl is read (written by `selfsup pretrain ... --set
train.knn_every=4`); the last epoch record gives kNN top-1 and the collapse diagnostics, the
epoch records' `seconds` the training time. If RUNS_DIR/<method>.stderr holds GNU time's `-v`
report, its wall clock (training + kNN evaluation + start-up) is shown too. If
RUNS_DIR/<method>.validation.json holds the JSON line of `selfsup eval knn --validation 0.1`,
its top-1 on the held-out train images is the "validation" column. F (default 32.95, the
random-init kNN of the same encoder) gives the "− floor" column.

With several RUNS_DIRs (recipes of the same methods), a second table keeps, for each method,
the run with the best validation kNN (runs grouped by the `method.name` of their config.toml):
the choice never looks at the test figures.
"""
import argparse
import json
import re
import tomllib
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


def validation(run: Path):
    f = run.parent / f"{run.name}.validation.json"
    if not f.exists():
        return None
    lines = [l for l in f.read_text().splitlines() if l.startswith("{")]
    return 100 * json.loads(lines[-1])["knn_top1"] if lines else None


def rows(runs: Path, floor: float):
    for metrics in sorted(runs.glob("*/metrics.jsonl")):
        epochs = [json.loads(l) for l in metrics.read_text().splitlines() if '"type":"epoch"' in l]
        if not epochs or "knn_top1" not in epochs[-1]:
            continue
        run = metrics.parent
        last = epochs[-1]
        d = last["diagnostics"]
        knn = 100 * last["knn_top1"]
        train_min = sum(e["seconds"] for e in epochs) / 60
        views = sum(e["views_per_second"] * e["seconds"] for e in epochs) / (60 * train_min)
        wall = wall_minutes(run.parent / f"{run.name}.stderr")
        val = validation(run)
        text = (f"| {run.parent.name}/{run.name} (epoch {last['epoch']}) | "
                f"{'–' if val is None else f'{val:.1f}'} | {knn:.1f} | {knn - floor:+.1f} | "
                f"{d['effective_rank']:.1f} / {d['dim']} | {d['embedding_std']:.3f} ({d['dim'] ** -0.5:.3f}) | "
                f"{last['loss']:.3f} | {train_min:.1f} | {'–' if wall is None else f'{wall:.1f}'} | {views:.0f} |")
        method = tomllib.loads((run / "config.toml").read_text())["method"]["name"]
        yield method, val, text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--floor", type=float, default=32.95)
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args()
    header = ("| run | validation kNN | test kNN top-1 | − floor | effective rank / dim | "
              "embedding std (1/√dim) | final loss | training min | wall min | views/s |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    all_rows = [r for runs in args.runs for r in rows(runs, args.floor)]
    print(header)
    for _, _, text in all_rows:
        print(text)
    if len(args.runs) > 1:
        best = {}
        for name, val, text in all_rows:
            if val is not None and (name not in best or val > best[name][0]):
                best[name] = (val, text)
        print("\nChosen on validation kNN:\n")
        print(header)
        for name in sorted(best):
            print(best[name][1])


if __name__ == "__main__":
    main()
