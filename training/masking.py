"""MLM masking: which tokens a row predicts, and what the model sees in their place.

In: packed rows `input_ids (B, T)` and, per row, a seed. Out: `(inputs, labels)`, both `(B, T)`: labels hold the
original id at predicted positions and -100 elsewhere; inputs hold, at predicted positions, `<mask>` 80 % of the
time, a random regular token 10 %, the original token 10 % (BERT's 80/10/10).

Each row's choices come from its own seed (the trainer derives it from the run seed and the row's place in the global
stream), so a row is masked the same way whatever the number of processes, the micro-batch it lands in, or a resume.
Special tokens ([CLS], [SEP], padding, `<unk>`, `<mask>`: ids 0-4) are never predicted nor drawn as random
replacements, which come uniformly from every other id (Gemma's turn markers and unused ids included, as BERT draws
from its whole vocabulary).
"""

from __future__ import annotations

import numpy as np
import torch

from tokenizer.special_tokens import MASK_ID, SPECIAL_TOKENS
from training.loss import IGNORE_INDEX

SPECIAL_IDS = np.array(sorted(set(SPECIAL_TOKENS.values())), dtype=np.int64)
FIRST_REGULAR_ID = int(SPECIAL_IDS.max()) + 1  # special ids are 0..4: random replacements come from above them


def mask_row(row: np.ndarray, mask_rate: float, seed: tuple[int, ...], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One row (T,) → (inputs, labels). Each maskable token is predicted with probability `mask_rate`."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    row = np.asarray(row, dtype=np.int64)
    maskable = ~np.isin(row, SPECIAL_IDS)
    draws = rng.random((3, row.shape[0]))  # one stream for every decision: selection, replacement kind, random id
    predicted = maskable & (draws[0] < mask_rate)
    labels = np.where(predicted, row, IGNORE_INDEX)
    inputs = row.copy()
    to_mask = predicted & (draws[1] < 0.8)
    to_random = predicted & (draws[1] >= 0.8) & (draws[1] < 0.9)  # the last 10 % keep their token
    random_ids = FIRST_REGULAR_ID + (draws[2] * (vocab_size - FIRST_REGULAR_ID)).astype(np.int64)
    inputs[to_mask] = MASK_ID
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def mask_batch(input_ids: torch.Tensor | np.ndarray, mask_rate: float, row_seeds: list[tuple[int, ...]],
               vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) rows and one seed per row → (inputs, labels) as LongTensors on the CPU."""
    rows = np.asarray(input_ids)
    if len(row_seeds) != rows.shape[0]:
        raise ValueError(f"need one seed per row: {rows.shape[0]} rows, {len(row_seeds)} seeds")
    if not 0 <= mask_rate <= 1:
        raise ValueError(f"mask_rate must be in [0, 1], got {mask_rate}")
    if vocab_size <= FIRST_REGULAR_ID:
        raise ValueError(f"vocab_size {vocab_size} leaves no regular tokens above the special ids")
    masked = [mask_row(row, mask_rate, seed, vocab_size) for row, seed in zip(rows, row_seeds)]
    inputs = np.stack([m[0] for m in masked]) if masked else rows.astype(np.int64)
    labels = np.stack([m[1] for m in masked]) if masked else np.full_like(rows, IGNORE_INDEX, dtype=np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(labels)
