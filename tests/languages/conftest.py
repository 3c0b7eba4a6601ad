"""Fixtures of the languages tests: real UDHR text packed with the real Gemma 2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKED_SEQ_LEN = 64  # short rows, so that each of the ~40 UDHR languages has dozens of them


@pytest.fixture(scope="session")
def udhr_packed_shards(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json) -> Path:
    """Packed shards (`mmbert tokenizer pack` format) of the UDHR corpus fixture, 64 tokens per row."""
    from tokenizer.pack import run_pack

    output = tmp_path_factory.mktemp("udhr_packed") / "shards"
    run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), PACKED_SEQ_LEN, output, heldout_fraction=0.05,
             num_workers=1)
    return output
