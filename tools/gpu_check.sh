#!/usr/bin/env bash
# GPU checks for a lent CUDA machine (see README, Development). Run from the repo root with the
# wheels the machine lacks in .gpu/wheels (open_clip_torch, av, ftfy, wcwidth for its Python;
# its image already has torch, timm, numpy and opencv-python-headless):
#   bash tools/gpu_check.sh
# It probes the machine, runs the `gpu` tests and the ingest benchmark on CUDA and on CPU.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 --version
  python3 -c "import torch, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'timm', timm.__version__)"
  ldconfig -p | grep -E "libcublas\.so\.12|libcudart\.so\.12" || echo "no CUDA 12 runtime libraries (faiss-gpu wheels need them)"
} 2>&1 | tee "$OUT/probe.txt"
python3 -m pip install --quiet --no-deps --no-index --target /tmp/site .gpu/wheels/*.whl 2>&1 | tail -3
export PYTHONPATH=/tmp/site:$PWD/server:$PWD/clients:$PWD/plugins
python3 -m pytest -m gpu tests/test_gpu.py -q -s -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt"
for dev in cuda cpu; do
  for prec in fp32 bf16; do
    [ "$dev" = cpu ] && [ "$prec" = bf16 ] && continue
    echo "== bench/ingest.py --device $dev --precision $prec" | tee -a "$OUT/bench_ingest.txt"
    timeout 150 python3 bench/ingest.py --device "$dev" --precision "$prec" --videos 4 --batch-size 64 2>&1 | tail -15 | tee -a "$OUT/bench_ingest.txt"
  done
done

# ---- search backend (issue 9, item 4: resident matrix search and scoring) -------------------------------
# Needs faiss (the CPU FAISS baseline): put a faiss-cpu wheel for the machine's Python in .gpu/wheels
# (`pip download faiss-cpu --only-binary :all: --no-deps -d .gpu/wheels`). ~2-3 min on an H200.
{
  echo "== tests/test_matrix_gpu.py -m gpu (resident matrix on CUDA vs FAISS Flat and scoring_math)"
  timeout 180 python3 -m pytest -m gpu tests/test_matrix_gpu.py -q -s -p no:cacheprovider 2>&1 | tail -8
  echo "== bench/search_gpu.py --device cuda (top-10 p50 at 1M and 10M frames; EF over 1M videos)"
  timeout 330 python3 bench/search_gpu.py --device cuda --frames 1000000 10000000 --videos 1000000 \
    --cpu-sample 5000 --faiss-queries 5 --queries 50 2>&1 | tail -8
  echo "== bench/search_gpu.py --device cpu (same rows, the CPU torch backend, reduced)"
  timeout 120 python3 bench/search_gpu.py --device cpu --frames 1000000 --videos 20000 --faiss-queries 5 2>&1 | tail -4
} 2>&1 | tee "$OUT/search_backend.txt"
