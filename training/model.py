"""The encoder: ModernBERT as mmBERT trains it, from token embedding to masked-LM loss, in one file.

In: packed rows `input_ids (B, T)` and `document_ids (B, T)` (which document of the row each token belongs to, -1 on
padding), optionally `labels (B, T)` (-100 where nothing is predicted). Out: `MaskedLMOutput(loss, logits,
num_predicted)`; `encode` gives the final hidden states `(B, T, H)`.

References: ModernBERT (Warner et al. 2024, arXiv:2412.13663) and its transformers port `ModernBertForMaskedLM`, whose
weights this module loads and exports one-to-one (training/hf.py); mmBERT (Marone et al. 2025, arXiv:2509.06888) for
the sizes, the Gemma 2 vocabulary and the RoPE bases per phase.

    embeddings → LayerNorm
    × L blocks:  x += Attention(LN(x))   (block 0 has no LayerNorm here: the embedding norm already did it)
                 x += GeGLU-MLP(LN(x))
    final LayerNorm
    MLM head: dense → GELU → LayerNorm → decoder tied to the embeddings (+ bias), only at predicted positions

Attention is global on layers 0, 3, 6, … and a ±64-token sliding window elsewhere; documents packed in one row never
see each other and RoPE positions restart at 0 in every document. The attention arithmetic itself (naive, sdpa,
FlexAttention, flash-attn) lives in training/attention.py; the chunked 256k-way cross-entropy in training/loss.py.
No biases anywhere except the decoder's; LayerNorms have no bias, eps 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from tokenizer.special_tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from training import attention as attn_paths
from training.loss import gather_predictions, linear_cross_entropy


# Fields that change between checkpoints of one model: training settings (dropout, the initialisation used before step
# 0) and what phases switch (RoPE bases, the recorded maximum length). Resuming and merging compare the rest.
TRAINING_FIELDS = frozenset({"attention_out_dropout", "initializer_range", "initializer_cutoff_factor"})
PHASE_FIELDS = frozenset({"global_rope_theta", "local_rope_theta", "max_position_embeddings"})


@dataclass
class ModelConfig:
    vocab_size: int = 256_000  # Gemma 2
    hidden_size: int = 768
    intermediate_size: int = 1152  # per GeGLU half; the input projection is 2x this
    num_layers: int = 22
    num_heads: int = 12
    global_every: int = 3  # layers 0, 3, 6, … attend globally
    local_window: int = 128  # total window of local layers: window // 2 tokens on each side
    global_rope_theta: float = 10_000.0  # mmBERT: 10k in pre-training, 160k from context extension on
    local_rope_theta: float = 10_000.0
    max_position_embeddings: int = 8192  # longest document the RoPE tables are meant for (recorded for export)
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0  # truncated normal at ±2 std
    attention_out_dropout: float = 0.0  # mmBERT used 0.1 on the attention output
    pad_token_id: int = PAD_ID  # mmBERT's ids for the Gemma 2 vocabulary, defined once in tokenizer/special_tokens.py
    cls_token_id: int = CLS_ID
    sep_token_id: int = SEP_ID
    mask_token_id: int = MASK_ID

    def __post_init__(self):
        for field in fields(self):  # recipes are YAML: a value may be a string, a float where an int belongs, nan
            value = getattr(self, field.name)
            integer = field.type == "int"
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                kind = "an integer" if integer else "a number"
                raise ValueError(f"model config {field.name} must be {kind}, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"model config {field.name} must be finite, got {value!r}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "global_every",
                     "local_window", "max_position_embeddings", "global_rope_theta", "local_rope_theta", "norm_eps",
                     "initializer_range", "initializer_cutoff_factor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model config {name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.attention_out_dropout < 1.0:
            raise ValueError(f"model config attention_out_dropout must be in [0, 1), got {self.attention_out_dropout}")
        for name in ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"model config {name} {getattr(self, name)} is not an id of the {self.vocab_size:,}-"
                                 "token vocabulary")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must split into num_heads {self.num_heads} heads of even size (RoPE)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def window_half(self) -> int:
        return self.local_window // 2

    def is_global(self, layer: int) -> bool:
        return layer % self.global_every == 0

    @classmethod
    def named(cls, name: str, **overrides) -> "ModelConfig":
        """`mmbert-small`, `mmbert-base` (mmBERT's shapes) or `tiny` (a CPU-sized model), with field overrides."""
        if name not in NAMED_CONFIGS:
            raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMED_CONFIGS)}")
        return cls.from_dict({**NAMED_CONFIGS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


NAMED_CONFIGS = {
    "mmbert-small": dict(hidden_size=384, intermediate_size=1152, num_layers=22, num_heads=6),
    "mmbert-base": dict(hidden_size=768, intermediate_size=1152, num_layers=22, num_heads=12),
    # Same vocabulary and window as the real models, so it trains on the same shards; small everywhere else.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_layers=4, num_heads=4, max_position_embeddings=1024),
}


class MaskedLMOutput(NamedTuple):
    loss: torch.Tensor | None  # mean cross-entropy over predicted positions (0 when there are none)
    logits: torch.Tensor | None  # (B, T, V), only when no labels were given
    num_predicted: torch.Tensor | None  # how many positions the loss averages over (a tensor: no host sync)


def positions_from_document_ids(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) → (B, T) position of each token inside its own document: 0, 1, 2, … restarting at every boundary."""
    B, T = document_ids.shape
    index = torch.arange(T, device=document_ids.device).expand(B, T)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    start_of_doc = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - start_of_doc


class Rotary(nn.Module):
    """Rotary position embedding tables for one base θ (the half-split layout of GPT-NeoX and ModernBERT)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        half = head_dim // 2  # the sign rotate-half gives each half: −x₂ first, then +x₁
        self.register_buffer("sign", torch.cat((-torch.ones(half), torch.ones(half))), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions → fp32 (cos, signed sin), each (B, 1, T, D) to broadcast over heads. The sin table's
        first half is negated, which turns rotate-half into a roll (see apply_rotary)."""
        freqs = positions[..., None].float() * self.inv_freq  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        return emb.cos(), emb.sin() * self.sign


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin, with rotate_half(x) = cat(−x₂, x₁) = roll(x, D/2)·sign. As a roll (an index
    shift, no concatenation) the compiled backward writes dq and dk straight into the fused qkv gradient instead of
    assembling them in a copy (300 MB per mmbert-base block at 32 x 1024). Bit-identical to the cat form."""
    x32 = x.float()
    return (x32 * cos + x32.roll(x.shape[-1] // 2, dims=-1) * signed_sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.out_drop = nn.Dropout(config.attention_out_dropout)

    def forward(self, x, rope: tuple[torch.Tensor, torch.Tensor], masks: attn_paths.LayerMasks) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.Wqkv(x).view(B, T, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = attn_paths.attend(q, k, v, masks)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.out_drop(self.Wo(y))


class MLP(nn.Module):
    """GeGLU: GELU(x W_in) ⊙ (x W_gate), then W_out."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(F.gelu(inp) * gate)


def layer_norm(config: ModelConfig) -> nn.LayerNorm:
    return nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=False)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        self.kind = "global" if config.is_global(index) else "local"
        self.attn_norm = nn.Identity() if index == 0 else layer_norm(config)
        self.attn = Attention(config)
        self.mlp_norm = layer_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope, masks) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope, masks)
        return x + self.mlp(self.mlp_norm(x))


class Embeddings(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = layer_norm(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.tok_embeddings(input_ids))


class PredictionHead(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.norm = layer_norm(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(x)))


class MaskedLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.final_norm = layer_norm(config)
        self.head = PredictionHead(config)
        # The decoder's weight is the embedding matrix (tied); only its bias is a parameter of its own.
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.rotary = nn.ModuleDict(
            {
                "global": Rotary(config.head_dim, config.global_rope_theta),
                "local": Rotary(config.head_dim, config.local_rope_theta),
            }
        )
        # The residual stream's dtype between blocks, set by the training precision (None: the embeddings', fp32
        # under autocast). bf16 halves the bytes every element-wise kernel of a block reads and writes.
        self.residual_dtype: torch.dtype | None = None
        self.reset_parameters()

    @property
    def decoder_weight(self) -> torch.Tensor:
        return self.embeddings.tok_embeddings.weight

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """ModernBERT's initialisation: truncated normals, output projections scaled down by √(2·layers)."""
        c = self.config
        std_in, std_out = c.initializer_range, c.initializer_range / math.sqrt(2.0 * c.num_layers)

        def trunc_normal(weight: torch.Tensor, std: float) -> None:
            cut = c.initializer_cutoff_factor * std
            nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-cut, b=cut)

        trunc_normal(self.embeddings.tok_embeddings.weight, std_in)
        for block in self.layers:
            trunc_normal(block.attn.Wqkv.weight, std_in)
            trunc_normal(block.attn.Wo.weight, std_out)
            trunc_normal(block.mlp.Wi.weight, std_in)
            trunc_normal(block.mlp.Wo.weight, std_out)
        trunc_normal(self.head.dense.weight, std_in)  # ModernBERT's trainer: an input module (transformers: std_out)
        self.decoder_bias.zero_()
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)

    @torch.no_grad()
    def set_rope_theta(self, global_theta: float, local_theta: float) -> None:
        """Switch RoPE bases between phases (mmBERT: 10k → 160k at context extension); weights are unaffected."""
        self.config.global_rope_theta, self.config.local_rope_theta = float(global_theta), float(local_theta)
        for kind, theta in (("global", global_theta), ("local", local_theta)):
            # In place: wrappers (DDP, torch.compile) keep seeing the same buffer, now with the new frequencies.
            self.rotary[kind].inv_freq.copy_(Rotary(self.config.head_dim, theta).inv_freq)

    def encode(self, input_ids: torch.Tensor, document_ids: torch.Tensor, attention: str = "auto") -> torch.Tensor:
        """(B, T) token ids and document ids → (B, T, H) final hidden states."""
        path = attn_paths.resolve_path(attention, input_ids.device)
        masks = attn_paths.build_masks(document_ids, self.config.window_half, path)
        positions = positions_from_document_ids(document_ids)
        x = self.embeddings(input_ids)  # (B, T, H)
        if self.residual_dtype is not None:
            x = x.to(self.residual_dtype)
        ropes = {kind: rotary(positions) for kind, rotary in self.rotary.items()}
        for block in self.layers:
            x = block(x, ropes[block.kind], masks[block.kind])
        return self.final_norm(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        document_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention: str = "auto",
        max_predictions: int | None = None,
        loss_chunk_size: int = 4096,
        loss_impl: str = "chunked",
    ) -> MaskedLMOutput:
        """Masked-LM loss over the positions where labels != -100 (or full logits when labels is None).

        `max_predictions` fixes the number of gathered positions (padded with ignored ones) so the step has static
        shapes and no host sync; it must be at least the number of labelled positions in the batch.
        """
        hidden = self.encode(input_ids, document_ids, attention)
        if labels is None:
            logits = F.linear(self.head(hidden), self.decoder_weight, self.decoder_bias)
            return MaskedLMOutput(None, logits, None)
        # Sparse prediction: the head and the 256k-way decoder run only where a label exists.
        selected, targets = gather_predictions(hidden, labels, max_predictions)
        loss, count = linear_cross_entropy(
            self.head(selected), self.decoder_weight, self.decoder_bias, targets,
            chunk_size=loss_chunk_size, impl=loss_impl,
        )
        return MaskedLMOutput(loss, None, count)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
