"""How the trainer and the benchmark compile the model: per block (the default) or whole.

`blocks` is torchtitan's regional compilation: every block, the embeddings and the MLM head are compiled on their
own. The 22 blocks share three graphs (the first block, global blocks, local blocks), so compilation takes tens of
seconds instead of minutes, and LayerNorm, RoPE and GELU·gate fuse inside each block. Mask building, the prediction
gather and the chunked loss stay eager (the loss compiles its own per-chunk kernel, training/loss.py).
`whole` compiles the forward in one graph: longer to compile, fusion across block boundaries.

The model file stays plain PyTorch; this is applied from outside, after DDP/FSDP wrapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

COMPILE_MODES = ("off", "blocks", "whole")


def compile_model(model: nn.Module, how: str, outer: nn.Module | None = None) -> nn.Module:
    """Compile `model` (a training.model.MaskedLM) as `how` says; → the module to call.

    `outer` is what the trainer calls (DDP or FSDP around `model`); `blocks` compiles the parts of `model` in place
    and returns `outer`, `whole` returns `outer` compiled.
    """
    import torch  # here, not at the top: recipes import COMPILE_MODES without paying for torch

    if how not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {how!r}; choose one of {', '.join(COMPILE_MODES)}")
    outer = model if outer is None else outer
    if how == "off":
        return outer
    # Every block kind x shape x phase is one cache entry: a higher limit keeps a surprise from silently falling
    # back to eager (dynamo's default is 8).
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    else:  # PyTorch < 2.6
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if how == "whole":
        return torch.compile(outer, dynamic=False)
    for block in model.layers:
        block.compile(dynamic=False)
    model.embeddings.compile(dynamic=False)
    model.head.compile(dynamic=False)
    return outer
