#!/usr/bin/env python3
"""Compares two selfsup run directories: the step losses of metrics.jsonl (relative) and every
tensor of their last checkpoints (difference over max(|tensor|, 1)), as
crates/selfsup/tests/distributed.rs does. Standard library and numpy only (safetensors parsed
by hand), so it runs on a machine with nothing but Python.

    compare_runs.py RUN_A RUN_B [--tol 1e-5]     exit 1 when a difference exceeds --tol
"""
import argparse, glob, json, os, struct, sys

import numpy as np


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"])
    return out


def losses(run):
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    return [r["loss"] for r in rows if r.get("type") == "step"]


def last_checkpoint(run):
    found = sorted(glob.glob(os.path.join(run, "checkpoints", "epoch_*.safetensors")))
    if not found:
        sys.exit(f"compare_runs.py: no checkpoint in {run}/checkpoints")
    return found[-1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol", type=float, default=1e-5)
    args = p.parse_args()
    la, lb = losses(args.a), losses(args.b)
    if len(la) != len(lb) or not la:
        sys.exit(f"compare_runs.py: {len(la)} vs {len(lb)} step losses")
    loss_diff = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(la, lb))
    ta, tb = tensors(last_checkpoint(args.a)), tensors(last_checkpoint(args.b))
    if ta.keys() != tb.keys():
        sys.exit(f"compare_runs.py: tensors differ: {sorted(ta.keys() ^ tb.keys())[:5]}")
    worst, where = 0.0, ""
    for k in ta:
        d = float(np.abs(ta[k] - tb[k]).max(initial=0.0)) / max(float(np.abs(tb[k]).max(initial=0.0)), 1.0)
        if d > worst:
            worst, where = d, k
    print(json.dumps({"steps": len(la), "losses_a": la, "losses_b": lb, "worst_loss_rel": loss_diff,
                      "tensors": len(ta), "worst_tensor_rel": worst, "worst_tensor": where,
                      "tolerance": args.tol}))
    sys.exit(0 if loss_diff <= args.tol and worst <= args.tol else 1)


if __name__ == "__main__":
    main()
