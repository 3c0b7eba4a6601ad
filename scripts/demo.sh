#!/usr/bin/env bash
# Set up .venv (see setup_venv.sh) and run the whole chain on the real data shipped in data/:
# corpus build → stats and sampling plot → Gemma 2 tokenizer → pack → three-phase tiny training on CPU → export →
# per-language evaluation → out/demo/report.md. A second run reuses finished stages (pass --force to redo them).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
exec .venv/bin/mmbert run recipes/demo.yaml "$@"
