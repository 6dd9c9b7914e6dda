#!/usr/bin/env bash
# Run on the lent GPU machine (the `device` tool), from the repository root, carrying .gpu, .gl, .whl:
#   .gpu/{selfsup,selfsup-bench}.xz  binaries built here with --features selfsup/gpu,selfsup-bench/gpu, stripped, xz
#   .gpu/cifar10.tar.xz               tar of ../shared/data/cifar10/{train,test} (18.6 MB as .tar.xz)
#   .gl/*.deb                          Vulkan/GL loaders (device README), .whl/  lightly 1.6.0, hydra-core, omegaconf 2.3, antlr4 4.9.3
# It unpacks them, then runs bench/gpu.sh with its files copied into $OUT. BUDGET: seconds from start to end.
t0=$(date +%s)
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
ls /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
i=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f $i ] && export VK_DRIVER_FILES=$i __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export XDG_RUNTIME_DIR=/tmp
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
mkdir -p /tmp/bin /tmp/data
python3 - <<'PY' || exit 4
import lzma, shutil, tarfile
for n in ["selfsup", "selfsup-bench"]:
    with lzma.open(f".gpu/{n}.xz") as src, open(f"/tmp/bin/{n}", "wb") as dst:
        shutil.copyfileobj(src, dst)
tarfile.open(".gpu/cifar10.tar.xz", "r:xz").extractall("/tmp/data")
PY
chmod +x /tmp/bin/*
echo "setup took $(( $(date +%s) - t0 )) s"
python3 -c "import lightly.loss, lightly.transforms; print('lightly ok')"
timeout 90 /tmp/bin/selfsup-bench forward --device vulkan --width 16 --batch 8 --steps 2 --warmup 1; echo "vulkan smoke exit $?"
SELFSUP_BIN=/tmp/bin SELFSUP_DATA=/tmp/data GPU_OUT=/tmp/gpuout GPU_REPS=2 GPU_PRETRAIN_SECONDS=240 GPU_DEADLINE=$(( t0 + ${BUDGET:-540} )) bash bench/gpu.sh
cp /tmp/gpuout/*.txt /tmp/gpuout/*.json /tmp/gpuout/pretrain_w64_b512/metrics.jsonl $OUT/ 2>/dev/null; ls -la $OUT
