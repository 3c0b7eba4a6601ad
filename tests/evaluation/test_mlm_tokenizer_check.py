"""MLM refuses a model whose tokenizer is not the one the shards were packed with, even at the same size."""

from __future__ import annotations

import json
import shutil

from evaluation.mlm import evaluate_mlm
from evaluation.models import open_model
from tokenizer.vocab import vocab_digest


def test_the_shards_record_the_vocabulary_digest(udhr_shards, gemma2_tokenizer_json):
    from tokenizers import Tokenizer

    manifest = json.loads((udhr_shards / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tokenizer"]["vocab_sha256"] == vocab_digest(Tokenizer.from_file(str(gemma2_tokenizer_json)))


def test_same_size_but_another_vocabulary_is_skipped_with_the_reason(swapped_vocab_modernbert, tiny_modernbert,
                                                                    udhr_shards):
    with open_model(swapped_vocab_modernbert) as model:
        assert model.vocab_size == 256_000  # the size check alone lets it through
        results = evaluate_mlm(model, udhr_shards, ["fra_Latn"], positions=10, seed=0)
    assert [r.metric for r in results] == ["accuracy", "pseudo_perplexity"]
    for result in results:
        assert not result.ok and result.value is None
        assert "same size (256000 tokens)" in result.status and "different vocabulary" in result.status
    with open_model(tiny_modernbert) as model:  # the same tokenizer is scored
        assert all(r.ok for r in evaluate_mlm(model, udhr_shards, ["fra_Latn"], positions=10, seed=0))


def test_a_manifest_without_the_digest_is_checked_on_the_size_alone(swapped_vocab_modernbert, udhr_shards,
                                                                   tmp_path):
    older = tmp_path / "shards"
    shutil.copytree(udhr_shards, older)
    manifest = json.loads((older / "manifest.json").read_text(encoding="utf-8"))
    del manifest["tokenizer"]["vocab_sha256"]  # as `tokenizer pack` wrote it before the digest
    (older / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with open_model(swapped_vocab_modernbert) as model:
        results = evaluate_mlm(model, older, ["fra_Latn"], positions=10, seed=0)
    assert all(r.ok and r.n == 10 for r in results)
