#!/usr/bin/env bash
# NCCL end to end on one GPU (issue 25; the lent machines have one): the SimCLR steps of
# crates/selfsup/tests/distributed.rs (width 8, global batch 32, SyncBatchNorm on every layer,
# deterministic, 3 steps) on train.device=cuda, once with every collective forced through a
# one-process NCCL communicator (SELFSUP_COLLECTIVES=always: SyncBatchNorm's all-reduces, the
# global-batch gather, the flat gradient all-reduce) and once without; losses and weights must
# agree within 1e-5 (scripts/compare_runs.py). NCCL_DEBUG=INFO shows the communicator NCCL made.
#
#   scripts/nccl_check.sh                          # on the GPU machine, binaries of scripts/build_tch.sh
#   NCCL_CHECK_DEVICE=libtorch scripts/nccl_check.sh   # LibTorch's CPU: the same forced collectives
#                                                      # through the host group, no GPU needed
#
# Environment: SELFSUP_BIN (default target/tch/dist), NCCL_CHECK_DATA (an image folder with
# train/; default: 96 CIFAR-10 JPEGs linked from $SELFSUP_DATA/cifar10), NCCL_CHECK_OUT
# (default bench/work/nccl-check), PYTHON (with numpy; on cuda, the PyTorch whose torch/lib and
# nvidia/nccl the binaries load: /opt/torch/.venv/bin/python3 on the lent machines).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${SELFSUP_BIN:-$root/target/tch/dist}/selfsup"
device="${NCCL_CHECK_DEVICE:-cuda}"
out="${NCCL_CHECK_OUT:-$root/bench/work/nccl-check}"
python="${PYTHON:-python3}"
[ -x "$bin" ] || { echo "nccl_check.sh: $bin missing: run scripts/build_tch.sh" >&2; exit 2; }
rm -rf "$out/runs"
mkdir -p "$out/runs"
data="${NCCL_CHECK_DATA:-}"
if [ -z "$data" ]; then
  cifar="${SELFSUP_DATA:-$root/../shared/data}/cifar10"
  data="$out/data"
  if [ ! -d "$data/train" ]; then
    for cls in "$cifar/train"/*/; do
      mkdir -p "$data/train/$(basename "$cls")"
      files=("$cls"*.jpg)
      cp "${files[@]:0:10}" "$data/train/$(basename "$cls")/"
    done
  fi
fi
if [ "$device" = cuda ]; then
  # The binaries link the libtorch of the machine's PyTorch (the version scripts/build_tch.sh
  # built against).
  torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cudarc opens `libnccl.so`; PyTorch's wheels ship nvidia/nccl/lib/libnccl.so.2 only.
  nccl_lib="$("$python" -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib"))' 2>/dev/null || true)"
  if [ -n "$nccl_lib" ] && [ -e "$nccl_lib/libnccl.so.2" ]; then
    mkdir -p "$out/nccl-lib"
    ln -sf "$nccl_lib/libnccl.so.2" "$out/nccl-lib/libnccl.so"
    export LD_LIBRARY_PATH="$out/nccl-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
common=(pretrain --quiet --data "$data" --set train.device="$device" --set model.width=8
  --set train.batch_size=32 --set train.epochs=1 --set data.limit=96 --set train.deterministic=true
  --set train.sync_batch_norm=all --set train.knn_every=0 --set optim.lr=0.002 --set data.workers=1
  --set data.cache_dir="$out/cache")
"$bin" "${common[@]}" --out "$out/runs/plain"
SELFSUP_COLLECTIVES=always NCCL_DEBUG="${NCCL_DEBUG:-INFO}" "$bin" "${common[@]}" --out "$out/runs/collectives" \
  2> >(tee "$out/collectives.stderr" >&2)
if [ "$device" = cuda ]; then
  grep -q "NCCL INFO" "$out/collectives.stderr" \
    || { echo "nccl_check.sh: no NCCL log line: the collectives did not go through NCCL" >&2; exit 1; }
fi
"$python" scripts/compare_runs.py "$out/runs/collectives" "$out/runs/plain" --tol 1e-5
echo "nccl_check.sh: OK on $device"
