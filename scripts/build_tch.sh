#!/usr/bin/env bash
# The LibTorch (CUDA-capable) build of selfsup, from PyPI's torch wheel, with no download from
# pytorch.org:
#
#   scripts/build_tch.sh [--test]
#
# 1. A venv ($TORCH_VENV, default ~/torch211, outside the repository) gets torch==$TORCH_VERSION
#    (default 2.11.0: the PyTorch of the lent GPU machines, /opt/torch/.venv there) from PyPI,
#    with its CUDA libraries.
# 2. torch-sys builds against that wheel's libtorch (LIBTORCH_USE_PYTORCH=1; tch 0.22 expects
#    2.9.0, hence LIBTORCH_BYPASS_VERSION_CHECK=1), into target/tch so the default build's
#    artefacts stay as they are: target/tch/release/{selfsup,selfsup-bench}, stripped copies in
#    target/tch/dist/.
#    Features tch and nccl (CUDA tensors reduced by NCCL across GPU processes; see
#    docs/distributed.md and scripts/nccl_check.sh).
# 3. --test: the LibTorch-vs-flex check (crates/selfsup/tests/libtorch.rs: one SimCLR step,
#    ResNet-18 and ViT, loss and updated weights within 1e-4 relative) on this machine's CPU.
#
# To run the binaries elsewhere: LD_LIBRARY_PATH=<that machine's site-packages>/torch/lib (on the
# lent GPU machines: /opt/torch/.venv/lib/python3*/site-packages/torch/lib), then
# `selfsup pretrain --set train.device=cuda ...` or `SELFSUP_DEVICE=cuda bench/gpu.sh`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="${TORCH_VENV:-$HOME/torch211}"
version="${TORCH_VERSION:-2.11.0}"
if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "torch==$version"
fi
torch_lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/tch}"
# NCCL is loaded at run time (no CUDA needed here); MPI for several processes is linked, so it
# is opt-in: TCH_EXTRA_FEATURES=selfsup/mpi (needs libopenmpi-dev here and OpenMPI where it runs).
cargo build --release -p selfsup -p selfsup-bench \
  --features "selfsup/tch,selfsup/nccl,selfsup-bench/tch${TCH_EXTRA_FEATURES:+,$TCH_EXTRA_FEATURES}"
mkdir -p "$CARGO_TARGET_DIR/dist"
for b in selfsup selfsup-bench; do
  strip -o "$CARGO_TARGET_DIR/dist/$b" "$CARGO_TARGET_DIR/release/$b"
done
ls -la "$CARGO_TARGET_DIR/dist"
if [ "${1:-}" = "--test" ]; then
  # NCCL through cudarc, the calls that need no GPU, against the wheel's own libnccl.so.2
  # (cudarc opens `libnccl.so`: a link to it on the library path).
  nccl_lib="$("$venv/bin/python" -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib"))')"
  mkdir -p "$CARGO_TARGET_DIR/nccl-lib"
  ln -sf "$nccl_lib/libnccl.so.2" "$CARGO_TARGET_DIR/nccl-lib/libnccl.so"
  LD_LIBRARY_PATH="$CARGO_TARGET_DIR/nccl-lib:$LD_LIBRARY_PATH" \
    cargo test --release -p selfsup-dist --features nccl -- --nocapture
  SELFSUP_DATA="${SELFSUP_DATA:-$root/../shared/data}" \
    cargo test --release -p selfsup --features tch --test libtorch
  # Every subcommand of the binary on libtorch's device (CPU here, `cuda` where a GPU is), end
  # to end on a few images.
  dev="${SELFSUP_TCH_DEVICE:-libtorch}"
  cifar="${SELFSUP_DATA:-$root/../shared/data}/cifar10"
  smoke="$CARGO_TARGET_DIR/smoke"
  bin="$CARGO_TARGET_DIR/dist/selfsup"
  rm -rf "$smoke"
  # A small labelled folder (links into CIFAR-10): 40 train and 10 test images per class.
  for split in train:40 test:10; do
    for class_dir in "$cifar/${split%%:*}"/*/; do
      dest="$smoke/data/${split%%:*}/$(basename "$class_dir")"
      mkdir -p "$dest"
      files=("$class_dir"*.jpg)
      ln -s "${files[@]:0:${split##*:}}" "$dest/"
    done
  done
  "$bin" pretrain --quiet --data "$smoke/data" --out "$smoke/run" --set train.device="$dev" \
    --set model.width=8 --set train.batch_size=64 --set train.epochs=1 --set data.workers=1
  ckpt="$smoke/run/checkpoints/epoch_0001.safetensors"
  "$bin" eval knn --checkpoint "$ckpt" --device "$dev"
  "$bin" eval linear --checkpoint "$ckpt" --device "$dev" --epochs 5
  "$bin" embed --checkpoint "$ckpt" --device "$dev" --out "$smoke/embeddings.safetensors"
  "$bin" finetune --checkpoint "$ckpt" --device "$dev" --label-fraction 0.5 --steps 5 --quiet
  "$bin" prove --checkpoint "$ckpt" --device "$dev" --fractions 0.5 --steps 5 --linear-epochs 5 \
    --seeds 1 --out "$smoke/prove" --quiet
  echo "libtorch smoke on device $dev: pretrain, eval knn, eval linear, embed, finetune, prove ran"
  rm -rf "$smoke"
fi
echo "libtorch: $torch_lib (set LD_LIBRARY_PATH to a torch/lib of the same version where the binaries run)"
