#!/usr/bin/env bash
# selfsup vs PyTorch/LightlySSL, side by side in one run: writes bench/RESULTS.md.
#
#   bench/run.sh [--reps N] [--quick] [--only step16,aug32,...]   (--only replaces just those
#   sections of RESULTS.md, each stamped with its date and command)
#
# Builds selfsup (release), sets up the Python reference (PyTorch + torchvision + LightlySSL from
# PyPI) in bench/.venv, or reuses $BENCH_VENV / /work/venv when it already has them, then runs
# bench/bench.py. Data: $SELFSUP_DATA, else the nearest shared/data above the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"

data="${SELFSUP_DATA:-}"
if [ -z "$data" ]; then
  d="$root"
  while [ "$d" != "/" ]; do
    if [ -d "$d/shared/data/cifar10" ]; then data="$d/shared/data"; break; fi
    d="$(dirname "$d")"
  done
fi
if [ -z "$data" ] || [ ! -d "$data/cifar10/train" ]; then
  echo "bench/run.sh: no CIFAR-10 image folder found: set SELFSUP_DATA to the directory holding cifar10/" >&2
  exit 2
fi

has_reference() { "$1" -c "import torch, torchvision, lightly" 2>/dev/null; }
python=""
for venv in "${BENCH_VENV:-}" /work/venv "$here/.venv"; do
  if [ -n "$venv" ] && [ -x "$venv/bin/python" ] && has_reference "$venv/bin/python"; then
    python="$venv/bin/python"; break
  fi
done
if [ -z "$python" ]; then
  echo "bench/run.sh: creating $here/.venv with torch, torchvision, lightly (CPU wheels)" >&2
  python3 -m venv "$here/.venv"
  # CPU wheels where PyTorch's index is reachable, else PyPI's default (CUDA) wheels.
  "$here/.venv/bin/pip" install --quiet --index-url https://download.pytorch.org/whl/cpu torch torchvision \
    || "$here/.venv/bin/pip" install --quiet torch torchvision
  "$here/.venv/bin/pip" install --quiet lightly scikit-image
  python="$here/.venv/bin/python"
fi

cargo build --release -p selfsup -p selfsup-bench
exec "$python" "$here/bench.py" \
  --selfsup-bench "$root/target/release/selfsup-bench" \
  --selfsup "$root/target/release/selfsup" \
  --python "$python" --data "$data" \
  --command "bench/run.sh $*" "$@"
