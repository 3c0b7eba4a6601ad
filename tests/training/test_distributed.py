"""Two gloo processes under torchrun (DDP, and FSDP2) train exactly what one process trains with the same global
batch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.training.run_helpers import TINY_RECIPE, read_metrics, run_mmbert

FINAL = "checkpoints/step-00000005/model.safetensors"


def overrides(shards_64, shards_128) -> list[str]:
    """Three short phases (2 + 2 + 1 steps of 8 rows), the last at 128 tokens per row from its own shards; micro-
    batches of 2 rows, so each of two processes accumulates two micro-batches and a single process four.

    Dropout is on (seeded per micro-batch by its place in the global batch, so the processes draw what one would).
    Adam's eps is 1e-6, not 1e-8: a rare token's gradient can be ~1e-8, where the update g / (|g| + eps) turns a
    rounding difference of the summation order into a visible weight difference (6e-5 on one element at 1e-8)."""
    return ["--no-progress", f"data.shards={shards_64}", "phases.0.budget=1K", "phases.1.budget=1K",
            "phases.2.budget=1K", "phases.2.seq_len=128", f"phases.2.shards={shards_128}", "batch.micro_size=2",
            "schedule.warmup_tokens=512", "schedule.decay_tokens=1K", "training.checkpoint_every=100",
            "optimizer.eps=1e-6", "model.attention_out_dropout=0.1"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, shards_64, shards_128):
    run = tmp_path_factory.mktemp("single") / "run"
    done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), *overrides(shards_64, shards_128))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = read_metrics(run)
    assert [m["phase"] for m in metrics] == ["pretrain"] * 2 + ["mid_training"] * 2 + ["decay"]
    assert [m["seq_len"] for m in metrics] == [64, 64, 64, 64, 128]
    return run


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process(single_process, shards_64, shards_128, tmp_path, mode):
    run = tmp_path / mode
    two = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), *overrides(shards_64, shards_128),
                     f"training.fsdp={str(mode == 'fsdp').lower()}", torchrun=2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("done: step 5") == 1  # one summary line, from rank 0

    for a, b in zip(read_metrics(single_process), read_metrics(run), strict=True):
        assert (a["step"], a["lr"], a["predicted"], a["tokens_per_language"]) == \
               (b["step"], b["lr"], b["predicted"], b["tokens_per_language"])
        # The same sums in a different order: equal up to float rounding, not bit for bit.
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-5)
    weights_one, weights_two = load_file(single_process / FINAL), load_file(run / FINAL)
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():  # (atol 2e-5: one of 8.2M embedding weights reaches 1.2e-5 under FSDP,
        # a rare token's, where Adam's g / (|g| + eps) magnifies the summation order's rounding)
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-4, atol=2e-5)


def test_fsdp_bf16_weights_on_one_process_train_like_fp32(single_process, shards_64, shards_128, tmp_path):
    """FSDP2's mixed precision (bf16 weights and activations, fp32 master weights, gradients reduced in fp32) on a
    group of one process: the losses of the fp32 run within bf16 rounding, and a checkpoint of full fp32 tensors."""
    run = tmp_path / "fsdp-bf16"
    done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(run), *overrides(shards_64, shards_128),
                      "training.fsdp=true", "training.precision=bf16")
    assert done.returncode == 0, done.stderr[-3000:]
    for a, b in zip(read_metrics(single_process), read_metrics(run), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3)
        assert b["loss"] != a["loss"]  # it really ran in bf16
    weights_fp32, weights_bf16 = load_file(single_process / FINAL), load_file(run / FINAL)
    assert weights_bf16.keys() == weights_fp32.keys()
    assert all(tensor.dtype == torch.float32 for tensor in weights_bf16.values())


def test_a_bf16_residual_stream_trains_like_fp32(single_process, shards_64, shards_128, tmp_path):
    """`training.precision: bf16-residual`: bf16 autocast with the residual stream in bf16 between blocks (the
    benchmark's `ours:residual=bf16`) follows the fp32 run's losses within bf16 rounding, and saves fp32 weights."""
    runs = {}
    for precision in ("bf16-residual", "bf16"):
        runs[precision] = tmp_path / precision
        done = run_mmbert("train", "--config", str(TINY_RECIPE), "--output", str(runs[precision]),
                          *overrides(shards_64, shards_128), f"training.precision={precision}")
        assert done.returncode == 0, done.stderr[-3000:]
    run = runs["bf16-residual"]
    for a, b, autocast in zip(read_metrics(single_process), read_metrics(run), read_metrics(runs["bf16"]), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=5e-3)
        assert b["loss"] != a["loss"] and b["loss"] != autocast["loss"]  # bf16, and not only inside the matmuls
    assert all(tensor.dtype == torch.float32 for tensor in load_file(run / FINAL).values())
