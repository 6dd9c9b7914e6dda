#!/usr/bin/env bash
# GPU benchmark: selfsup on burn's Vulkan backend or on LibTorch CUDA (SELFSUP_DEVICE=cuda) against
# PyTorch on CUDA, on the same machine in the same run. Results of its runs are in
# bench/RESULTS.md ("GPU"), with the date.
#
# On the build machine:  cargo build --release -p selfsup -p selfsup-bench \
#                            --features selfsup/gpu,selfsup-bench/gpu
#   or, for LibTorch CUDA: scripts/build_tch.sh (binaries in target/tch/release; on the GPU
#   machine set LD_LIBRARY_PATH to the torch/lib of its PyTorch, as scripts/build_tch.sh prints)
# On an NVIDIA machine (Vulkan driver, Python with torch+CUDA, torchvision, lightly), from the
# repository root with target/release/{selfsup,selfsup-bench} copied along:
#   bench/gpu.sh            # under 10 minutes in all; writes $GPU_OUT (bench/work/gpu) and a summary
#
# 1. SimCLR train step, ResNet-18 CIFAR width 64 and 16, 2x128 views: selfsup on Vulkan vs PyTorch
#    CUDA eager.  2. Backbone forward, batch 256.  3. End to end, one epoch of CIFAR-10: the
#    LightlySSL SimCLR loop on CUDA (width 64, batch 512, 8 loader workers) and `selfsup pretrain`
#    on Vulkan with the same recipe, which runs on with kNN accuracy after every epoch until the
#    time budget (GPU_PRETRAIN_SECONDS, default 240 s) ends it: the summary gives the first
#    epoch at kNN >= 85%, if any.
#
# Environment: SELFSUP_DEVICE (vulkan, default, or cuda), SELFSUP_BIN (default target/release),
# GPU_STEP_BATCH (images per step workload, default 256: 2x256 views), GPU_DRY_RUN=1 (everything
# on the CPU at toy sizes, selfsup on $SELFSUP_DEVICE, e.g. libtorch: checks the script's
# plumbing on a machine without a GPU), SELFSUP_DATA (default ../shared/data),
# GPU_OUT, GPU_REPS (default 3), GPU_PRETRAIN_SECONDS, GPU_DEADLINE (Unix time by which the
# script must end: the pretraining budget shrinks to fit), PYTHON. A workload that fails or runs
# past its time limit is reported as such and the script goes on with the next one.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
bin="${SELFSUP_BIN:-$root/target/release}"
out="${GPU_OUT:-$root/bench/work/gpu}"
data="${SELFSUP_DATA:-$root/../shared/data}"
reps="${GPU_REPS:-3}"
device="${SELFSUP_DEVICE:-vulkan}"
step_batch="${GPU_STEP_BATCH:-256}"
budget="${GPU_PRETRAIN_SECONDS:-240}"
torch_device=cuda limit=50000 workers=8 epochs=200 steps=20 knn_images=0 batch=512
if [ -n "${GPU_DRY_RUN:-}" ]; then
  torch_device=cpu limit=512 workers=1 epochs=2 steps=2 budget=90 step_batch=16 reps=1 knn_images=500 batch=64
fi
mkdir -p "$out"

for tool in "$bin/selfsup" "$bin/selfsup-bench"; do
  [ -x "$tool" ] || { echo "gpu.sh: $tool missing: build with --features selfsup/gpu,selfsup-bench/gpu" >&2; exit 2; }
