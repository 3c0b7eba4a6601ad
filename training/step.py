"""One optimizer step on the device, and the host-side preparation that keeps it from ever waiting.

In: this process's rows of the global batch, masked, on the device; the number of masked tokens in the whole
global batch (a device tensor); one gather capacity per micro-batch. Out: loss, gradient norm and that count, all
device tensors. Nothing in `train_step` reads a value back from the device (tests/training/test_train_step.py
watches its operators on the CPU, and CUDA's sync debug mode on a GPU), so the host prepares batch n + 1 while the
device runs batch n; the trainer reads the results only on logged steps.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from training.distributed import Distributed, all_reduce_sum
from training.loss import IGNORE_INDEX, prediction_capacity


def train_step(wrapped, model, optimizer, inputs, document_ids, labels, predicted, capacities, *,
               micro: int, ctx: Distributed, autocast: bool, grad_clip: float, fsdp: bool,
               dropout_seed: tuple[int, ...] = (0,), first_row: int = 0):
    """One optimizer step over the micro-batches of this process's rows, all tensors already on the device.

    `predicted` is the number of masked tokens in the whole global batch (a device tensor): each micro-batch's
    summed loss is divided by it, so 1 process and N processes compute the same gradient; dropout too, as each
    micro-batch seeds it from `dropout_seed` and its first row's place in the global batch (`first_row` is this
    process's), not from the process's rank (the same micro-batch size on both sides). Returns (mean loss over
    the global batch, gradient norm before clipping, `predicted`), all device tensors: nothing here waits for the
    device, so the caller decides when to read them.
    """
    # DDP averages gradients over processes; x world_size turns that average back into the global sum.
    scale = (ctx.world_size / predicted.clamp(min=1.0)).float()
    loss_sum = torch.zeros((), dtype=torch.float64, device=inputs.device)
    starts = range(0, inputs.shape[0], micro)
    for index, (start, capacity) in enumerate(zip(starts, capacities)):
        sync = index == len(starts) - 1 or not ctx.enabled or fsdp
        rows = slice(start, start + micro)
        # (seed, step, row): a resumed step is the same step; SeedSequence mixes them (no two rows or steps alike)
        torch.manual_seed(int(np.random.SeedSequence([*dropout_seed, first_row + start]).generate_state(1)[0]))
        with (contextlib.nullcontext() if sync else wrapped.no_sync()), \
                torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = wrapped(inputs[rows], document_ids[rows], labels[rows], max_predictions=capacity)
        micro_sum = out.loss.float() * out.num_predicted
        (micro_sum * scale).backward()
        loss_sum += micro_sum.detach().double()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return all_reduce_sum(loss_sum) / predicted.clamp(min=1.0), grad_norm, predicted


def prediction_rows(labels: torch.Tensor, mask_rate: float) -> int:
    """The fixed gather capacity for a micro-batch of this shape, or more in the (~1e-9) case the host-side labels
    show a batch above it: correctness first, a recompilation at worst."""
    capacity = prediction_capacity(labels.numel(), mask_rate)
    count = int((labels != IGNORE_INDEX).sum())
    return capacity if count <= capacity else min(labels.numel(), -(-count // 256) * 256)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host → GPU through pinned memory without blocking (a pageable copy would wait for the device to drain)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
