"""Attention over packed rows: documents never see each other, local layers also see only a window.

In: queries, keys and values `(B, H, T, D)` after RoPE, and a row's `document_ids` `(B, T)` (segment index within
the row, -1 on padding). Out: the attention output `(B, H, T, D)`.

A token at position i may attend to position j when both belong to the same document and, on local layers,
|i - j| <= window_half (ModernBERT's 128-token window = 64 on each side, the same rule as flash-attn's
`window_size=(64, 64)` and transformers' bidirectional sliding-window mask). Padding is its own "document", so it
attends to other padding only: real tokens never see it and no softmax row is empty.

Four interchangeable paths compute the same thing (tests hold each to `naive`):
- `naive`: scores, mask, softmax, weighted sum, written out; the reference.
- `sdpa`: `scaled_dot_product_attention` with a dense boolean mask; runs everywhere, has a backward on CPU.
- `flex`: FlexAttention with a document + window `BlockMask`, so fully masked 128x128 tiles are skipped; the GPU fast
  path (compiled). Its CPU backward does not exist, so on CPU it is forward-only.
- `flash`: flash-attn's varlen kernel with `window_size`, when the `flash_attn` package is installed (CUDA, bf16/fp16).

`build_masks` turns document ids into whatever the chosen path needs, once per forward, shared by all layers.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

PATHS = ("naive", "sdpa", "flex", "flash")


def flex_available() -> bool:
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def flash_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_path(path: str, device: torch.device) -> str:
    """`auto` → `flex` on CUDA, `sdpa` elsewhere; an explicit path is checked against what this machine has."""
    if path == "auto":
        return "flex" if device.type == "cuda" and flex_available() else "sdpa"
    if path not in PATHS:
        raise ValueError(f"unknown attention path {path!r}; choose one of auto, {', '.join(PATHS)}")
    if path == "flex" and not flex_available():
        raise RuntimeError("attention='flex' needs torch.nn.attention.flex_attention (PyTorch >= 2.5)")
    if path == "flash" and (device.type != "cuda" or not flash_available()):
        raise RuntimeError("attention='flash' needs a CUDA device and the flash-attn package")
    return path


def allowed(document_ids: torch.Tensor, window_half: int | None) -> torch.Tensor:
    """Dense boolean mask `(B, 1, T, T)`: True where query i may attend to key j."""
    T = document_ids.shape[1]
    same_doc = document_ids[:, :, None] == document_ids[:, None, :]  # (B, T, T)
    if window_half is not None:
        pos = torch.arange(T, device=document_ids.device)
        same_doc = same_doc & ((pos[:, None] - pos[None, :]).abs() <= window_half)
    return same_doc[:, None]


@dataclass
class LayerMasks:
    """What one kind of layer (global or local) needs to attend, built once per forward."""

    path: str
    window_half: int | None
    document_ids: torch.Tensor
    mask: Any = None  # dense bool (naive/sdpa), BlockMask (flex), or varlen metadata dict (flash)


def build_masks(document_ids: torch.Tensor, window_half: int, path: str) -> dict[str, LayerMasks]:
    """Masks for the `global` (document only) and `local` (document + window) layers of one batch."""
    if path == "flex":
        return _flex_masks(document_ids, window_half)
    if path == "flash":
        meta = _varlen_metadata(document_ids)
        return {kind: LayerMasks(path, w, document_ids, meta) for kind, w in (("global", None), ("local", window_half))}
    return {
        kind: LayerMasks(path, w, document_ids, allowed(document_ids, w))
        for kind, w in (("global", None), ("local", window_half))
    }


# Set to True to run FlexAttention as its own compiled kernel even inside a compiled block (one graph break per
# layer, a little slower): the fallback should a compiler version mis-fuse the kernel with the ops that produce q and
# k, as PyTorch 2.13's CPU backend does (docs/training-performance.md). The benchmark switches it on by itself when
# its numerics check fails.
ISOLATE_FLEX = False


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: LayerMasks) -> torch.Tensor:
    """(B, H, T, D) x3 → (B, H, T, D) along the path the masks were built for."""
    if masks.path == "naive":
        return naive_attention(q, k, v, masks.document_ids, masks.window_half)
    if masks.path == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=masks.mask)
    if masks.path == "flex":
        if ISOLATE_FLEX:
            return _isolated_flex(q, k, v, masks.mask)
        return _flex_attention()(q, k, v, block_mask=masks.mask)
    if masks.path == "flash":
        return _flash_varlen(q, k, v, masks.mask, masks.window_half)
    raise ValueError(f"unknown attention path {masks.path!r}")


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, document_ids: torch.Tensor, window_half: int | None
) -> torch.Tensor:
    """The reference: softmax(q kᵀ / √d + mask) v, in fp32, nothing fused."""
    scores = (q.float() @ k.float().transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    scores = scores.masked_fill(~allowed(document_ids, window_half), float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


# --- FlexAttention -------------------------------------------------------------------------------------------------

_COMPILED_FLEX = None


def _flex_attention():
    """Compiled flex_attention on CUDA (the fused kernel); plain call when already inside torch.compile or on CPU."""
    from torch.nn.attention.flex_attention import flex_attention

    if torch.compiler.is_compiling():
        return flex_attention

    def call(q, k, v, block_mask):
        global _COMPILED_FLEX
        if q.device.type != "cuda":
            with warnings.catch_warnings():  # unfused on CPU is expected: there it only serves tests
                warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
                return flex_attention(q, k, v, block_mask=block_mask)
        if _COMPILED_FLEX is None:
            _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
        return _COMPILED_FLEX(q, k, v, block_mask=block_mask)

    return call


_COMPILED_CREATE_BLOCK_MASK = None


@torch.compiler.disable(recursive=False)
def _isolated_flex(q, k, v, block_mask):
    return _flex_attention()(q, k, v, block_mask=block_mask)


@torch.compiler.disable
def _flex_masks(document_ids: torch.Tensor, window_half: int) -> dict[str, LayerMasks]:
    # Built outside any compiled graph, by a compiled create_block_mask on CUDA (no dense T x T mask is ever
    # materialised; a new mask_mod closure per batch does not recompile); the block masks are then plain inputs to
    # the compiled layers.
    global _COMPILED_CREATE_BLOCK_MASK
    from torch.nn.attention.flex_attention import create_block_mask

    if document_ids.device.type == "cuda":
        if _COMPILED_CREATE_BLOCK_MASK is None:
            _COMPILED_CREATE_BLOCK_MASK = torch.compile(create_block_mask, dynamic=False)  # one graph per length
        create_block_mask = _COMPILED_CREATE_BLOCK_MASK
    B, T = document_ids.shape
    docs = document_ids.contiguous()

    def document_mask(b, h, q_idx, kv_idx):
        return docs[b, q_idx] == docs[b, kv_idx]

    def window_mask(b, h, q_idx, kv_idx):
        return (docs[b, q_idx] == docs[b, kv_idx]) & ((q_idx - kv_idx).abs() <= window_half)

    out = {}
    for kind, mask_mod, w in (("global", document_mask, None), ("local", window_mask, window_half)):
        block_mask = create_block_mask(mask_mod, B, None, T, T, device=docs.device)
        out[kind] = LayerMasks("flex", w, document_ids, block_mask)
    return out


# --- flash-attn varlen -----------------------------------------------------------------------------------------------


def _varlen_metadata(document_ids: torch.Tensor) -> dict:
    """cu_seqlens over the flattened batch: every document (and each row's padding run) is one sequence."""
    B, T = document_ids.shape
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    flat_starts = starts.flatten().nonzero().flatten()  # one host sync per forward, shared by all layers
    total = torch.tensor([B * T], device=document_ids.device)
    cu_seqlens = torch.cat([flat_starts, total]).to(torch.int32)
    return {"cu_seqlens": cu_seqlens, "max_seqlen": T}


def _flash_varlen(q, k, v, meta: dict, window_half: int | None) -> torch.Tensor:
    from flash_attn import flash_attn_varlen_func

    B, H, T, D = q.shape

    def flat(x):  # (B, H, T, D) → (B·T, H, D)
        return x.transpose(1, 2).reshape(B * T, H, D)

    window = (-1, -1) if window_half is None else (window_half, window_half)
    out = flash_attn_varlen_func(
        flat(q), flat(k), flat(v), meta["cu_seqlens"], meta["cu_seqlens"], meta["max_seqlen"], meta["max_seqlen"],
        window_size=window,
    )
    return out.reshape(B, T, H, D).transpose(1, 2)
