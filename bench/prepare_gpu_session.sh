#!/usr/bin/env bash
# What bench/gpu_session.sh needs on the GPU machine (no network there), into .gpu/ (git-ignored; name ".gpu" in the
# device run's carry list):
#   .gpu/wheels/       liger-kernel (pure Python + Triton: it uses the machine's own torch and triton, hence --no-deps)
#                      and what the trainer imports that the GPU image lacks (langcodes, iso639-lang)
#   .gpu/shards-1024/  the shipped WARCs → corpus → Gemma 2 tokens packed at 1024 tokens, for bench/trainer_check.py
#
#   bash bench/prepare_gpu_session.sh                 # after scripts/setup_venv.sh
#   bash bench/prepare_gpu_session.sh --transformers  # also transformers 5.24 and its dependencies, for Python 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
MMBERT="${MMBERT:-.venv/bin/mmbert}"
rm -rf .gpu/wheels .gpu/site  # nothing stale travels: gpu_session.sh installs the wheels into .gpu/site there
mkdir -p .gpu/wheels
"$PIP" download -q -d .gpu/wheels --no-deps --only-binary=:all: liger-kernel
GPU_PYTHON=(--only-binary=:all: --python-version "${PYVER:-3.12}"  # the GPU image's python
            --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
"$PIP" download -q -d .gpu/wheels "${GPU_PYTHON[@]}" "langcodes>=3.4" "iso639-lang>=2.2"
if [[ "${1:-}" == "--transformers" ]]; then
    "$PIP" download -q -d .gpu/wheels "${GPU_PYTHON[@]}" transformers==5.24.0
fi
if [[ ! -f .gpu/shards-1024/_SUCCESS ]]; then
    "$MMBERT" corpus build --input data/warc/*.warc.gz --output .gpu/corpus --overwrite --num-workers 2
    "$MMBERT" tokenizer pack --corpus .gpu/corpus --tokenizer gemma2 --seq-len 1024 --output .gpu/shards-1024 \
        --num-workers 2
    rm -rf .gpu/corpus
fi
du -sh .gpu/wheels .gpu/shards-1024
ls .gpu/wheels
