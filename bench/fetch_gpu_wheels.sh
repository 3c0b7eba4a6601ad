#!/usr/bin/env bash
# Put the wheels bench/gpu_session.sh installs offline on the GPU machine (no network there) into .whl/ (git-ignored;
# name ".whl" in the device run's carry list).
#
#   bash bench/fetch_gpu_wheels.sh                 # liger-kernel only (the image already has torch, transformers)
#   bash bench/fetch_gpu_wheels.sh --transformers  # also transformers 5.24 and its dependencies, for Python 3.12
#
# liger-kernel is pure Python + Triton and uses the GPU machine's own torch and triton, hence --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
mkdir -p .whl
"$PIP" download -q -d .whl --no-deps --only-binary=:all: liger-kernel
if [[ "${1:-}" == "--transformers" ]]; then
    "$PIP" download -q -d .whl --only-binary=:all: --python-version "${PYVER:-3.12}" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        transformers==5.24.0
fi
du -sh .whl
ls .whl
