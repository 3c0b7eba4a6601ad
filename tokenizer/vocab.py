"""A tokenizer's vocabulary as one digest: which string every id stands for, and nothing else.

In:  a `tokenizers.Tokenizer` (the raw tokenizer.json, a trained one, or the backend of a transformers export).
Out: `vocab_digest(tokenizer)`, the sha256 of its sorted (token, id) pairs, added tokens included.

The file's sha256 (the manifest's `sha256`) changes whenever a tokenizer.json is rewritten (`mmbert export` sets a
post-processor and truncation), and the vocabulary size cannot tell two trained tokenizers of the same size apart;
the digest is equal exactly when ids mean the same tokens, which is what a model and its shards must share.
"""

from __future__ import annotations

import hashlib
import json


def vocab_digest(tokenizer) -> str:
    """sha256 (hex) of the sorted (token, id) pairs of `tokenizer.get_vocab(with_added_tokens=True)`."""
    pairs = sorted(tokenizer.get_vocab(with_added_tokens=True).items())
    # JSON keeps every token unambiguous (no separator a token could contain).
    encoded = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()
