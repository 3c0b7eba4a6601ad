"""Our model and transformers' ModernBertForMaskedLM compute the same logits on the same weights, both directions."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers

from mmbert.errors import UsageError
from tokenizer.special_tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS
from training.batches import document_ids_from_lengths
from training.hf import export_checkpoint, import_hf
from training.model import MaskedLM, ModelConfig

transformers = pytest.importorskip("transformers")

VOCAB = 320
TOLERANCE = dict(atol=1e-4, rtol=0)


def _word_tokenizer() -> Tokenizer:
    vocab = {**SPECIAL_TOKENS, **{f"w{i}": i for i in range(len(SPECIAL_TOKENS), VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def _model(**overrides) -> MaskedLM:
    """Tiny, but with mmBERT's real 128-token window and distinct RoPE bases, and non-trivial norms and bias."""
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, global_rope_theta=160_000.0, local_rope_theta=10_000.0)
    config = ModelConfig.named("tiny", **{**settings, **overrides})
    model = MaskedLM(config).eval()
    with torch.no_grad():
        model.decoder_bias.normal_(0, 0.5)
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1.0, 0.2)
    return model


def _write_checkpoint(model: MaskedLM, directory, tokenizer=None):
    directory.mkdir(parents=True)
    save_file(model.state_dict(), str(directory / "model.safetensors"))
    meta = {"model_config": model.config.to_dict(), "step": 7, "tokenizer": tokenizer}
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    root = tmp_path_factory.mktemp("hf")
    ckpt = _write_checkpoint(model, root / "ckpt")
    out = export_checkpoint(ckpt, root / "hf", tokenizer=_word_tokenizer())
    return model, out


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_exported_model_loads_in_transformers_with_equal_logits(exported, attn_implementation):
    model, out = exported
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out, attn_implementation=attn_implementation).eval()
    assert type(hf).__name__ == "ModernBertForMaskedLM"
    input_ids = torch.randint(5, VOCAB, (2, 300))  # longer than the 128-token window: local layers matter
    with torch.no_grad():
        ours = model(input_ids, torch.zeros_like(input_ids), attention="sdpa").logits
        theirs = hf(input_ids=input_ids).logits
    torch.testing.assert_close(ours, theirs, **TOLERANCE)


def test_packed_row_equals_each_document_alone_in_transformers(exported):
    model, out = exported
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out, attn_implementation="eager").eval()
    lengths = [40, 170, 60]  # the middle document is longer than the window
    input_ids = torch.randint(5, VOCAB, (1, 300))
    input_ids[0, sum(lengths):] = PAD_ID
    document_ids = document_ids_from_lengths([lengths], 300)
    with torch.no_grad():
        packed = {path: model(input_ids, document_ids, attention=path).logits[0] for path in ("sdpa", "naive", "flex")}
        start = 0
        for n in lengths:
            alone = hf(input_ids=input_ids[:, start : start + n]).logits[0]
            for logits in packed.values():
                torch.testing.assert_close(logits[start : start + n], alone, **TOLERANCE)
            start += n


def test_exported_tokenizer_files_name_the_special_tokens(exported):
    _, out = exported
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (tok.mask_token_id, tok.pad_token_id) == (MASK_ID, PAD_ID)
    assert (tok.cls_token, tok.sep_token) == ("<bos>", "<eos>")
    assert tok("w7 w9")["input_ids"] == [CLS_ID, 7, 9, SEP_ID]
    # No token types: transformers 4 would otherwise add token_type_ids, which ModernBERT's forward rejects.
    config = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["model_input_names"] == ["input_ids", "attention_mask"] and set(tok("w7")) == set(
        config["model_input_names"])