done
[ -d "$data/cifar10/train" ] || { echo "gpu.sh: no CIFAR-10 image folder at $data/cifar10 (set SELFSUP_DATA)" >&2; exit 2; }
if [ -n "${GPU_DRY_RUN:-}" ]; then
  # 50 images per class and split, so that the per-epoch kNN of both sides is quick on a CPU.
  for split in train test; do
    for cls in "$data/cifar10/$split"/*/; do
      mkdir -p "$out/data/cifar10/$split/$(basename "$cls")"
      ls "$cls" | head -50 | while read -r f; do cp "$cls$f" "$out/data/cifar10/$split/$(basename "$cls")/"; done
    done
  done
  data="$out/data"
fi
[ -n "${GPU_DRY_RUN:-}" ] || "$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" \
  || { echo "gpu.sh: PyTorch cannot see a CUDA device" >&2; exit 2; }
# GPU utilisation, sampled every second while `$1` runs: its mean and max (nothing without nvidia-smi).
gpu_util() {
  command -v nvidia-smi >/dev/null || { "$@"; return; }
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 1000 > "$out/util.$$" &
  local sampler=$! status
  "$@"; status=$?
  kill "$sampler" 2>/dev/null
  awk '{s+=$1; if ($1>m) m=$1} END {if (NR) printf "gpu utilisation: mean %.0f %%, max %d %% over %d s\n", s/NR, m, NR}' "$out/util.$$" >&2
  rm -f "$out/util.$$"
  return $status
}
{
  date -u +"date: %Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
  "$python" -c "import torch, torchvision; print('torch:', torch.__version__, 'torchvision:', torchvision.__version__)"
  echo "cpus: $(nproc)"
  echo "selfsup device: $device"
} | tee "$out/machine.txt"

# One workload, one JSON line prefixed by "<side> <key>"; a failure prints a FAILED line instead.
run_one() {
  local side="$1" key="$2" limit="$3"
  shift 3
  local line
  if line=$(timeout "$limit" "$@" 2>>"$out/stderr.txt" | tail -n 1) && [ -n "$line" ]; then
    echo "$side $key $line"
  else
    echo "$side $key FAILED (exit or timeout after ${limit}s; see stderr.txt)"
  fi
}

# 1-2. Alternating sides, each repetition starting with the other one.
{
  for rep in $(seq 1 "$reps"); do
    for w in 64 16; do
      for kind in step forward; do
        batch=$step_batch
        [ "$kind" = forward ] && batch=256
        sides=(selfsup pytorch)
        [ $((rep % 2)) = 0 ] && sides=(pytorch selfsup)
        for side in "${sides[@]}"; do
          if [ "$side" = selfsup ]; then
            run_one selfsup "$kind$w" 90 "$bin/selfsup-bench" "$kind" --device "$device" \
              --width "$w" --batch "$batch" --steps "$steps" --warmup 3
          else
            run_one pytorch "$kind$w" 90 "$python" bench/reference.py "$kind" --device "$torch_device" \
              --width "$w" --batch "$batch" --steps "$steps" --warmup 3
          fi
        done
      done
    done
  done
} | tee "$out/steps.txt"

# 3a. The LightlySSL loop on CUDA over the 50,000 training images for the same time budget as
# selfsup's below, kNN after every epoch (time to accuracy); views/s per epoch.
gpu_util run_one pytorch pretrain64 $((budget + 120)) "$python" bench/reference.py pretrain \
  --device "$torch_device" --data "$data/cifar10" --limit "$limit" --width 64 --batch "$batch" \
  --workers "$workers" --seconds "$budget" --knn-images "$knn_images" | tee "$out/pretrain_reference.txt"

# 3b. selfsup pretrain on $device: kNN on the test split after every epoch, cut at the budget.
run="$out/pretrain_w64_b512"
rm -rf "$run"
start=$(date +%s)
if [ -n "${GPU_DEADLINE:-}" ] && [ $((GPU_DEADLINE - start - 15)) -lt "$budget" ]; then
  budget=$((GPU_DEADLINE - start - 15))
fi
gpu_util timeout "$budget" "$bin/selfsup" pretrain --config configs/simclr_cifar10.toml \
  --data "$data/cifar10" --out "$run" --quiet \
  --set train.device="$device" --set model.width=64 --set train.batch_size="$batch" \
  --set data.limit="$limit" --set train.epochs="$epochs" --set train.knn_every=1 \
  --set data.workers="$workers" 2>>"$out/stderr.txt"
echo "selfsup pretrain exit status $? (124: stopped at the ${budget}s budget)"
"$python" - "$run/metrics.jsonl" "$start" <<'PY' | tee "$out/pretrain.json"
import json, os, sys, time
path, start = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
train_s, knn = 0.0, []
for r in rows:
    if r.get("type") != "epoch":
        continue
    train_s += r["seconds"]
    knn.append({"epoch": r["epoch"], "knn_top1": r.get("knn_top1"), "epoch_seconds": r["seconds"],
                "train_seconds": round(train_s, 1)})
hit = next((k for k in knn if (k["knn_top1"] or 0) >= 0.85), None)
print(json.dumps({"wall_seconds": int(time.time()) - start, "epochs": knn, "first_at_85": hit}))
PY

"$python" - "$out/steps.txt" "$device" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys, collections
rates = collections.defaultdict(list)
for line in open(sys.argv[1]):
    side, key, rest = line.rstrip("\n").split(" ", 2)
    if rest.startswith("{"):
        rates[(side, key)].append(statistics.median(json.loads(rest)["samples"]))
for key in sorted({k for _, k in rates}):
    s, p = rates.get(("selfsup", key)), rates.get(("pytorch", key))
    if not s or not p:
        print(f"{key}: selfsup {s or 'FAILED'}, PyTorch {p or 'FAILED'}")
        continue
    s, p = statistics.median(s), statistics.median(p)
    print(f"{key}: selfsup {sys.argv[2]} {s:.0f} views/s, PyTorch {p:.0f} views/s, ratio {s / p:.3f}x")
PY

# End to end and time to accuracy: views/s over the epochs and the best kNN within the budget.
"$python" - "$out/pretrain_reference.txt" "$out/pretrain.json" "$device" "$budget" <<'PY' | tee -a "$out/summary.txt"
import json, statistics, sys
ref_line = open(sys.argv[1]).read().strip().split(" ", 2)[-1]
ours = json.load(open(sys.argv[2]))
device, budget = sys.argv[3], sys.argv[4]
ref = json.loads(ref_line) if ref_line.startswith("{") else {}
ref_rate = statistics.median(ref.get("samples") or [0])
ref_epochs = ref.get("epochs", [])
our_epochs = ours["epochs"]
our_rate = 0.0
if our_epochs:
    # views/s of the epochs' training, from their seconds (kNN excluded): 2 views per image.
    import pathlib
    metrics = pathlib.Path(sys.argv[2]).parent / "pretrain_w64_b512" / "metrics.jsonl"
    rates = [json.loads(l)["views_per_second"] for l in open(metrics) if '"type":"epoch"' in l]
    our_rate = statistics.median(rates) if rates else 0.0
best = lambda es: max((e.get("knn_top1") or 0 for e in es), default=0.0)
print(f"pretrain end to end: selfsup {device} {our_rate:.0f} views/s, PyTorch + LightlySSL {ref_rate:.0f} views/s, "
      f"ratio {our_rate / ref_rate if ref_rate else float('nan'):.3f}x")
print(f"time to accuracy ({budget} s of training): selfsup best kNN {best(our_epochs):.4f} after "
      f"{len(our_epochs)} epochs, PyTorch {best(ref_epochs):.4f} after {len(ref_epochs)} epochs")
PY
