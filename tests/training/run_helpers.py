"""Helpers of the training tests: run `mmbert` as a subprocess (alone or under torchrun) and read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO_ROOT / "recipes" / "tiny-cpu.yaml"


def mmbert_command(*args: str, torchrun: int = 0) -> list[str]:
    """`python -m mmbert ARGS`, or under `torchrun --nproc-per-node N` (gloo on CPU)."""
    if torchrun:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(torchrun),
                "--standalone", "-m", "mmbert", *args]
    return [sys.executable, "-m", "mmbert", *args]


def environment() -> dict:
    """One thread per process: the same arithmetic in every run (bit-for-bit comparisons) and fair on shared CPUs."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def run_mmbert(*args: str, torchrun: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(mmbert_command(*args, torchrun=torchrun), cwd=REPO_ROOT, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
