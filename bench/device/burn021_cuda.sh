#!/usr/bin/env bash
# Run on the lent GPU machine, carrying .gpu2 (b21.xz: bench/burn021_cuda built here with
# CUDARC_CUDA_VERSION=13000, xz) and .whl: burn 0.21.0 CUDA vs PyTorch CUDA, step and forward, one repetition.
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.gpu2/b21.xz'), open('/tmp/b21','wb'))"; chmod +x /tmp/b21
n=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | grep -v stub | head -3); echo "nvrtc: $n"
for f in $n; do LD_LIBRARY_PATH=$(dirname $f):$LD_LIBRARY_PATH; done
export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/usr/local/nvidia/lib64:/usr/local/cuda/lib64
echo "setup $(( $(date +%s) - t0 )) s"
for w in 64 16; do for k in step forward; do
  b=128; [ $k = forward ] && b=256
  echo "burn021 $k$w $(timeout 75 /tmp/b21 $k --width $w --batch $b --steps 20 --warmup 3 2>/tmp/b21.err | tail -1)"; tail -c 600 /tmp/b21.err
  echo "pytorch $k$w $(timeout 40 python3 bench/reference.py $k --device cuda --width $w --batch $b --steps 20 --warmup 3 | tail -1)"
  echo "t=$(( $(date +%s) - t0 ))"
done; done
