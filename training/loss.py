"""Masked-LM loss at predicted positions only, without ever holding the full 256k-way logits of a batch.

In: final hidden states `(B, T, H)` and labels `(B, T)` (-100 where nothing is predicted), the decoder weight (the
tied embedding matrix `(V, H)`) and bias `(V,)`. Out: the mean cross-entropy over labelled positions and their count.

Two steps:
1. `gather_predictions` keeps only labelled positions (sparse prediction: with 30 % masking the head and decoder do
   30 % of the work). With `capacity` it gathers a fixed number of rows, labelled ones first and ignored ones after,
   so shapes are static and nothing waits on the GPU.
2. `linear_cross_entropy` computes decoder + cross-entropy chunk by chunk. Logits of one chunk exist at a time: the
   forward computes each chunk's loss *and* its gradients with respect to the hidden states, weight and bias (the
   trick of fused linear cross-entropy kernels), so the backward only scales them and no logits are kept for it.
   At 1024 x 32 tokens with 30 % masking, all logits at once would be ~10 GB in fp32 (plus as much for their
   gradient); one 4096-row chunk in bf16 is 2 GB.
   `impl="liger"` uses liger-kernel's fused Triton kernel instead (CUDA only, when installed);
   `impl="plain"` is the straightforward reference (full logits, for tests and small eval batches).
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def gather_predictions(
    hidden: torch.Tensor, labels: torch.Tensor, capacity: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, H), (B, T) → (N, H) hidden states and (N,) targets at labelled positions.

    Without `capacity`, N is the number of labelled positions (boolean indexing: one host sync). With it, N =
    capacity: labelled positions first (in order), then ignored rows whose target is -100. `capacity` must be at
    least the number of labelled positions, or the surplus is silently not predicted.
    """
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_labels = labels.reshape(-1)
    if capacity is None:
        keep = flat_labels != IGNORE_INDEX
        return flat_hidden[keep], flat_labels[keep]
    capacity = min(capacity, flat_labels.numel())
    # A stable sort on "is ignored" puts labelled positions first without knowing how many there are.
    order = torch.argsort((flat_labels == IGNORE_INDEX).to(torch.int8), stable=True)[:capacity]
    return flat_hidden[order], flat_labels[order]


def prediction_capacity(num_tokens: int, mask_rate: float, multiple: int = 256) -> int:
    """A fixed gather capacity for `num_tokens` tokens masked at `mask_rate`: the binomial mean + 6 standard
    deviations, rounded up to `multiple` rows (at most `num_tokens`). A batch exceeds it about once in 10⁹; callers
    that know the real count (the trainer: labels are on the host) still check it."""
    mean = num_tokens * mask_rate
    std = math.sqrt(num_tokens * mask_rate * (1.0 - mask_rate))
    return min(num_tokens, max(multiple, math.ceil((mean + 6 * std + 1) / multiple) * multiple))


