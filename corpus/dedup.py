"""Deduplication maths, one document at a time: normalised-text hashes and MinHash-LSH signatures.

In: a document's text and language. Out: an exact-duplicate key (`exact_hash`), a MinHash signature
(`minhash_signature`: `bands × rows` unsigned 64-bit minima over the hashed word n-grams) and its LSH band keys
(`band_keys`). The Beam side (`transforms.ExactDedup`, `transforms.MinHashDedup`) groups documents by these keys.

MinHash follows FineWeb-2 (datatrove): word 5-grams of the normalised text, 64-bit xxhash of each n-gram, then
`bands × rows` hash functions h(x) = (a·x + b) mod (2^61 − 1) drawn from a seeded generator, 14 bands × 8 rows.
Two documents of Jaccard similarity J share at least one band with probability 1 − (1 − J^8)^14 (0.92 at J = 0.8,
0.05 at J = 0.5); candidates are then confirmed by the fraction of equal minima (an unbiased estimate of J), so
near-misses below the threshold are not merged.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np
import regex
import xxhash

from corpus.segmentation import script_of_label, split_words

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_NOT_TEXT = regex.compile(r"[\p{P}\p{S}\p{C}]+")
_DIGITS = regex.compile(r"\p{Nd}+")
_SPACES = regex.compile(r"\s+")


@dataclass(frozen=True)
class MinHashConfig:
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    threshold: float = 0.7  # minimum estimated Jaccard to confirm a candidate pair; 0 merges every LSH candidate

    @property
    def num_hashes(self) -> int:
        return self.bands * self.rows


def normalize_text(text: str) -> str:
    """Case-folded NFKC text without punctuation, symbols or control characters, digits as 0, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NOT_TEXT.sub(" ", text)
    text = _DIGITS.sub("0", text)
    return _SPACES.sub(" ", text).strip()


def exact_hash(text: str) -> str:
    """128-bit hash of the normalised text: equal for documents that differ only in case, spacing or punctuation."""
    return xxhash.xxh3_128_hexdigest(normalize_text(text).encode("utf-8"))


@functools.lru_cache(maxsize=8)
def _permutations(num_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(MERSENNE_PRIME), size=num_hashes, dtype=np.uint64)
    b = rng.integers(0, int(MERSENNE_PRIME), size=num_hashes, dtype=np.uint64)
    return a, b


def shingle_hashes(text: str, language: str, ngram: int) -> np.ndarray:
    """64-bit xxhash of each distinct word n-gram of the normalised text (the whole text when it is shorter)."""
    words = split_words(normalize_text(text), script_of_label(language))
    if not words:
        return np.zeros(0, dtype=np.uint64)
    grams = {" ".join(words[i:i + ngram]) for i in range(max(len(words) - ngram + 1, 1))}
    return np.fromiter((xxhash.xxh64_intdigest(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))


def minhash_signature(text: str, language: str, config: MinHashConfig = MinHashConfig()) -> np.ndarray:
    """(bands × rows,) uint64 minima; all-max for a text without words (such texts all share every band, as their
    normalised texts are equal: exact dedup has already merged them)."""
    shingles = shingle_hashes(text, language, config.ngram)
    a, b = _permutations(config.num_hashes, config.seed)
    signature = np.full(config.num_hashes, np.iinfo(np.uint64).max, dtype=np.uint64)
    # Chunks bound the (shingles × hashes) matrix for very long documents. uint64 products wrap, as in datatrove.
    for start in range(0, len(shingles), 4096):
        chunk = shingles[start:start + 4096, None]
        with np.errstate(over="ignore"):
            values = (chunk * a + b) % MERSENNE_PRIME
        np.minimum(signature, values.min(axis=0), out=signature)
    return signature


def band_keys(signature: np.ndarray, config: MinHashConfig = MinHashConfig()) -> list[tuple[int, int]]:
    """(band index, 64-bit hash of the band's rows) for each band."""
    rows = signature.reshape(config.bands, config.rows)
    return [(band, xxhash.xxh64_intdigest(rows[band].tobytes())) for band in range(config.bands)]


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> float | np.ndarray:
    """Fraction of equal minima: an unbiased estimate of the Jaccard similarity of the two n-gram sets. `first` may
    be a (k, n) stack of signatures: then the k estimates against `second` at once."""
    if first.ndim == 1:
        return float(np.count_nonzero(first == second)) / len(first)
    return np.count_nonzero(first == second, axis=1) / len(second)


def jaccard(first: set, second: set) -> float:
    """Exact Jaccard similarity of two sets (for tests and evaluation)."""
    union = len(first | second)
    return len(first & second) / union if union else 1.0
