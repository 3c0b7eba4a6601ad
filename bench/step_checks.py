"""The checks a benchmark run makes besides timing: host synchronisations inside a step (and where they come
from), graphs compiled while timing, and the fast path's numerics against the reference path on the same batch.
Used by bench/train_throughput.py."""

from __future__ import annotations

import math
import traceback
import warnings
from pathlib import Path

import torch

from training.model import MaskedLM


def host_syncs(step) -> tuple[int, list[str]]:
    """Run one step with CUDA's sync debug mode on: how many synchronisations it reports, and where (the innermost
    Python frames of each), so the next change knows which line to fix."""
    sites: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            frames = traceback.extract_stack()[:-1][-6:]
            sites.append(" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames)))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return len(sites), sites


def unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def numerics_check(model: MaskedLM, fast_run, autocast, batch: dict) -> dict:
    """The fast path's loss and gradients against the reference path (fp32, sdpa dense masks, plain cross-entropy)
    on the same batch and weights. The reference is a plain fp32 copy of the model with its current weights (so a
    variant that keeps bf16 weights under FSDP is compared with fp32 too); it runs 4 rows at a time and sums, which
    is the same arithmetic."""
    model.zero_grad(set_to_none=True)
    with autocast:
        fast_loss = fast_run(batch)
    fast_loss.backward()
    fast = {n: full_tensor(p.grad).float().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    device = batch["input_ids"].device
    with device:
        reference = MaskedLM(model.config)
    reference.load_state_dict({n: full_tensor(t).float() for n, t in model.state_dict().items()})
    total = int((batch["labels"] != -100).sum())
    ref_loss = 0.0
    for start in range(0, batch["input_ids"].shape[0], 4):
        rows = slice(start, start + 4)
        out = reference(batch["input_ids"][rows], batch["document_ids"][rows], batch["labels"][rows],
                        attention="sdpa", loss_impl="plain")
        part = out.loss * out.num_predicted / total
        part.backward()
        ref_loss += float(part.detach())
    ref = {n: p.grad.detach() for n, p in reference.named_parameters() if p.grad is not None}
    del reference
    diff_sq = sum(float((fast[n] - ref[n]).pow(2).sum()) for n in ref)
    ref_sq = sum(float(ref[n].pow(2).sum()) for n in ref)
    cosines = {n: float(torch.nn.functional.cosine_similarity(fast[n].flatten(), ref[n].flatten(), dim=0))
               for n in ref if ref[n].abs().sum() > 0}
    worst = min(cosines, key=cosines.get)
    report = {
        "fast_loss": round(float(fast_loss.detach()), 5), "reference_loss": round(ref_loss, 5),
        "loss_rel_diff": abs(float(fast_loss.detach()) - ref_loss) / abs(ref_loss),
        "grad_rel_l2": math.sqrt(diff_sq / ref_sq), "worst_grad_cosine": round(cosines[worst], 5),
        "worst_grad_param": worst,
        "tolerance": {"loss_rel_diff": 5e-3, "grad_rel_l2": 5e-2, "worst_grad_cosine": 0.95},
    }
    report["passed"] = (report["loss_rel_diff"] <= 5e-3 and report["grad_rel_l2"] <= 5e-2
                        and report["worst_grad_cosine"] >= 0.95)
    return report


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor of the whole value: FSDP's parameters and gradients are sharded DTensors."""
    tensor = tensor.detach()
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
