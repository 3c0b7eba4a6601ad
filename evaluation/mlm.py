"""Masked-token accuracy and pseudo-perplexity per language on the held-out packed shards (never trained on).

In:  SHARDS/<label>/heldout/part-*.parquet (`input_ids`, `document_lengths`; see `mmbert tokenizer pack`) and
     SHARDS/manifest.json (the tokenizer the shards were packed with).
Out: per language `accuracy` (top-1 prediction at a masked position) and `pseudo_perplexity` (Salazar et al., 2020).

Each row is split back into its documents (`document_lengths`), and each document piece is scored alone, so no
token ever attends across a document boundary, whatever attention the model has. A fixed, seeded sample of at most
`positions` non-special positions per language is scored, each masked on its own (one sequence per position), so
the numbers do not depend on batch size or on which other tokens happen to be masked.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from evaluation.metrics import pseudo_perplexity, token_log_likelihoods
from evaluation.models import EncoderUnderTest
from evaluation.results import Result, skipped
from mmbert.errors import UsageError
from tokenizer.shards import PackedShards

TASK = "mlm"
REQUIRED_COLUMNS = ("input_ids", "document_lengths")


def open_shards(shards: str | Path | PackedShards) -> PackedShards:
    """The packed shards, opened and checked as training and mixtures open them (UsageError if unfinished)."""
    return shards if isinstance(shards, PackedShards) else PackedShards.open(shards)


def document_tail_languages(manifest: dict) -> list[str]:
    """Languages (registry labels, as eval reports them) whose held-out text is the tail of their only document,
    the rest of which was trained on."""
    from languages.registry import UnknownLanguage, normalize

    labels = set()
    for label, entry in manifest.get("languages", {}).items():
        if isinstance(entry, dict) and entry.get("heldout_is_document_tail"):
            try:
                labels.add(normalize(label))
            except UnknownLanguage:
                pass  # PackedShards leaves such a directory out: nothing of it is scored
    return sorted(labels)


def heldout_languages(shards: str | Path | PackedShards) -> list[str]:
    shards = open_shards(shards)
    return sorted(label for label in shards.directories if shards.files(label, "heldout"))


def read_heldout_pieces(shards: str | Path, language: str) -> list[np.ndarray]:
    """Every document piece of a language's held-out split, in file and row order."""
    import pyarrow.parquet as pq

    pieces = []
    for path in open_shards(shards).files(language, "heldout"):
        table = pq.read_table(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (expected packed shards)")
        rows = zip(table.column("input_ids").to_pylist(), table.column("document_lengths").to_pylist())
        for input_ids, lengths in rows:
            ids = np.asarray(input_ids, dtype=np.int64)
            offsets = np.cumsum([0, *lengths])
            if offsets[-1] > len(ids):
                raise UsageError(f"{path}: document_lengths sum to {offsets[-1]} but the row has {len(ids)} tokens")
            pieces += [ids[start:end] for start, end in zip(offsets[:-1], offsets[1:]) if end > start]
    return pieces


def sample_positions(pieces: list[np.ndarray], special_ids: set[int], budget: int, seed: int,
                     language: str) -> list[tuple[int, int]]:
    """A seeded uniform sample of (piece, position) pairs over all non-special tokens, in reading order."""
    if not pieces:
        return []
    lengths = np.array([len(piece) for piece in pieces])
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    candidates = np.flatnonzero(~np.isin(np.concatenate(pieces), list(special_ids)))
    if len(candidates) > budget:
        rng = np.random.default_rng([seed, zlib.crc32(language.encode())])  # per language, whatever else is run
        candidates = np.sort(rng.choice(candidates, size=budget, replace=False))
    piece_of = np.repeat(np.arange(len(pieces)), lengths)
    return [(int(piece_of[i]), int(i - starts[i])) for i in candidates]


def tokenizer_mismatch(model: EncoderUnderTest, manifest: dict) -> str | None:
    """Why this model cannot be scored on these shards (a different vocabulary), or None.

    The manifest's `vocab_sha256` (tokenizer/vocab.py) tells apart two tokenizers of the same size; manifests
    written before it existed, and models without a `tokenizers` backend, are checked on the size alone."""
    from tokenizer.vocab import vocab_digest

    recorded = manifest.get("tokenizer") or {}
    packed = recorded.get("vocab_size")
    if packed is not None and int(packed) != model.vocab_size:
        return (f"the model's tokenizer has {model.vocab_size} tokens but the shards were packed with one of "
                f"{packed}; MLM needs the same tokenizer")
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if not recorded.get("vocab_sha256") or backend is None:
        return None
    ours, theirs = vocab_digest(backend), str(recorded["vocab_sha256"])
    if ours != theirs:
        return (f"the model's tokenizer has the same size ({model.vocab_size} tokens) as the one the shards were "
                f"packed with but a different vocabulary (vocab_sha256 {ours[:12]}… vs {theirs[:12]}…): the same "
                "ids stand for other tokens; MLM needs the same tokenizer")
    return None


def special_ids_of(model: EncoderUnderTest, manifest: dict) -> set[int]:
    ids = set(model.tokenizer.all_special_ids)
    recorded = manifest.get("special_ids") or {}
    ids.update(int(v) for v in (recorded.values() if isinstance(recorded, dict) else recorded))
    return ids


@torch.no_grad()
def score_positions(model: EncoderUnderTest, pieces: list[np.ndarray], positions: list[tuple[int, int]],
                    mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-likelihood of the true token and top-1 correctness at each (piece, position), masked one at a time."""
    log_likelihoods, correct = [], []
    for start in range(0, len(positions), model.batch_size):
        sequences, where, targets = [], [], []
        for piece_index, position in positions[start: start + model.batch_size]:
            piece = pieces[piece_index]
            # A piece longer than the model's window is cut to a window around the position.
            first = min(max(position - model.max_length // 2, 0), max(len(piece) - model.max_length, 0))
            window = piece[first: first + model.max_length].copy()
            targets.append(int(window[position - first]))
            window[position - first] = mask_id
            sequences.append(window.tolist())
            where.append(position - first)
        input_ids, attention_mask = model.pad(sequences)
        logits = model.masked_token_logits(input_ids, attention_mask, torch.tensor(where, device=model.device))
        batch_ll, batch_correct = token_log_likelihoods(logits, torch.tensor(targets, device=model.device))
        log_likelihoods.append(batch_ll.cpu())
        correct.append(batch_correct.cpu())
    return torch.cat(log_likelihoods), torch.cat(correct)


def evaluate_mlm(model: EncoderUnderTest, shards: str | Path, languages: list[str] | None, positions: int,
                 seed: int) -> list[Result]:
    shards = open_shards(shards)
    manifest, available = shards.manifest, heldout_languages(shards)
    if languages is None:
        if not available:
            raise UsageError(f"{shards.path}: no <language>/heldout/part-*.parquet files")
        languages = available
    names = ("accuracy", "pseudo_perplexity")
    if model.mlm is None:
        reason = f"{model.name} has no masked-LM head"
    elif model.tokenizer.mask_token_id is None:
        reason = f"{model.name}'s tokenizer has no mask token"
    else:
        reason = tokenizer_mismatch(model, manifest)
    results = []
    for language in languages:
        why = reason or (None if language in available else f"no held-out shards for {language} in {shards.path}")
        if why is not None:
            results += [skipped(model.name, TASK, language, metric, why) for metric in names]
            continue
        pieces = read_heldout_pieces(shards, language)
        chosen = sample_positions(pieces, special_ids_of(model, manifest), positions, seed, language)
        if not chosen:
            results += [skipped(model.name, TASK, language, metric, "held-out split has no non-special tokens")
                        for metric in names]
            continue
        log_likelihoods, correct = score_positions(model, pieces, chosen, model.tokenizer.mask_token_id)
        n = len(chosen)
        results += [Result(model.name, TASK, language, "accuracy", correct.float().mean().item(), n),
                    Result(model.name, TASK, language, "pseudo_perplexity", pseudo_perplexity(log_likelihoods), n)]
    return results

