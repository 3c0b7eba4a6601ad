"""`tokenizer.vocab.vocab_digest`: the same for a tokenizer and its `mmbert export` copy, different for another
vocabulary of the same size (that pack writes it: tests/evaluation/test_mlm_tokenizer_check.py)."""

from __future__ import annotations

import json
from dataclasses import asdict

import torch
from tokenizers import Tokenizer

from tokenizer.vocab import vocab_digest


def swapped_ids_tokenizer_json(gemma2_json, destination):
    """Gemma 2's tokenizer.json with two ordinary tokens trading ids: same size, different vocabulary."""
    document = json.loads(gemma2_json.read_text(encoding="utf-8"))
    vocab = document["model"]["vocab"]
    first, second = "▁Hello", "▁world"
    vocab[first], vocab[second] = vocab[second], vocab[first]
    destination.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return destination


def test_the_digest_sees_ids_not_just_the_size(gemma2_tokenizer_json, tmp_path):
    gemma = Tokenizer.from_file(str(gemma2_tokenizer_json))
    swapped = Tokenizer.from_file(str(swapped_ids_tokenizer_json(gemma2_tokenizer_json, tmp_path / "t.json")))
    assert gemma.get_vocab_size() == swapped.get_vocab_size()
    assert gemma.encode("Hello world").ids != swapped.encode("Hello world").ids
    assert vocab_digest(gemma) != vocab_digest(swapped)
    assert vocab_digest(gemma) == vocab_digest(Tokenizer.from_file(str(gemma2_tokenizer_json)))
    assert len(vocab_digest(gemma)) == 64 and int(vocab_digest(gemma), 16) >= 0


def test_an_exported_model_has_the_raw_tokenizer_s_digest_though_its_file_differs(gemma2_tokenizer_json, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from tokenizer.gemma import file_sha256
    from training.hf import export_checkpoint
    from training.model import MaskedLM, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig.named("tiny", hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    checkpoint = tmp_path / "step-00000001"
    checkpoint.mkdir()
    save_file(MaskedLM(config).state_dict(), str(checkpoint / "model.safetensors"))
    meta = {"model_config": asdict(config), "step": 1, "phase": "pretrain", "tokens_seen": 0,
            "tokenizer": str(gemma2_tokenizer_json), "recipe": {}}
    (checkpoint / "checkpoint.json").write_text(json.dumps(meta), encoding="utf-8")
    exported = export_checkpoint(checkpoint, tmp_path / "hf")

    # export rewrites tokenizer.json (post-processor, …): the file's sha256 is no way to match the two.
    assert file_sha256(exported / "tokenizer.json") != file_sha256(gemma2_tokenizer_json)
    raw = vocab_digest(Tokenizer.from_file(str(gemma2_tokenizer_json)))
    assert vocab_digest(Tokenizer.from_file(str(exported / "tokenizer.json"))) == raw
    loaded = AutoTokenizer.from_pretrained(exported, local_files_only=True)  # as `mmbert eval` loads it
    assert vocab_digest(loaded.backend_tokenizer) == raw
