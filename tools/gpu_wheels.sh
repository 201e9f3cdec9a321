#!/usr/bin/env bash
# Download (here, with internet) the wheels the GPU machine's image lacks, for its Python 3.12, in two
# sets that each fit one device run's 64 MiB carry (the repo itself is < 1 MiB):
#   .gpu/wheels-a  av, open_clip_torch, ftfy, wcwidth, grpcio, grpcio-health-checking, grpcio-reflection,
#                  protobuf (the generated code needs protobuf >= 7.35.1 and grpcio >= 1.85.1)   ~45 MB
#   .gpu/wheels-b  duckdb, faiss-cpu                                                              ~44 MB
# Versions are the ones this project is tested with (the shared venv). .gpu/ is git-ignored.
# Then, on a lent machine (see tools/gpu_check.sh):
#   run 1: carry .gpu/wheels-a, command `bash tools/gpu_check.sh install .gpu/wheels-a`
#   run 2 (while the machine is still warm): carry .gpu/wheels-b,
#          command `bash tools/gpu_check.sh install .gpu/wheels-b && bash tools/gpu_check.sh`
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64
  --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64)
get() {  # get DIR NAME==VERSION...
  local dir=$1; shift
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$dir" "$@"
}
get .gpu/wheels-a av==18.1.0 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 grpcio==1.85.3 \
  grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 protobuf==7.36.2
get .gpu/wheels-b duckdb==2.0.1 faiss-cpu==1.15.1
du -sh .gpu/wheels-a .gpu/wheels-b
