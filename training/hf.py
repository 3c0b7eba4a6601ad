"""Hugging Face both ways: a training checkpoint ⇄ a transformers `ModernBertForMaskedLM` directory.

Export — in: a checkpoint directory (`model.safetensors` + `checkpoint.json` with `model_config` and `tokenizer`);
out: a directory that `transformers.AutoModelForMaskedLM.from_pretrained(DIR)` loads as is: `config.json`,
`model.safetensors`, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`. The two models compute
the same logits (tests hold them to 1e-4 in fp32).

Import — in: an HF ModernBERT / mmBERT directory (config.json + safetensors); out: `(ModelConfig, state_dict)` that
`MaskedLM(config).load_state_dict(state_dict)` accepts, to continue training from a released model.

Parameter names are the same on both sides except the prefix `model.` for the encoder in transformers and the tied
decoder: here the decoder weight *is* the embedding matrix and only `decoder_bias` is stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mmbert.atomic import atomic_directory, check_output_directory
from mmbert.errors import UsageError
from tokenizer.special_tokens import CLS_ID, PAD_ID, SEP_ID, SPECIAL_TOKEN_ROLES
from training.checkpoint import META_FILE, MODEL_FILE, read_checkpoint_meta, read_weights
from training.model import ModelConfig

HF_ENCODER_PREFIX = "model."
# Wrappers that prefix parameter names when a model is saved from inside them (torch.compile, DDP).
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def hf_config(config: ModelConfig) -> dict:
    """config.json for transformers' ModernBertForMaskedLM, readable by transformers 4.48+ and 5.x alike."""
    layer_types = [
        "full_attention" if config.is_global(i) else "sliding_attention" for i in range(config.num_layers)
    ]
    return {
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "hidden_activation": "gelu",
        "max_position_embeddings": config.max_position_embeddings,
        "initializer_range": config.initializer_range,
        "initializer_cutoff_factor": config.initializer_cutoff_factor,
        "norm_eps": config.norm_eps,
        "norm_bias": False,
        "attention_bias": False,
        "mlp_bias": False,
        "decoder_bias": True,
        "classifier_activation": "gelu",
        "classifier_bias": False,
        "tie_word_embeddings": True,
        "local_attention": config.local_window,
        # transformers 5.x reads layer_types and rope_parameters; 4.x reads the three keys after them.
        "layer_types": layer_types,
        "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": config.global_rope_theta},
            "sliding_attention": {"rope_type": "default", "rope_theta": config.local_rope_theta},
        },
        "global_attn_every_n_layers": config.global_every,
        "global_rope_theta": config.global_rope_theta,
        "local_rope_theta": config.local_rope_theta,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.cls_token_id,
        "eos_token_id": config.sep_token_id,
        "cls_token_id": config.cls_token_id,
        "sep_token_id": config.sep_token_id,
        "torch_dtype": "float32",
    }


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        if key == "decoder_bias":
            out["decoder.bias"] = value
        elif key.startswith("head."):
            out[key] = value
        else:
            out[HF_ENCODER_PREFIX + key] = value
    return {k: v.contiguous() for k, v in out.items()}


def from_hf_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in hf_state.items():
        if key == "decoder.weight":
            continue  # tied: checked against the embeddings below
        if key == "decoder.bias":
            out["decoder_bias"] = value
        elif key.startswith("head."):
            out[key] = value
        elif key.startswith(HF_ENCODER_PREFIX):
            out[key[len(HF_ENCODER_PREFIX) :]] = value
        else:
            raise UsageError(f"unexpected parameter {key!r} in the checkpoint (not a ModernBertForMaskedLM?)")
    embeddings = out.get("embeddings.tok_embeddings.weight")
    if embeddings is None:
        raise UsageError("the Hugging Face checkpoint has no model.embeddings.tok_embeddings.weight")
    decoder = hf_state.get("decoder.weight")
    if decoder is not None and not torch.equal(decoder, embeddings):
        raise UsageError("the checkpoint's decoder.weight differs from its embeddings; only tied decoders work here")
    out.setdefault("decoder_bias", torch.zeros(embeddings.shape[0], dtype=embeddings.dtype))
    return out


def strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        for prefix in WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


# --- export ---------------------------------------------------------------------------------------------------------


def export_checkpoint(ckpt_dir, out_dir, tokenizer=None, overwrite: bool = False) -> Path:
    """Write a transformers ModernBertForMaskedLM directory from a training checkpoint; returns `out_dir`.

    `tokenizer`: a `tokenizers.Tokenizer`, or a spec `load_tokenizer` accepts ("gemma2", a tokenizer.json, …);
    None uses the one recorded in checkpoint.json. Everything is checked before the output appears, atomically.
    """
    from safetensors.torch import save_file

    ckpt_dir, out_dir = Path(ckpt_dir), Path(out_dir)
    meta_path, weights_path = ckpt_dir / META_FILE, ckpt_dir / MODEL_FILE
    meta = read_checkpoint_meta(ckpt_dir)
    check_output_directory(out_dir, overwrite, reads=[("checkpoint", ckpt_dir)])
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as err:
        raise UsageError(f"{meta_path}: bad model_config: {err}") from err
    state = to_hf_state_dict(read_weights(weights_path))
    _check_state(state, to_hf_state_dict(_model_state_names(config)), f"{weights_path} does not match its model_config")
    tok = _resolve_tokenizer(tokenizer if tokenizer is not None else _recorded_tokenizer(meta), meta_path)
    _check_tokenizer(tok, config)

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        (tmp / "config.json").write_text(json.dumps(hf_config(config), indent=2) + "\n", encoding="utf-8")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_tokenizer_files(tmp, tok, config)
    return out_dir


def _model_state_names(config: ModelConfig) -> dict[str, torch.Tensor]:
    from training.model import MaskedLM

    with torch.device("meta"):
        return MaskedLM(config).state_dict()