def test_import_round_trip(exported, tmp_path):
    model, out = exported
    config, state = import_hf(out)
    assert config == model.config
    reloaded = MaskedLM(config)
    reloaded.load_state_dict(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


def test_import_of_a_model_saved_by_transformers(tmp_path):
    hf_config = transformers.ModernBertConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=5, num_attention_heads=2,
        global_attn_every_n_layers=2, local_attention=32, global_rope_theta=80_000.0, local_rope_theta=5_000.0,
        pad_token_id=0, bos_token_id=2, eos_token_id=1, cls_token_id=2, sep_token_id=1,
    )
    torch.manual_seed(1)
    hf = transformers.ModernBertForMaskedLM(hf_config).eval()
    with torch.no_grad():
        hf.decoder.bias.normal_()
    hf.save_pretrained(tmp_path / "hf")
    config, state = import_hf(tmp_path / "hf")
    assert (config.global_every, config.local_window, config.global_rope_theta, config.local_rope_theta) == (
        2, 32, 80_000.0, 5_000.0)
    model = MaskedLM(config).eval()
    model.load_state_dict(state)
    input_ids = torch.randint(5, VOCAB, (1, 100))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids, torch.zeros_like(input_ids)).logits,
                                   hf(input_ids=input_ids).logits, **TOLERANCE)


def test_real_gemma2_tokenizer_is_exported(gemma2_tokenizer_json, tmp_path):
    model = _model(vocab_size=256_000, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=2)
    # Recorded the way the trainer records it: the shards' manifest entry.
    recorded = {"spec": "gemma2", "path": str(gemma2_tokenizer_json), "vocab_size": 256_000}
    ckpt = _write_checkpoint(model, tmp_path / "ckpt", tokenizer=recorded)
    out = export_checkpoint(ckpt, tmp_path / "hf")  # the checkpoint's recorded tokenizer
    tok = transformers.AutoTokenizer.from_pretrained(out)
    # As in training: [CLS] … [SEP] for one text, [CLS] A [SEP] B [SEP] for a pair.
    assert tok.mask_token_id == MASK_ID and tok("Hello world")["input_ids"] == [CLS_ID, 4521, 2134, SEP_ID]
    assert tok("Hello", "world")["input_ids"] == [CLS_ID, 4521, SEP_ID, 9097, SEP_ID]
    # A typed <mask> stands for a whole token, its space included, as in training (not a lone "▁" before it).
    word = tok("The capital of France is Paris.")["input_ids"]
    masked = tok("The capital of France is <mask>.")["input_ids"]
    assert masked == word[:6] + [MASK_ID] + word[7:] and len(word) == 9


def test_export_refuses_bad_input_and_writes_nothing(exported, tmp_path):
    model, out = exported
    with pytest.raises(UsageError, match="checkpoint.json is missing"):
        export_checkpoint(tmp_path, tmp_path / "out", tokenizer=_word_tokenizer())
    ckpt = _write_checkpoint(model, tmp_path / "ckpt")
    with pytest.raises(UsageError, match="already exists"):
        export_checkpoint(ckpt, out, tokenizer=_word_tokenizer())
    with pytest.raises(UsageError, match="records no tokenizer"):
        export_checkpoint(ckpt, tmp_path / "out")
    broken = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))
    with pytest.raises(UsageError, match="special tokens"):
        export_checkpoint(ckpt, tmp_path / "out", tokenizer=broken)
    wrong = ModelConfig.named("tiny", vocab_size=VOCAB, hidden_size=32).to_dict()
    (ckpt / "checkpoint.json").write_text(json.dumps({"model_config": wrong}))
    with pytest.raises(UsageError, match="does not match its model_config"):
        export_checkpoint(ckpt, tmp_path / "out", tokenizer=_word_tokenizer())
    assert not (tmp_path / "out").exists()


def test_import_refuses_unsupported_configs(exported, tmp_path):
    _, out = exported
    (tmp_path / "hf").mkdir()
    config = json.loads((out / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "hidden_activation": "silu"}))
    with pytest.raises(UsageError, match="hidden_activation"):
        import_hf(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UsageError, match="model_type"):
        import_hf(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="no model.safetensors"):
        import_hf(tmp_path / "hf")


def test_import_reads_the_transformers_4x_config_format(exported, tmp_path):
    """Released mmBERT/ModernBERT configs predate layer_types/rope_parameters: global_attn_every_n_layers and
    global_/local_rope_theta carry the same information."""
    model, out = exported
    (tmp_path / "hf").mkdir()
    config = json.loads((out / "config.json").read_text())
    del config["layer_types"], config["rope_parameters"]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    (tmp_path / "hf" / "model.safetensors").symlink_to(out / "model.safetensors")
    imported, _ = import_hf(tmp_path / "hf")
    assert imported == model.config
