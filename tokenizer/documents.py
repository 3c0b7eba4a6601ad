"""Per-document steps of `pack`, as pure functions a test calls without Beam.

In: one corpus row (id, text as read from Parquet — possibly None, bytes or invalid UTF-8). Out: clean text or a
drop reason (reasons become counts in manifest.json), and the document's hash, which alone decides its split, shard
and position — so the result never depends on how many workers read the corpus or in what order.
"""

from __future__ import annotations

import re

import numpy as np
import xxhash

# C0 and C1 control characters and DEL, except tab, newline and carriage return: noise for a tokenizer (and a
# byte-fallback tokenizer would spend a token on each).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Longer documents are cut to this many characters (about 250k tokens): a handful of rows is plenty for one document,
# and one enormous document must not hold a worker's memory.
MAX_DOCUMENT_CHARS = 1_000_000

DROP_MISSING_TEXT = "missing_text"
DROP_INVALID_UTF8 = "invalid_utf8"
DROP_EMPTY = "empty"
MODIFIED_CONTROL_CHARACTERS = "control_characters_removed"
MODIFIED_TRUNCATED = "truncated"


def clean_text(text: str | bytes | None, max_chars: int = MAX_DOCUMENT_CHARS) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(clean text, None, modifications) for a usable document, (None, drop reason, ()) otherwise."""
    if text is None:
        return None, DROP_MISSING_TEXT, ()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None, DROP_INVALID_UTF8, ()
    modified = []
    if CONTROL_CHARACTERS.search(text):
        text = CONTROL_CHARACTERS.sub("", text)
        modified.append(MODIFIED_CONTROL_CHARACTERS)
    if not text.strip():
        return None, DROP_EMPTY, ()
    if len(text) > max_chars:
        text = text[:max_chars]
        modified.append(MODIFIED_TRUNCATED)
    return text, None, tuple(modified)


def document_hash(document_id: str, seed: int = 0) -> int:
    """A 64-bit hash of the document id: its split (high bits), shard (low bits) and order within the shard."""
    return xxhash.xxh3_64_intdigest(document_id.encode("utf-8"), seed=seed)


def hash_fraction(document_hash_value: int) -> float:
    """The hash as a number in [0, 1): documents below `heldout_fraction` are held out."""
    return document_hash_value / 2.0**64


def split_mask(hashes: np.ndarray, heldout_fraction: float, language_min_hash: int, language_max_hash: int,
               language_documents: int) -> np.ndarray:
    """True where a document is held out: its hash / 2^64 is below `heldout_fraction`.

    A language with two or more documents of different ids (and a non-zero fraction) always has both splits: its
    smallest hash is held out and its largest trained on, whatever the fraction — tiny languages still get an
    evaluation set.
    """
    if heldout_fraction <= 0:
        return np.zeros(len(hashes), dtype=bool)
    # hash / 2^64 < fraction, compared exactly on integers (floats would round 64-bit hashes).
    heldout = hashes < np.uint64(min(int(heldout_fraction * 2**64), 2**64 - 1))
    if language_documents >= 2:  # documents sharing one id share one hash, min = max: then all of them train
        heldout |= hashes == np.uint64(language_min_hash)
        heldout &= hashes != np.uint64(language_max_hash)
    return heldout


def shard_indices(hashes: np.ndarray, num_shards: int) -> np.ndarray:
    # The low bits: independent of the high bits that choose the split.
    return (hashes % np.uint64(num_shards)).astype(np.int64)