def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_size: int = 4096,
    impl: str = "chunked",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of cross_entropy(x Wᵀ + b, targets) over targets != -100, and how many there are (both tensors).

    The mean of zero predictions is 0 (not NaN), so an empty micro-batch adds nothing to the gradient.
    """
    if impl not in ("chunked", "liger", "plain"):
        raise ValueError(f"unknown loss implementation {impl!r}; choose chunked, liger or plain")
    with torch.profiler.record_function("mmbert::loss"):  # the benchmark's profile attributes the loss by this
        count = (targets != IGNORE_INDEX).sum()
        if impl == "plain":
            logits = F.linear(x, weight, bias).float()
            total = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
        elif impl == "chunked":
            total = ChunkedLinearCrossEntropy.apply(x, weight, bias, targets, chunk_size)
        else:
            total = _liger_loss_sum(x, weight, bias, targets)
        return total / count.clamp(min=1), count


def liger_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


_LIGER_LOSS = None


def _liger_loss_sum(x, weight, bias, targets) -> torch.Tensor:
    global _LIGER_LOSS
    if not (x.is_cuda and liger_available()):
        raise RuntimeError("loss_impl='liger' needs a CUDA device and the liger-kernel package")
    if _LIGER_LOSS is None:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

        # fp32 accumulation of the weight and bias gradients across liger's (small) chunks: in bf16 the bias
        # gradient drifts by several per cent over hundreds of chunks.
        _LIGER_LOSS = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum",
                                                       accum_dtype=torch.float32)
    # Liger's kernel wants one dtype throughout: under autocast that is the compute dtype.
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else x.dtype
    b = None if bias is None else bias.to(dtype)
    return _LIGER_LOSS(weight.to(dtype), x.to(dtype), targets, b)


def chunk_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One chunk's logits (n, V) → (sum of losses, d loss / d logits in the logits' dtype, its column sum in fp32).

    Softmax statistics in fp32 whatever the logits' dtype. On CUDA this runs compiled, as one or two fused kernels
    that read the chunk's logits twice and write the gradient once (no fp32 copy of the chunk is written).
    """
    logits32 = logits.float()
    valid = targets != IGNORE_INDEX
    safe_targets = torch.where(valid, targets, torch.zeros_like(targets))
    lse = torch.logsumexp(logits32, dim=-1)
    picked = logits32.gather(1, safe_targets[:, None]).squeeze(1)
    loss = torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
    # d loss / d logits = softmax − one_hot, zero on ignored rows.
    if torch.compiler.is_compiling():
        # One element-wise expression (the one-hot as a comparison, not a scatter) fuses into a single pass.
        vocab = torch.arange(logits.shape[1], device=logits.device)
        one_hot = (vocab[None, :] == safe_targets[:, None]).to(torch.float32)
        grad = torch.where(valid[:, None], (logits32 - lse[:, None]).exp() - one_hot, 0.0)
    else:
        # Eager (CPU): in place, three passes and no (n, V) temporaries; fp32 logits are not needed after this.
        grad = logits32.sub_(lse[:, None]).exp_()
        grad.scatter_add_(1, safe_targets[:, None], -torch.ones_like(lse)[:, None])
        grad.mul_(valid[:, None])
    # The bias gradient sums the cast gradient: summing the fp32 one made Inductor write the whole (n, V) fp32
    # gradient out and read it back (8 passes of the logits' bytes per chunk instead of 5).
    grad = grad.to(logits.dtype)
    return loss, grad, grad.sum(0, dtype=torch.float32)


_COMPILED_CHUNK = None


def _chunk_fn(device: torch.device):
    global _COMPILED_CHUNK
    if device.type != "cuda" or torch.compiler.is_compiling():
        return chunk_loss_and_grad
    if _COMPILED_CHUNK is None:
        _COMPILED_CHUNK = torch.compile(chunk_loss_and_grad, dynamic=False)
    return _COMPILED_CHUNK


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropy of (x Wᵀ + b) over valid targets; gradients computed chunk by chunk in the forward."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, chunk_size):
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        chunk_fn = _chunk_fn(x.device)
        dtype = _matmul_dtype(x)  # bf16 under autocast: cast the 256k x H weight once, not once per chunk
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        total = torch.zeros((), device=x.device, dtype=torch.float32)
        grad_x = torch.empty(x.shape, dtype=dtype, device=x.device) if needs_x else None
        # The weight gradient accumulates in the matmul dtype, in place (cuBLAS adds into it in the GEMM's epilogue):
        # an fp32 accumulator would cost a bf16 product plus a read-add-write of 786 MB per chunk.
        grad_w = torch.zeros_like(weight, dtype=dtype) if needs_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and needs_b else None
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, x.shape[0], chunk_size):
                xc, yc = x[start : start + chunk_size].to(dtype), targets[start : start + chunk_size]
                logits = F.linear(xc, w, b)  # (n, V): the only full-vocabulary tensor alive
                if not (needs_x or needs_w or needs_b):  # evaluation: the loss alone
                    total = total + F.cross_entropy(logits.float(), yc, ignore_index=IGNORE_INDEX, reduction="sum")
                    continue
                loss, grad_logits, grad_bias = chunk_fn(logits, yc)
                total = total + loss
                if grad_b is not None:
                    grad_b += grad_bias
                if grad_x is not None:
                    torch.mm(grad_logits, w, out=grad_x[start : start + chunk_size])
                if grad_w is not None:
                    grad_w.addmm_(grad_logits.t(), xc)
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        # The loss is linear in its precomputed gradients: scale them by the incoming gradient, restore dtypes
        # (one new tensor each: the cast, scaled in place).
        with torch.profiler.record_function("mmbert::loss"):
            grads = [None if g is None else g.to(t, copy=True).mul_(grad_total)
                     for g, t in zip(ctx.saved_tensors, ctx.dtypes)]
        return (*grads, None, None)


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the decoder matmuls run in: autocast's (bf16 on GPU) when it is on, else the input's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype
