"""Fixtures of the training-loop tests: the real UDHR corpus packed with the real Gemma 2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest


def _pack(tmp_path_factory, corpus: Path, tokenizer: Path, seq_len: int) -> Path:
    from tokenizer.pack import run_pack

    output = tmp_path_factory.mktemp(f"packed_{seq_len}") / "shards"
    run_pack(corpus, str(tokenizer), seq_len, output, heldout_fraction=0.05, num_workers=1)
    return output


@pytest.fixture(scope="session")
def shards_64(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json) -> Path:
    """~40 UDHR languages packed at 64 tokens per row (what recipes/tiny-cpu.yaml trains on)."""
    return _pack(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json, 64)


@pytest.fixture(scope="session")
def shards_128(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json) -> Path:
    """The same corpus packed at 128 tokens per row, for a phase that lengthens the sequences."""
    return _pack(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json, 128)
