"""The GPU benchmark script runs end to end on the CPU in its --tiny smoke mode (it is only run for real on a GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train_throughput.py"


@pytest.mark.slow
def test_train_throughput_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--device", "cpu", "--tiny", "--impls", "ours-eager,hf-sdpa,no-such-impl,ours:compile=off:chunk=64,"
            "ours:chunk=0,ours:compile=off:precision=fsdp-bf16,ours:compile=off:residual=bf16", "--output",
            str(tmp_path / "t.json")]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    runs = {r["impl"]: r for r in report["results"]}
    # A failing configuration is recorded and the run goes on.
    assert runs.pop("no-such-impl")["status"].startswith("error: ValueError: unknown implementation")
    assert runs.pop("ours:chunk=0")["status"].startswith("error: ValueError: unknown option 'chunk=0'")
    assert set(runs) == {"ours-eager", "hf-sdpa", "ours:compile=off:chunk=64", "ours:compile=off:precision=fsdp-bf16",
                         "ours:compile=off:residual=bf16"}
    assert all(r["status"] == "ok" for r in runs.values())
    # Every run is profiled: time by kind of work, the loss's share where the loss marks its range.
    for impl, run in runs.items():
        categories = run["profile"]["by_category_ms_per_step"]
        assert categories["matmul"] > 0 and categories["attention"] > 0, impl
        assert (run["profile"]["loss_ms_per_step"] is None) == (impl == "hf-sdpa")
    # A variant is the same model and batch: the same first loss as the eager path.
    assert runs["ours:compile=off:chunk=64"]["first_loss"] == runs["ours-eager"]["first_loss"]
    bf16 = runs["ours:compile=off:precision=fsdp-bf16"]["first_loss"]  # bf16 weights: close, not equal
    assert bf16 != runs["ours-eager"]["first_loss"] and abs(bf16 - runs["ours-eager"]["first_loss"]) < 0.05
    import torch.distributed as dist

    assert not dist.is_initialized()  # the FSDP variant's group of one is gone with the run
    assert all(r["tokens_per_s"] > 0 and r["finite"] for r in runs.values())
    # Every variant of ours is held to the fp32 reference, the FSDP bf16 one included (on a plain fp32 copy).
    for impl in ("ours-eager", "ours:compile=off:chunk=64", "ours:compile=off:precision=fsdp-bf16",
                 "ours:compile=off:residual=bf16"):
        assert runs[impl]["numerics"]["passed"], (impl, runs[impl]["numerics"])
    assert runs["ours-eager"]["numerics"]["grad_rel_l2"] < 1e-5  # fp32 against fp32: the same arithmetic
    assert 1e-4 < runs["ours:compile=off:precision=fsdp-bf16"]["numerics"]["grad_rel_l2"]  # bf16 weights show
    assert 1e-4 < runs["ours:compile=off:residual=bf16"]["numerics"]["grad_rel_l2"]  # so does bf16 under autocast
    assert "numerics" not in runs["hf-sdpa"]
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


@pytest.mark.slow
def test_loader_throughput_smoke(tmp_path, gemma2_tokenizer_json):
    """The host-side benchmark runs on real packed shards, and at FineWeb-2's scale the loader's cache decodes fewer
    row groups per step than the least-recently-used cache it replaced, in every phase."""
    spec = importlib.util.spec_from_file_location("loader_throughput", SCRIPT.with_name("loader_throughput.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = tmp_path / "loader.md"
    assert bench.main(["--shapes", "1024x8", "--steps", "3", "--repeat", "1", "--tokenizer", str(gemma2_tokenizer_json),
                       "--markdown", str(report)]) == 0
    rows = [line.split(" | ") for line in report.read_text().splitlines() if line.startswith("| ")]
    assert any(row[0] == "| 1024 x 8" for row in rows)
    decodes = {(row[0].strip("| "), row[2].split(":")[0]): float(row[3]) for row in rows if len(row) == 8
               and row[2].startswith(("before", "now"))}
    assert {phase for phase, _ in decodes} == {"pretrain", "mid_training", "decay"}
    for phase in ("pretrain", "mid_training", "decay"):
        assert decodes[phase, "now"] < decodes[phase, "before"] / 3


@pytest.mark.slow
def test_block_traffic_counts_what_bf16_activations_save(tmp_path):
    """Inductor's byte count of a compiled block: a bf16 residual stream moves fewer element-wise bytes than
    autocast's fp32 one, bf16 weights fewer kernels; the matmuls' inputs and outputs are the same either way. The loss
    chunk's kernel reads the logits and writes their gradient without an fp32 copy of it (~5 passes, not 8)."""
    spec = importlib.util.spec_from_file_location("block_traffic", SCRIPT.with_name("block_traffic.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (autocast, stream, bf16), loss_chunk = bench.measure("tiny", rows=8, seq_len=64)
    assert [r["precision"] for r in (autocast, stream, bf16)] == ["autocast", "autocast+bf16", "fsdp-bf16"]
    assert 0 < bf16["element-wise"] < 0.85 * autocast["element-wise"]
    assert 0 < stream["element-wise"] < 0.9 * autocast["element-wise"]
    assert bf16["kernels"] < autocast["kernels"] and bf16["attention (CPU sdpa)"] > 0
    assert bf16["step_element_wise"] == 4 * bf16["element-wise"]  # the tiny model's 4 layers
    assert loss_chunk[0] < 6.0
    table = bench.markdown([autocast, stream, bf16], loss_chunk, "tiny", 8, 64, 3.0)
    assert "| autocast |" in table and "| fsdp-bf16 |" in table and "Loss chunk kernel" in table


@pytest.mark.slow
def test_trainer_check_runs_the_trainer_and_compares_it_with_the_benchmark(tmp_path, shards_64):
    """bench/trainer_check.py runs `mmbert train` (tiny on the CPU here), reads its steady rate from metrics.jsonl
    and divides it by the benchmark's `ours` at the same model and shape; a failed training is reported, exit 1."""
    spec = importlib.util.spec_from_file_location("trainer_check", SCRIPT.with_name("trainer_check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps({"results": [
        {"impl": "hf-sdpa", "model": "tiny", "seq_len": 64, "batch": 4, "status": "ok", "tokens_per_s": 10.0},
        {"impl": "ours", "model": "tiny", "seq_len": 64, "batch": 4, "status": "ok", "tokens_per_s": 1000.0}]}))
    output = tmp_path / "check.json"
    assert check.main(["--shards", str(shards_64), "--tiny", "--bench", str(bench_json), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["status"] == "ok" and (report["model"], report["seq_len"], report["rows"]) == ("tiny", 64, 4)
    assert [line["step"] for line in report["logged"]] == [2, 4, 6, 8]  # 2,048 tokens in steps of 4 x 64
    assert all(line["loss"] > 0 and line["predicted"] > 0 for line in report["logged"])
    steady = sorted(line["tokens_per_second"] for line in report["logged"][1:])
    assert report["steady_tokens_per_s"] == round(steady[1])  # the median of the intervals after the first
    assert report["trainer_vs_bench"] == round(report["steady_tokens_per_s"] / 1000.0, 3)

    failed = tmp_path / "failed.json"
    assert check.main(["--shards", str(shards_64), "--tiny", "--output", str(failed), "model.vocab_size=100"]) == 1
    report = json.loads(failed.read_text())
    assert report["status"] == "exit status 2" and "vocabulary" in report["stderr_tail"]
    assert check.main(["--shards", str(shards_64), "--tiny", "optimizer.lr=-1"]) == 2  # refused before running
    assert check.main(["--shards", str(shards_64), "--tiny", "--output", str(failed), "--timeout-s", "0.5"]) == 1
    assert json.loads(failed.read_text())["status"] == "timed out"


def test_plan_measures_both_goals_before_the_variants():
    """A time budget cuts the end of the plan: issue 6's two goals (mmbert-base at 1024 against both baselines, at
    8192 against sdpa) come first, then the variants at 1024, then the other model, then the slow compilations."""
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    order = bench.plan(["mmbert-base", "mmbert-small"], [(1024, 32), (8192, 4)],
                       ["ours", "hf-sdpa", "hf-compiled", "ours:chunk=16384", "ours:compile=whole"])
    assert [(m, s[0], impl) for m, s, impl in order[:6]] == [
        ("mmbert-base", 1024, "ours"), ("mmbert-base", 1024, "hf-sdpa"), ("mmbert-base", 1024, "hf-compiled"),
        ("mmbert-base", 8192, "ours"), ("mmbert-base", 8192, "hf-sdpa"), ("mmbert-base", 1024, "ours:chunk=16384")]
    assert [m for m, _, _ in order[6:10]] == ["mmbert-small"] * 4
    assert [impl for _, _, impl in order[10:]] == ["ours:compile=whole"] + ["hf-compiled"] * 3
    assert len(order) == len(set(order)) == 2 * 2 * 3 + 2  # every (model, shape) x main impl once, variants once


def test_the_profile_counts_kernels_not_annotated_ranges():
    """On a GPU, `record_function` ranges (mmbert::loss, the optimizer's step) come back as CUDA events spanning their
    kernels and the gaps between them; busy time made of them would hide the host waits. PyTorch's own event type."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    spec = importlib.util.spec_from_file_location("step_profile", SCRIPT.with_name("step_profile.py"))
    profile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile)
    events = [FunctionEvent(0, "sm90_xmma_gemm", 0, 0, 10, device_type=DeviceType.CUDA),
              FunctionEvent(1, "triton_per_fused_0", 0, 30, 40, device_type=DeviceType.CUDA),
              FunctionEvent(2, "mmbert::loss", 0, 0, 40, device_type=DeviceType.CUDA, is_user_annotation=True),
              FunctionEvent(3, "aten::mm", 0, 0, 5, device_type=DeviceType.CPU)]
    assert profile.device_kernels(events) == [("sm90_xmma_gemm", 0, 10), ("triton_per_fused_0", 30, 40)]
