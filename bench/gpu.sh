#!/usr/bin/env bash
# GPU benchmark (UNTESTED: no GPU was available when it was written; see bench/NOTES.md).
#
# On the build machine:  cargo build --release -p selfsup -p selfsup-bench \
#                            --features selfsup/gpu,selfsup-bench/gpu
# On an NVIDIA machine (Vulkan driver, Python with torch+CUDA, torchvision, lightly), from the
# repository root with target/release/{selfsup,selfsup-bench} copied along:
#   bench/gpu.sh            # about 10 minutes in all; writes bench/work/gpu/*.json and a summary
#
# 1. SimCLR train step, ResNet-18 CIFAR width 64 and 16, 2×128 views: selfsup on burn's Vulkan
#    backend vs PyTorch CUDA eager.  2. Backbone forward, batch 256.  3. CIFAR-10 SimCLR
#    ResNet-18 width 64, batch 512: time until the kNN accuracy (every epoch) first reaches 85%,
#    stopped at the time budget (GPU_PRETRAIN_SECONDS, default 420 s).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
bin="$root/target/release"
out="$root/bench/work/gpu"
mkdir -p "$out"
data="${SELFSUP_DATA:-$root/../shared/data}"
budget="${GPU_PRETRAIN_SECONDS:-420}"

for tool in "$bin/selfsup" "$bin/selfsup-bench"; do
  [ -x "$tool" ] || { echo "gpu.sh: $tool missing: build with --features selfsup/gpu,selfsup-bench/gpu" >&2; exit 2; }
done
"$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" \
  || { echo "gpu.sh: PyTorch cannot see a CUDA device" >&2; exit 2; }

{
  for rep in 1 2 3; do
    for w in 64 16; do
      "$bin/selfsup-bench" step --device vulkan --width "$w" --batch 128 --steps 20 --warmup 3 | sed "s/^/selfsup step$w /"
      "$python" bench/reference.py step --device cuda --width "$w" --batch 128 --steps 20 --warmup 3 | sed "s/^/pytorch step$w /"
      "$bin/selfsup-bench" forward --device vulkan --width "$w" --batch 256 --steps 20 --warmup 3 | sed "s/^/selfsup fwd$w /"
      "$python" bench/reference.py forward --device cuda --width "$w" --batch 256 --steps 20 --warmup 3 | sed "s/^/pytorch fwd$w /"
    done
  done
} | tee "$out/steps.txt"

# Time to kNN 85%: kNN on the test split after every epoch; the run is cut at the budget.
run="$out/pretrain_w64_b512"
rm -rf "$run"
start=$(date +%s)
timeout "$budget" "$bin/selfsup" pretrain --config configs/simclr_cifar10.toml \
  --data "$data/cifar10" --out "$run" --quiet \
  --set train.device=vulkan --set model.width=64 --set train.batch_size=512 \
  --set train.epochs=200 --set train.knn_every=1 --set data.workers=8 || true
"$python" - "$run/metrics.jsonl" "$start" <<'PY'
import json, os, sys, time
path, start = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
train_s, knn = 0.0, []
for r in rows:
    if r.get("type") != "epoch":
        continue
    train_s += r["seconds"]
    if "knn_top1" in r:
        knn.append({"epoch": r["epoch"], "knn_top1": r["knn_top1"], "train_seconds": round(train_s, 1)})
hit = next((k for k in knn if k["knn_top1"] >= 0.85), None)
print(json.dumps({"wall_seconds": int(time.time()) - start, "knn_by_epoch": knn,
                  "first_at_85": hit}))
PY
PY
"$python" - "$out/steps.txt" <<'PY'
import json, statistics, sys, collections
rates = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, key, js = line.split(" ", 2)
    rates[(side, key)].append(json.loads(js)["views_per_s"])
for key in sorted({k for _, k in rates}):
    s, p = statistics.median(rates[("selfsup", key)]), statistics.median(rates[("pytorch", key)])
    print(f"{key}: selfsup {s:.0f} views/s, PyTorch CUDA {p:.0f} views/s, ratio {s / p:.2f}x")
PY
