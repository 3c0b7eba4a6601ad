"""Metric functions, pure and small: tensors in, numbers out (the tasks call them; tests check them by hand).

- bitext retrieval (XTREME's Tatoeba task): row i of `source` should find row i of `target` as its nearest neighbour
  by cosine similarity, and the other way round;
- masked-token accuracy and pseudo-perplexity (Salazar et al., 2020: exp of the mean negative log-likelihood of each
  token when it alone is masked);
- mean pooling of hidden states over the real (non-padding) tokens.
"""

from __future__ import annotations

import math

import torch


def cosine_similarity_matrix(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, H) × (M, H) → (N, M) cosine similarities."""
    source = torch.nn.functional.normalize(source.float(), dim=-1)
    target = torch.nn.functional.normalize(target.float(), dim=-1)
    return source @ target.T


def retrieval_accuracy(source: torch.Tensor, target: torch.Tensor, source_texts: list[str] | None = None,
                       target_texts: list[str] | None = None) -> tuple[float, float]:
    """Fraction of source rows whose nearest target is their own translation, and the same from target to source.

    With the texts, rows holding the same sentence are interchangeable: retrieving either copy is right (identical
    sentences embed identically, so matching row numbers alone would count every repeat wrong)."""
    if source.shape != target.shape or source.shape[0] == 0:
        raise ValueError(f"need two equal, non-empty (N, H) matrices, got {tuple(source.shape)} and "
                         f"{tuple(target.shape)}")
    similarity = cosine_similarity_matrix(source, target)
    source_ids, target_ids = (_first_occurrence(texts, similarity.shape[0]) for texts in (source_texts, target_texts))
    forward = (target_ids[similarity.argmax(dim=1)] == target_ids).float().mean().item()
    backward = (source_ids[similarity.argmax(dim=0)] == source_ids).float().mean().item()
    return forward, backward


def _first_occurrence(texts: list[str] | None, n: int) -> torch.Tensor:
    """Each row's id: the index of the first row with the same text (its own index without texts)."""
    if texts is None:
        return torch.arange(n)
    first: dict[str, int] = {}
    return torch.tensor([first.setdefault(text, index) for index, text in enumerate(texts)])


def token_log_likelihoods(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, V) logits at masked positions, (N,) true ids → (log p(true id), whether the top prediction is right)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs.gather(1, targets[:, None]).squeeze(1), logits.argmax(dim=-1) == targets


def pseudo_perplexity(log_likelihoods: torch.Tensor) -> float:
    """exp(−mean log p) over masked tokens; a model that predicts uniformly over V tokens scores exactly V."""
    if log_likelihoods.numel() == 0:
        raise ValueError("pseudo-perplexity of no tokens")
    mean_nll = -log_likelihoods.double().mean().item()
    return math.exp(mean_nll) if mean_nll < 709.0 else math.inf  # exp overflows a double past ~709.78


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) hidden states, (B, T) 0/1 mask → (B, H) mean over the masked-in positions."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    if labels.numel() == 0:
        raise ValueError("accuracy of no examples")
    return (predictions == labels).float().mean().item()
