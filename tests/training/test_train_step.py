"""The training step (training/step.py): it never reads a value back from the device (on the CPU its operators are
watched; on a GPU, CUDA's sync debug mode), its gather capacity is static, and under `training.compile: blocks` it
trains like the eager step. Imports stay light (no pyarrow, no language registry): the GPU session runs this file."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from training.batches import random_packed_batch
from training.compilation import compile_model
from training.distributed import Distributed
from training.loss import IGNORE_INDEX, prediction_capacity
from training.masking import mask_batch
from training.model import MaskedLM, ModelConfig
from training.step import prediction_rows, to_device, train_step

# Ops that copy a device value to the host (`.item()`, `float()`, `bool()`, nonzero, masked_select), and indexing
# with a boolean mask (its output size is data-dependent: a host sync on a GPU).
READ_BACKS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::equal", "aten::masked_select"}


class ReadBacks(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in READ_BACKS:
            self.seen.append(name)
        elif name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ()):
            self.seen.append(f"{name} with a boolean mask")
        return func(*args, **(kwargs or {}))


def _setup(seed: int = 0, rows: int = 4, seq_len: int = 128, device: str = "cpu"):
    torch.manual_seed(seed)
    config = ModelConfig.named("tiny", vocab_size=512)
    model = MaskedLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # fused, as the trainer on a GPU
    g = torch.Generator().manual_seed(seed)
    input_ids, document_ids = random_packed_batch(rows, seq_len, config.vocab_size, g, mean_document_length=40)
    inputs, labels = mask_batch(input_ids, 0.3, [(seed, row) for row in range(rows)], config.vocab_size)
    return model, optimizer, inputs, document_ids, labels


def _step(model, optimizer, inputs, document_ids, labels, micro=2, wrapped=None, watch=None, device="cpu"):
    """The trainer's host-side preparation (labels are host tensors there), then the copy to the device and the
    step, watched if asked."""
    capacities = [prediction_rows(labels[start:start + micro], 0.3) for start in range(0, labels.shape[0], micro)]
    predicted = torch.tensor(float((labels != IGNORE_INDEX).sum()), dtype=torch.float64)
    device = torch.device(device)
    ctx = Distributed(rank=0, world_size=1, local_rank=0, device=device)
    with watch or contextlib.nullcontext():
        inputs, document_ids, labels, predicted = (to_device(t, device)
                                                   for t in (inputs, document_ids, labels, predicted))
        return train_step(wrapped or model, model, optimizer, inputs, document_ids, labels, predicted, capacities,
                          micro=micro, ctx=ctx, autocast=device.type == "cuda", grad_clip=1.0, fsdp=False)


def test_a_training_step_reads_nothing_back_from_the_device():
    model, optimizer, inputs, document_ids, labels = _setup()
    mode = ReadBacks()
    loss, grad_norm, predicted = _step(model, optimizer, inputs, document_ids, labels, watch=mode)
    assert mode.seen == []
    assert torch.isfinite(loss) and grad_norm > 0 and predicted == (labels != IGNORE_INDEX).sum()
    # The detector itself works: a loss read as a float is one read-back, and so is gathering the masked positions
    # without a fixed capacity (boolean indexing).
    with ReadBacks() as mode:
        float(loss)
    assert mode.seen == ["aten::_local_scalar_dense"]
    with ReadBacks() as mode:
        model(inputs[:1], document_ids[:1], labels[:1], attention="sdpa")
    assert "aten::index with a boolean mask" in mode.seen


def test_fixed_capacity_equals_exact_gather_and_grows_when_a_batch_exceeds_it():
    model, optimizer, inputs, document_ids, labels = _setup(seed=1)
    exact = model(inputs, document_ids, labels, attention="sdpa").loss
    padded = model(inputs, document_ids, labels, attention="sdpa",
                   max_predictions=prediction_rows(labels, 0.3)).loss
    torch.testing.assert_close(padded, exact)
    assert prediction_capacity(32 * 1024, 0.3) == 10_496  # 9,830 + 6σ (498) rounded up to 256 rows
    everything = labels.clone()
    everything[:] = 7  # far above 6σ: the capacity follows the real count
    assert prediction_rows(everything, 0.3) == everything.numel()


def test_blocks_compiled_step_trains_like_the_eager_step():
    eager_model, eager_opt, inputs, document_ids, labels = _setup(seed=2)
    compiled_model, compiled_opt, *_ = _setup(seed=2)
    wrapped = compile_model(compiled_model, "blocks")
    for _ in range(2):
        eager_loss, _, _ = _step(eager_model, eager_opt, inputs, document_ids, labels)
        compiled_loss, _, _ = _step(compiled_model, compiled_opt, inputs, document_ids, labels, wrapped=wrapped)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-5)
    for (name, eager), compiled in zip(eager_model.state_dict().items(), compiled_model.state_dict().values()):
        torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.gpu
def test_a_training_step_on_the_gpu_never_synchronises():
    """The GPU path the CPU cannot show: pinned non-blocking copies, FlexAttention's block masks, bf16 autocast,
    fused AdamW. CUDA's sync debug mode turns any synchronisation into an error."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, optimizer, inputs, document_ids, labels = _setup(device="cuda")
    _step(model, optimizer, inputs, document_ids, labels, device="cuda")  # compiles FlexAttention, allocates state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss, grad_norm, _ = _step(model, optimizer, inputs, document_ids, labels, device="cuda")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(loss) and grad_norm > 0
