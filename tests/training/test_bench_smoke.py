"""The GPU benchmark script runs end to end on the CPU in its --tiny smoke mode (it is only run for real on a GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


def test_train_throughput_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--device", "cpu", "--tiny", "--impls", "ours-eager,hf-sdpa,no-such-impl",
            "--output", str(tmp_path / "t.json")]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    runs = {r["impl"]: r for r in report["results"]}
    # A failing configuration is recorded and the run goes on.
    assert runs.pop("no-such-impl")["status"].startswith("error: ValueError: unknown implementation")
    assert set(runs) == {"ours-eager", "hf-sdpa"} and all(r["status"] == "ok" for r in runs.values())
    assert all(r["tokens_per_s"] > 0 and r["finite"] for r in runs.values())
    assert runs["ours-eager"]["numerics"]["passed"]
    # Same shapes, same useful FLOPs for both implementations; the formula's attention term counts real pairs.
    assert runs["ours-eager"]["model_flops_per_step"] == runs["hf-sdpa"]["model_flops_per_step"]
    assert "| tiny | 128x2 | ours-eager |" in (tmp_path / "t.md").read_text()


def test_attention_pairs_count_document_and_window():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import torch

    from training.attention import allowed

    document_ids = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, -1]])
    global_pairs, local_pairs = bench.attention_pairs(document_ids, window_half=2)
    assert global_pairs == int(allowed(document_ids, None).sum())
    assert local_pairs == int(allowed(document_ids, 2).sum())
