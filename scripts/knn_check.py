"""Independent re-computation of `selfsup eval knn` from `selfsup embed` outputs, with numpy.

Weighted kNN as LightlySSL's benchmark `knn_predict` (InstDisc): cosine similarity of
L2-normalised features, the k most similar training images vote for their class with weight
exp(similarity / T); the top-1 prediction is the class with the largest summed weight.

    /work/venv/bin/python scripts/knn_check.py TRAIN_EMBED TEST_EMBED [--k 200] [--t 0.1] \
        [--expected 0.4243]

TRAIN_EMBED / TEST_EMBED: `selfsup embed --split train|test --out FILE.safetensors` (tensors
`embeddings`, `labels`) or FILE.npy (labels from FILE.labels.npy). With --expected (selfsup's
kNN top-1, as a fraction or a percentage), prints both and fails (exit 1) if they differ by more
than --tolerance percentage points.
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def load(path):
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        t = load_file(path)
        return t["embeddings"], t["labels"]
    if path.endswith(".npy"):
        labels = path[: -len(".npy")] + ".labels.npy"
        if not os.path.exists(labels):
            sys.exit(f"{labels} not found (written beside {path} by selfsup embed)")
        return np.load(path), np.load(labels)
    sys.exit(f"{path}: expected a .safetensors or .npy file from `selfsup embed`")


def knn_top1(train, train_labels, test, test_labels, k, t, chunk=256):
    train = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    test = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, len(train))
    correct = 0
    for i in range(0, len(test), chunk):
        sim = test[i : i + chunk] @ train.T  # [B, N]
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.exp(np.take_along_axis(sim, top, axis=1) / t)  # [B, k]
        scores = np.zeros((len(sim), classes))
        np.add.at(scores, (np.arange(len(sim))[:, None], train_labels[top]), w)
        correct += int((scores.argmax(axis=1) == test_labels[i : i + chunk]).sum())
    return correct / len(test)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--t", type=float, default=0.1)
    ap.add_argument("--expected", type=float, help="selfsup eval knn top-1 (fraction or percent)")
    ap.add_argument("--tolerance", type=float, default=0.5, help="percentage points")
    args = ap.parse_args()

    train, train_labels = load(args.train)
    test, test_labels = load(args.test)
    for name, lab in (("train", train_labels), ("test", test_labels)):
        if (lab < 0).any():
            sys.exit(f"{name} embeddings include unlabelled images (label -1); kNN needs labels")
    t0 = time.time()
    top1 = knn_top1(train.astype(np.float64), train_labels, test.astype(np.float64), test_labels, args.k, args.t)
    result = {
        "knn_top1": top1,
        "k": args.k,
        "temperature": args.t,
        "train_images": len(train),
        "test_images": len(test),
        "seconds": round(time.time() - t0, 1),
    }
    if args.expected is not None:
        expected = args.expected / 100 if args.expected > 1 else args.expected
        result["expected_top1"] = expected
        result["difference_points"] = 100 * (top1 - expected)
    print(json.dumps(result))
    print(f"numpy kNN top-1 {100 * top1:.2f}%", end="", file=sys.stderr)
    if args.expected is not None:
        ok = abs(result["difference_points"]) <= args.tolerance
        print(
            f" vs selfsup {100 * expected:.2f}%: difference {result['difference_points']:+.2f} points "
            f"({'within' if ok else 'OUTSIDE'} {args.tolerance})",
            file=sys.stderr,
        )
        if not ok:
            sys.exit(1)
    else:
        print(file=sys.stderr)


if __name__ == "__main__":
    main()