def _check_state(state: dict, expected: dict, problem: str) -> None:
    """Same parameter names and shapes, or a UsageError saying which differ."""
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise UsageError(f"{problem} (missing {missing[:5]}, unexpected {extra[:5]})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise UsageError(f"{problem}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")


def _recorded_tokenizer(meta: dict):
    """checkpoint.json's tokenizer: a spec string, or the shards' manifest entry {spec, path, sha256, vocab_size}
    (its file when still there, else its spec)."""
    recorded = meta.get("tokenizer")
    if isinstance(recorded, dict):
        path = recorded.get("path")
        recorded = path if path and Path(path).exists() else recorded.get("spec")
    return recorded


def _resolve_tokenizer(spec, where: Path):
    from tokenizers import Tokenizer

    if isinstance(spec, Tokenizer):
        return spec
    if not spec:
        raise UsageError(f"{where} records no tokenizer; pass one (e.g. --tokenizer gemma2 or a tokenizer.json)")
    from tokenizer.gemma import load_tokenizer

    return load_tokenizer(str(spec))


def _check_tokenizer(tok, config: ModelConfig) -> None:
    from tokenizer.special_tokens import check_special_ids

    problems = check_special_ids(tok)
    if problems:
        raise UsageError("the tokenizer's special tokens do not match the model's: " + "; ".join(problems))
    if tok.get_vocab_size() > config.vocab_size:
        raise UsageError(f"the tokenizer has {tok.get_vocab_size()} tokens but the model only {config.vocab_size}")


def _write_tokenizer_files(directory: Path, tok, config: ModelConfig) -> None:
    from tokenizers import Tokenizer, processors

    from tokenizer.train import save_for_transformers

    # Encoded as the model was trained: every document is [CLS] … [SEP] (tokenizer/pack.py), a pair [CLS] A [SEP] B
    # [SEP]; Gemma 2's own post-processor only adds <bos>. A copy: the caller's tokenizer stays as it was.
    tok = Tokenizer.from_str(tok.to_str())
    cls, sep = SPECIAL_TOKEN_ROLES["cls_token"], SPECIAL_TOKEN_ROLES["sep_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1", special_tokens=[(cls, CLS_ID), (sep, SEP_ID)])
    save_for_transformers(tok, directory, config.max_position_embeddings)  # as `tokenizer train` writes its own


# --- import ---------------------------------------------------------------------------------------------------------


def import_hf(hf_dir) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """An HF ModernBertForMaskedLM directory → (ModelConfig, state dict of training.model.MaskedLM)."""
    hf_dir = Path(hf_dir)
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{hf_dir} is not a Hugging Face model directory: config.json is missing")
    raw = json.loads(config_path.read_text(encoding="utf-8"))
    if raw.get("model_type") != "modernbert":
        raise UsageError(f"{config_path}: model_type is {raw.get('model_type')!r}, expected 'modernbert'")
    config = _config_from_hf(raw, config_path)
    state = from_hf_state_dict(_load_hf_weights(hf_dir))
    _check_state(state, _model_state_names(config), f"{hf_dir}: the weights do not match config.json")
    return config, {k: v.float() for k, v in state.items()}


def _config_from_hf(raw: dict, where: Path) -> ModelConfig:
    for key, supported in (
        ("hidden_activation", "gelu"), ("classifier_activation", "gelu"), ("norm_bias", False),
        ("attention_bias", False), ("mlp_bias", False), ("classifier_bias", False),
    ):
        if key in raw and raw[key] != supported:
            raise UsageError(f"{where}: {key}={raw[key]!r} is not supported (this model uses {supported!r})")
    if raw.get("tie_word_embeddings", True) is False:
        raise UsageError(f"{where}: tie_word_embeddings=false is not supported (the decoder is tied to the embeddings)")
    layers = raw["num_hidden_layers"]
    every = raw.get("global_attn_every_n_layers", 3)
    layer_types = raw.get("layer_types")
    if layer_types:
        globals_ = [i for i, kind in enumerate(layer_types) if kind == "full_attention"]
        every = globals_[1] - globals_[0] if len(globals_) > 1 else layers
        if [i for i in range(layers) if i % every == 0] != globals_:
            raise UsageError(f"{where}: layer_types {layer_types} is not 'global every n layers from layer 0'")
    rope = raw.get("rope_parameters") or {}
    global_theta = (rope.get("full_attention") or {}).get("rope_theta", raw.get("global_rope_theta", 160_000.0))
    local_theta = (rope.get("sliding_attention") or {}).get("rope_theta", raw.get("local_rope_theta", 10_000.0))
    for kind in ("full_attention", "sliding_attention"):
        rope_type = (rope.get(kind) or {}).get("rope_type", "default")
        if rope_type != "default":
            raise UsageError(f"{where}: rope_type {rope_type!r} for {kind} is not supported")
    try:
        return ModelConfig(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=layers,
            num_heads=raw["num_attention_heads"],
            global_every=every,
            local_window=raw.get("local_attention", 128),
            global_rope_theta=float(global_theta),
            local_rope_theta=float(local_theta),
            max_position_embeddings=raw.get("max_position_embeddings", 8192),
            norm_eps=raw.get("norm_eps", 1e-5),
            initializer_range=raw.get("initializer_range", 0.02),
            initializer_cutoff_factor=raw.get("initializer_cutoff_factor") or 2.0,
            pad_token_id=raw.get("pad_token_id", PAD_ID),
            cls_token_id=raw.get("cls_token_id", CLS_ID),
            sep_token_id=raw.get("sep_token_id", SEP_ID),
        )
    except KeyError as err:
        raise UsageError(f"{where}: missing key {err.args[0]!r}") from err
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from err


def _load_hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index = hf_dir / "model.safetensors", hf_dir / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(hf_dir / shard)))
        return state
    bin_path = hf_dir / "pytorch_model.bin"
    if bin_path.is_file():
        return torch.load(bin_path, map_location="cpu", weights_only=True)
    raise UsageError(f"{hf_dir} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
