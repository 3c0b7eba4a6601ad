"""Tiny real encoders for the evaluation tests: random-init transformers models with the Gemma 2 vocabulary, a
project training checkpoint, and packed shards of the real UDHR corpus (held-out split for MLM)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tokenizer.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKEN_ROLES

SHARD_LANGUAGES = ["eng_Latn", "fra_Latn", "rus_Cyrl", "cmn_Hani", "arb_Arab"]


def write_tokenizer_files(directory: Path, tokenizer_json: Path, max_length: int = 512) -> None:
    shutil.copy(tokenizer_json, directory / "tokenizer.json")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **SPECIAL_TOKEN_ROLES}
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def save_tiny_modernbert(directory: Path, tokenizer_json: Path, seed: int = 0, uniform: bool = False) -> Path:
    """A 2-layer ModernBERT masked LM; `uniform` zeroes the head so every prediction is uniform over the vocab."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    torch.manual_seed(seed)
    config = ModernBertConfig(vocab_size=256_000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=512, global_attn_every_n_layers=1,
                              pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, cls_token_id=BOS_ID,
                              sep_token_id=EOS_ID)
    model = ModernBertForMaskedLM(config)
    if uniform:
        with torch.no_grad():
            model.head.norm.weight.zero_()  # the head's output is 0, so the logits are the (zero) decoder bias
            model.decoder.bias.zero_()
    model.save_pretrained(directory)
    write_tokenizer_files(directory, tokenizer_json)
    return directory


def save_tiny_xlmr(directory: Path, tokenizer_json: Path, seed: int = 1) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=256_000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, max_position_embeddings=514, pad_token_id=PAD_ID,
                              bos_token_id=BOS_ID, eos_token_id=EOS_ID)
    XLMRobertaForMaskedLM(config).save_pretrained(directory)
    write_tokenizer_files(directory, tokenizer_json)
    return directory


@pytest.fixture(scope="session")
def tiny_modernbert(tmp_path_factory, gemma2_tokenizer_json) -> Path:
    return save_tiny_modernbert(tmp_path_factory.mktemp("modernbert"), gemma2_tokenizer_json)


@pytest.fixture(scope="session")
def uniform_modernbert(tmp_path_factory, gemma2_tokenizer_json) -> Path:
    return save_tiny_modernbert(tmp_path_factory.mktemp("uniform"), gemma2_tokenizer_json, uniform=True)


@pytest.fixture(scope="session")
def swapped_vocab_modernbert(tmp_path_factory, gemma2_tokenizer_json) -> Path:
    """A tiny ModernBERT whose tokenizer is Gemma 2's with two tokens trading ids: same size, another vocabulary."""
    directory = tmp_path_factory.mktemp("swapped")
    document = json.loads(gemma2_tokenizer_json.read_text(encoding="utf-8"))
    vocab = document["model"]["vocab"]
    vocab["▁Hello"], vocab["▁world"] = vocab["▁world"], vocab["▁Hello"]
    (directory / "swapped.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    save_tiny_modernbert(directory / "model", directory / "swapped.json")
    return directory / "model"


@pytest.fixture(scope="session")
def tiny_xlmr(tmp_path_factory, gemma2_tokenizer_json) -> Path:
    return save_tiny_xlmr(tmp_path_factory.mktemp("xlmr"), gemma2_tokenizer_json)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, gemma2_tokenizer_json) -> Path:
    """A project training checkpoint (checkpoint.json + model.safetensors) of a random tiny model."""
    from safetensors.torch import save_file

    from training.model import MaskedLM, ModelConfig

    torch.manual_seed(2)
    config = ModelConfig.named("tiny", hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2)
    directory = tmp_path_factory.mktemp("run") / "step-00000010"
    directory.mkdir()
    save_file(MaskedLM(config).state_dict(), str(directory / "model.safetensors"))
    meta = {"model_config": asdict(config), "step": 10, "phase": "pretrain", "tokens_seen": 0,
            "tokenizer": str(gemma2_tokenizer_json), "recipe": {}}
    (directory / "checkpoint.json").write_text(json.dumps(meta), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def udhr_shards(tmp_path_factory, udhr_corpus_dir, gemma2_tokenizer_json) -> Path:
    """Packed shards of five UDHR languages, a fifth of each held out."""
    from tokenizer.pack import run_pack

    output = tmp_path_factory.mktemp("shards") / "shards"
    run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), 64, output, heldout_fraction=0.2,
             languages=SHARD_LANGUAGES)
    return output
