"""Merge checkpoints of the same model into one: plain averaging or TIES (Yadav et al. 2023, arXiv:2306.01708).

In: two or more checkpoint directories (model.safetensors + checkpoint.json with the same `model_config`), optionally
a base checkpoint they were all trained from. Out: a checkpoint directory with the merged `model.safetensors` and a
`checkpoint.json` recording where it came from; no trainer state (a merged model starts a fresh optimizer).

mmBERT merges its three decay-phase variants (English-focused, 110 languages, all languages) with TIES. TIES, per
parameter tensor, on task vectors τ_t = θ_t − θ_base:
1. trim: keep each τ_t's largest-magnitude `density` fraction, zero the rest;
2. elect: the sign of each coordinate is the sign of Σ_t w_t τ̂_t (the side with more total mass);
3. disjoint merge: average, weighted by w_t, only the τ̂_t that agree with the elected sign (zeros excluded);
then θ = θ_base + τ_merged. Without a base, the mean of the inputs serves as θ_base, so TIES resolves where the
variants disagree around their consensus. Trimming per tensor (not over the whole model) follows mergekit.
"""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import torch

from mmbert.atomic import atomic_directory, check_output_directory
from mmbert.errors import UsageError
from training.checkpoint import META_FILE, MODEL_FILE, read_checkpoint_meta
from training.model import PHASE_FIELDS, TRAINING_FIELDS

METHODS = ("ties", "average")


def ties_merge(
    tensors: Sequence[torch.Tensor], base: torch.Tensor | None, density: float, weights: Sequence[float]
) -> torch.Tensor:
    """TIES-merge one parameter tensor from its fine-tuned versions (and the base they share, if any)."""
    stacked = torch.stack([t.float() for t in tensors])  # (n, ...)
    reference = stacked.mean(0) if base is None else base.float()
    task = stacked - reference
    trimmed = torch.stack([_keep_top(t, density) for t in task])
    w = torch.tensor(weights, dtype=torch.float32).view(-1, *([1] * (task.dim() - 1)))
    elected = torch.sign((w * trimmed).sum(0))
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    weight_sum = (w * agree).sum(0)
    merged = (w * trimmed * agree).sum(0) / weight_sum.clamp(min=1e-12)
    return (reference + merged).to(tensors[0].dtype)


def average_merge(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    total = sum(weights)
    merged = sum(w * t.float() for w, t in zip(weights, tensors)) / total
    return merged.to(tensors[0].dtype)


def _keep_top(task_vector: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the `density` fraction of entries with the largest magnitude."""
    if density >= 1.0:
        return task_vector
    flat = task_vector.abs().flatten()
    keep = max(1, math.ceil(density * flat.numel()))
    threshold = flat.kthvalue(flat.numel() - keep + 1).values
    return torch.where(task_vector.abs() >= threshold, task_vector, torch.zeros_like(task_vector))


def merge_checkpoints(
    ckpt_dirs: Sequence[str | Path],
    output_dir: str | Path,
    method: str = "ties",
    density: float = 0.2,
    weights: Sequence[float] | None = None,
    base: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Merge `ckpt_dirs` into a new checkpoint directory `output_dir` (written atomically); returns it.

    `density` (TIES only): fraction of each task vector kept (the paper's k, 0.2 by default). `weights`: one per
    checkpoint (default equal). `base`: the checkpoint the inputs were trained from (TIES only).
    """
    from safetensors.torch import save_file

    ckpt_dirs = [Path(d) for d in ckpt_dirs]
    output_dir = Path(output_dir)
    weights = _checked_arguments(ckpt_dirs, method, density, weights, base)
    sources = ckpt_dirs + ([Path(base)] if base is not None else [])
    check_output_directory(output_dir, overwrite, reads=[("checkpoint", d) for d in sources])
    metas = _checked_metas(sources, len(ckpt_dirs))
    merged = _merge_tensors(sources, len(ckpt_dirs), method, density, weights, has_base=base is not None)

    meta = {
        "model_config": metas[0]["model_config"],
        "step": 0,
        "phase": "merge",
        "tokens_seen": max(int(m.get("tokens_seen", 0) or 0) for m in metas[: len(ckpt_dirs)]),
        "tokenizer": metas[0].get("tokenizer"),
        "recipe": metas[0].get("recipe"),
        "merge": {
            "method": method,
            "density": density if method == "ties" else None,
            "weights": weights,
            "inputs": [str(d) for d in ckpt_dirs],
            "base": None if base is None else str(base),
        },
    }
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        save_file(merged, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return output_dir


def _checked_arguments(ckpt_dirs: list[Path], method: str, density: float, weights, base) -> list[float]:
    """UsageError for unusable merge settings; → the weights, one per checkpoint (equal by default)."""
    if method not in METHODS:
        raise UsageError(f"unknown merge method {method!r}; choose one of {', '.join(METHODS)}")
    if len(ckpt_dirs) < 2:
        raise UsageError("merging needs at least two checkpoints")
    if not 0.0 < density <= 1.0:
        raise UsageError(f"density must be in (0, 1], got {density}")
    weights = [1.0] * len(ckpt_dirs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(ckpt_dirs) or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise UsageError(f"weights must be {len(ckpt_dirs)} non-negative numbers with a positive sum, got {weights}")
    if base is not None and method != "ties":
        raise UsageError("a base checkpoint only applies to --method ties")
    return weights


def _checked_metas(sources: list[Path], inputs: int) -> list[dict]:
    """Every checkpoint's metadata; UsageError unless they are one model (a TIES base, last, may differ in RoPE)."""
    metas = [read_checkpoint_meta(d) for d in sources]
    for index, (directory, meta) in enumerate(zip(sources[1:], metas[1:]), start=1):
        # Dropout or initialisation never matter; the inputs must share RoPE bases (the merged model gets them),
        # a TIES base need not (a pre-training checkpoint has 10k where context extension set 160k).
        free = TRAINING_FIELDS | (PHASE_FIELDS if index == inputs else frozenset())
        differs = sorted(key for key in set(meta["model_config"]) | set(metas[0]["model_config"])
                         if key not in free and meta["model_config"].get(key) != metas[0]["model_config"].get(key))
        if differs:
            raise UsageError(f"{directory} is a different model from {sources[0]} ({', '.join(differs)} differ); "
                             "only one model can merge")
    return metas


def _merge_tensors(sources: list[Path], inputs: int, method: str, density: float, weights: list[float],
                   has_base: bool) -> dict[str, torch.Tensor]:
    """The merged state dict, one parameter at a time: memory stays at (inputs + 1) x one tensor."""
    from safetensors import SafetensorError, safe_open

    with ExitStack() as stack:
        handles = []
        for directory in sources:
            try:
                handles.append(stack.enter_context(safe_open(str(directory / MODEL_FILE), framework="pt")))
            except SafetensorError as error:
                raise UsageError(f"{directory / MODEL_FILE}: not a readable safetensors file ({error})") from None
        keys = set(handles[0].keys())
        for directory, handle in zip(sources[1:], handles[1:]):
            if set(handle.keys()) != keys:
                raise UsageError(f"{directory}/{MODEL_FILE} has different parameters from {sources[0]}")
        merged = {}
        for key in sorted(keys):
            tensors = [h.get_tensor(key) for h in handles[:inputs]]
            if method == "average":
                merged[key] = average_merge(tensors, weights)
            else:
                base_tensor = handles[-1].get_tensor(key) if has_base else None
                merged[key] = ties_merge(tensors, base_tensor, density, weights)
    return merged
