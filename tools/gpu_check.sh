#!/usr/bin/env bash
# The device check: ONE command runs the `gpu` tests and the GPU benchmark rows on a lent CUDA machine
# (an H200 whose image has torch 2.11+CUDA 13, timm, numpy, opencv, grpcio, protobuf, but no av, duckdb,
# faiss-cpu or open_clip_torch). Budget: <= 8 minutes, so a rerun fits the session's 15.
#
# Wheels (~86 MB, over one run's 64 MiB carry) travel in two runs on the same warm machine:
#   here:   bash tools/gpu_wheels.sh                    -> .gpu/wheels-a (~44 MB), .gpu/wheels-b (~42 MB)
#   run 1:  carry [".gpu/wheels-a"]   command: bash tools/gpu_check.sh install .gpu/wheels-a
#   run 2:  carry [".gpu/wheels-b"]   command: bash tools/gpu_check.sh install .gpu/wheels-b && bash tools/gpu_check.sh
#           (within the machine's 30 s warm window after run 1; /tmp/site survives between runs on it)
# Results land in $OUT (the device tool brings them back): probe.txt, gpu_tests.txt, bench_encoder.txt,
# and search_backend.txt. Each step has its own timeout; a failing step does not stop the next.
# `bash tools/gpu_check.sh encoder` or `... search` runs one section (the two together can pass one run's
# 600 s limit in the worst case: encoder <= 280 s of timeouts, search <= 630 s).
set -uo pipefail
SITE=/tmp/site
SECTION=${1:-all}  # all | encoder | search: run one section per command if both do not fit one run's 10 minutes
if [ "$SECTION" = install ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${2:?wheel folder}"/*.whl
  exit $?
fi
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=$SITE:$PWD/server:$PWD/clients:$PWD/plugins PYTHONUNBUFFERED=1
START=$SECONDS
step() { echo "== $1 ($((SECONDS - START)) s in)"; }

# ---- probe ---------------------------------------------------------------------------------------
{
  step probe
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
  python3 -c "import sys, torch, timm, grpc, google.protobuf as pb; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'timm', timm.__version__, 'grpc', grpc.__version__, 'protobuf', pb.__version__)"
  python3 -c "import av, duckdb, faiss, open_clip; print('av', av.__version__, 'duckdb', duckdb.__version__, 'faiss', faiss.__version__, 'open_clip', open_clip.__version__)" \
    || echo "MISSING carried packages: run the two install runs first (see the top of this file)"
} 2>&1 | tee "$OUT/probe.txt"

# ---- encoder (issue 9: the ingest path; owner: encoder) --------------------------------------------
# The gpu tests (model CUDA vs CPU, batching encoder batched vs alone at fp32/bf16/fp16, torch.compile)
# and the two ingest rows: 8 gRPC clients end to end vs model alone at its best batch (>= 0.9x), and
# batched encoder vs one video per call (>= 5x), at bf16 (the serving precision). ~3-4 min on an H200.
if [ "$SECTION" = all ] || [ "$SECTION" = encoder ]; then
{
  step "gpu tests"
  timeout 170 python3 -m pytest -m gpu tests/test_gpu.py -q -s -p no:cacheprovider
} 2>&1 | tee "$OUT/gpu_tests.txt"
{
  step "bench/gpu.py cuda bf16"
  timeout 110 python3 bench/gpu.py --device cuda --precision bf16 --videos-per-client 48 --decode-workers 15 --repeats 1
  step "encoder done"
} 2>&1 | tee "$OUT/bench_encoder.txt"
fi

# ---- search backend (issue 9, item 4: resident matrix search and scoring) -------------------------------
# Needs faiss (the CPU FAISS baseline): it travels in .gpu/wheels-b (tools/gpu_wheels.sh). ~2-3 min on an H200.
if [ "$SECTION" = all ] || [ "$SECTION" = search ]; then
{
  echo "== tests/test_matrix_gpu.py -m gpu (resident matrix on CUDA vs FAISS Flat and scoring_math)"
  timeout 180 python3 -m pytest -m gpu tests/test_matrix_gpu.py -q -s -p no:cacheprovider 2>&1 | tail -8
  echo "== bench/search_gpu.py --device cuda (top-10 p50 at 1M and 10M frames; EF over 1M videos)"
  timeout 330 python3 bench/search_gpu.py --device cuda --frames 1000000 10000000 --videos 1000000 \
    --cpu-sample 5000 --faiss-queries 5 --queries 50 2>&1 | tail -8
  echo "== bench/search_gpu.py --device cpu (same rows, the CPU torch backend, reduced)"
  timeout 120 python3 bench/search_gpu.py --device cpu --frames 1000000 --videos 20000 --faiss-queries 5 2>&1 | tail -4
} 2>&1 | tee "$OUT/search_backend.txt"
fi

step "all done" | tee -a "$OUT/probe.txt"
