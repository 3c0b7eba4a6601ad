"""Optimizer, learning-rate schedule and batch-size warm-up, all as functions of tokens seen.

In: the model and the recipe's optimizer / schedule / batch sections. Out: a `torch.optim.AdamW` with two parameter
groups (decayed matrices, the embedding included; undecayed norms and biases unless the recipe says otherwise),
`lr_at(tokens)` and `batch_size_at(tokens)`. Schedules are pure functions of a token count (the learning rate's: the
loader's `schedule_tokens`, the position on the phases' budgets), so a resumed run needs only its saved state.

Weight decay is decoupled from the learning rate's size, as in mmBERT's decoupled AdamW: each step multiplies a
weight by (1 − wd · lr_t / lr_peak). torch's AdamW multiplies by (1 − lr_t · wd'), so wd' = wd / lr_peak.
"""

from __future__ import annotations

import bisect
import itertools
import math

import torch
import torch.nn as nn

from training.config import BatchConfig, OptimizerConfig, ScheduleConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_norms_biases: bool = False,
                     decay_embeddings: bool = True) -> list[dict]:
    """Matrices are decayed, the (tied) embedding matrix included; norms and biases (any 1-D tensor) are not, by
    default: ModernBERT's and mmBERT's `filter_bias_norm_wd: true` (timm's rule: `ndim <= 1` or a bias)."""
    embedding_params = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    decay, no_decay = [], []
    for _, param in model.named_parameters():  # named_parameters lists a tied tensor once
        if not param.requires_grad:
            continue
        if param.ndim < 2:
            decayed = decay_norms_biases
        else:
            decayed = decay_embeddings or id(param) not in embedding_params
        (decay if decayed else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, config: OptimizerConfig, fused: bool | None = None) -> torch.optim.AdamW:
    groups = parameter_groups(model, config.weight_decay / config.lr, config.decay_norms_biases,
                              config.decay_embeddings)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, fused=fused)


def lr_at(tokens: int, peak_lr: float, schedule: ScheduleConfig, total_tokens: int) -> float:
    """Warmup–stable–decay: 0 → peak linearly over warmup, peak, then to final_lr_ratio·peak over the last
    decay_tokens, linearly or as 1 − sqrt (the shape of mmBERT's decay phase)."""
    if schedule.warmup_tokens and tokens < schedule.warmup_tokens:
        return peak_lr * (tokens + 1) / schedule.warmup_tokens  # never exactly 0: step 0 should still move
    decay_start = total_tokens - schedule.decay_tokens
    if not schedule.decay_tokens or tokens < decay_start:
        return peak_lr
    progress = min(1.0, (tokens - decay_start) / schedule.decay_tokens)
    shape = progress if schedule.decay_shape == "linear" else math.sqrt(progress)
    return peak_lr * (1.0 - (1.0 - schedule.final_lr_ratio) * shape)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def batch_size_at(tokens: int, batch: BatchConfig) -> int:
    """Rows in the global batch after `tokens` tokens, as ModernBERT's (and so mmBERT's) batch-size warm-up: the
    sizes warmup_min_size, 2x, 3x, … below global_size, each held for the same number of steps (a size of k rows
    lasts k/Σ sizes of warmup_tokens), so the batch grows with the square root of the tokens seen. (ModernBERT adds
    one packed micro-batch per GPU at a time; mmBERT's minimum is one micro-batch of 48 rows per GPU, so
    warmup_min_size = 48 x GPUs gives its sizes.)"""
    if not batch.warmup_tokens or tokens >= batch.warmup_tokens:
        return batch.global_size
    sizes = range(batch.warmup_min_size, batch.global_size, batch.warmup_min_size)
    total = sum(sizes)
    ends = [batch.warmup_tokens * seen / total for seen in itertools.accumulate(sizes)]
    index = bisect.bisect_right(ends, tokens)
    return sizes[index] if index < len(sizes) else batch.global_size
