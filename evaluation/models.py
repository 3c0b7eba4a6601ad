"""Open any encoder on disk for evaluation: a project checkpoint or a Hugging Face directory, loaded offline.

In:  `--model PATH`: a training checkpoint (`checkpoint.json` + `model.safetensors`, exported to a temporary
     transformers directory with `training.hf.export_checkpoint`), a run directory (its `checkpoints/latest`), or any
     transformers encoder directory (`config.json`, weights, tokenizer files).
Out: an `EncoderUnderTest`: the tokenizer, the masked-LM model when the directory has an MLM head, the encoder, and
     two operations every task needs — `embed(texts)` (mean-pooled hidden states) and `masked_token_logits(...)`.

Inputs are built the way the project pre-trains: `[CLS] tokens… [SEP]` (for XLM-R that is `<s> … </s>`), one text
per sequence, never packed, so every model sees documents alone whatever its attention supports.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from evaluation.metrics import mean_pool
from mmbert.errors import UsageError

HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass
class EncoderUnderTest:
    name: str
    directory: Path  # the transformers directory actually loaded (a temporary export for checkpoints)
    tokenizer: object  # transformers tokenizer
    mlm: torch.nn.Module | None  # *ForMaskedLM, or None when the directory has no MLM head
    encoder: torch.nn.Module  # the base model: input_ids, attention_mask → last_hidden_state
    max_length: int
    batch_size: int = 32
    device: torch.device = torch.device("cpu")
    precision: str = "float32"  # or "bfloat16": inference weights in bfloat16, fine-tuning under autocast

    def autocast(self):
        """Mixed precision for training a float32 copy: bfloat16 autocast when asked for, else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    @property
    def cls_id(self) -> int:
        return _first_id(self.tokenizer, "cls_token_id", "bos_token_id")

    @property
    def sep_id(self) -> int:
        return _first_id(self.tokenizer, "sep_token_id", "eos_token_id")

    @property
    def pad_id(self) -> int:
        return _first_id(self.tokenizer, "pad_token_id")

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens, truncated to leave room for [CLS] and [SEP]."""
        if not texts:  # transformers' fast tokenizers fail on an empty batch
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [ids[: self.max_length - 2] for ids in encoded]

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many of `texts` are longer than a single input holds (max_length - 2 tokens) and get cut."""
        if not texts:
            return 0
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return sum(len(ids) > self.max_length - 2 for ids in encoded)

    def wrap(self, ids: Sequence[int], pair: Sequence[int] | None = None) -> list[int]:
        """[CLS] ids [SEP], or [CLS] ids [SEP] pair [SEP], within max_length. A pair is cut longest-first (as
        transformers' `truncation=True`), so a long first text never pushes out the second text or the last [SEP]."""
        if pair is None:
            return [self.cls_id, *ids[: self.max_length - 2], self.sep_id]
        ids, pair = truncate_longest_first(ids, pair, self.max_length - 3)
        return [self.cls_id, *ids, self.sep_id, *pair, self.sep_id]

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, T) input ids and attention mask, on the model's device."""
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, : len(sequence)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    def hidden_states(self, sequences: Sequence[Sequence[int]], layer: int = -1) -> torch.Tensor:
        """Mean-pooled hidden states (N, H) of full input sequences, batched longest-first for little padding.
        `layer` indexes transformers' hidden_states: 0 the embeddings, L (or -1) the last layer."""
        self.check_layer(layer)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        pooled: list[torch.Tensor | None] = [None] * len(sequences)
        for start in range(0, len(order), self.batch_size):
            batch = order[start: start + self.batch_size]
            input_ids, attention_mask = self.pad([sequences[i] for i in batch])
            output = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  output_hidden_states=layer != -1)
            hidden = output.last_hidden_state if layer == -1 else output.hidden_states[layer]
            for i, vector in zip(batch, mean_pool(hidden.float(), attention_mask).cpu()):
                pooled[i] = vector
        return torch.stack(pooled) if pooled else torch.empty(0)

    def check_layer(self, layer: int) -> None:
        layers = self.encoder.config.num_hidden_layers
        if not -(layers + 1) <= layer <= layers:
            raise UsageError(f"layer {layer} does not exist: {self.name} has hidden states 0 (embeddings) to "
                             f"{layers} (or -1 for the last)")

    @torch.no_grad()
    def embed(self, texts: Sequence[str], layer: int = -1) -> torch.Tensor:
        """(N, H) mean-pooled embeddings of `[CLS] text [SEP]`."""
        return self.hidden_states([self.wrap(ids) for ids in self.token_ids(texts)], layer)

    def masked_token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            positions: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) at one position per row (`positions`: (B,), on the model's device); the vocabulary projection
        is computed only there.

        A 256k vocabulary makes full (B, T, V) logits gigabytes; a hook hands the MLM head only the hidden states
        of the asked positions (the heads of BERT-style models are position-wise, so this is exact).
        """
        if self.mlm is None:
            raise UsageError(f"{self.name} has no masked-LM head")
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)

        def keep_asked_positions(module, args, output):
            output["last_hidden_state"] = output["last_hidden_state"][rows, positions].unsqueeze(0)  # (1, B, H)
            return output

        handle = self.mlm.base_model.register_forward_hook(keep_asked_positions)
        try:
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            handle.remove()
        if logits.shape[:2] != (1, input_ids.shape[0]):  # the head did not see the hook's selection
            raise RuntimeError(f"{self.name}: unexpected masked-LM output shape {tuple(logits.shape)}")
        return logits[0]


def truncate_longest_first(first: Sequence[int], second: Sequence[int], budget: int
                           ) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer text, one at a time (the second on a tie, as transformers does),
    until both fit in `budget` tokens together."""
    first, second = list(first), list(second)
    while len(first) + len(second) > max(budget, 0):
        (first if len(first) > len(second) else second).pop()
    return first, second


def _first_id(tokenizer, *names: str) -> int:
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise UsageError(f"the model's tokenizer defines none of {', '.join(names)}")


def resolve_model_path(path: str | Path) -> tuple[Path, str]:
    """PATH → (directory, kind) with kind "checkpoint" or "hf"; a run directory, or its `checkpoints/latest` file,
    resolves to the latest checkpoint (the one `latest` names, else the newest complete one, as `mmbert train
    --resume auto` and `mmbert export` find it)."""
    from training.checkpoint import LATEST, META_FILE, MODEL_FILE, latest_checkpoint

    path = Path(path)
    if not path.exists():
        raise UsageError(f"model directory not found: {path}")
    if path.name == LATEST and path.is_file():
        path = path.parent.parent
    path = latest_checkpoint(path / "checkpoints") or path
    if (path / META_FILE).is_file():
        if not (path / MODEL_FILE).is_file():
            raise UsageError(f"{path}: checkpoint without {MODEL_FILE}")
        return path, "checkpoint"
    if (path / "config.json").is_file():
        if not any((path / name).is_file() for name in HF_WEIGHT_FILES):
            raise UsageError(f"{path}: config.json but no weights ({', '.join(HF_WEIGHT_FILES)})")
        return path, "hf"
    raise UsageError(f"{path} is neither a project checkpoint (checkpoint.json + model.safetensors) nor a "
                     f"Hugging Face model directory (config.json)")


def pick_device(name: str | None = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps"), else the first GPU when there is one, else the CPU."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise UsageError(f"--device: {error}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def open_model(path: str | Path, tokenizer: str | None = None, name: str | None = None,
               max_length: int = 512, batch_size: int = 32, device: str | None = None,
               precision: str = "float32") -> Iterator[EncoderUnderTest]:
    """Load the model at `path` (see the module docstring); a checkpoint's temporary export is removed afterwards."""
    directory, kind = resolve_model_path(path)
    name = name or _default_name(Path(path), directory)
    with contextlib.ExitStack() as stack:
        if kind == "checkpoint":
            from training.hf import export_checkpoint

            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mmbert-eval-")))
            directory = export_checkpoint(directory, scratch / "model", tokenizer=tokenizer)
            tokenizer = None  # the export carries it
        model = _load_hf(directory, name, tokenizer, max_length, batch_size, pick_device(device))
        model.precision = precision
        if precision == "bfloat16":
            (model.mlm or model.encoder).to(torch.bfloat16)  # the encoder is part of the MLM model when there is one
        yield model


def _default_name(given: Path, directory: Path) -> str:
    given = given.resolve()
    return given.name if given == directory.resolve() else f"{given.name}/{directory.name}"


def _load_hf(directory: Path, name: str, tokenizer_spec: str | None, max_length: int, batch_size: int,
             device: torch.device) -> EncoderUnderTest:
    import transformers
    from transformers import AutoModel, AutoModelForMaskedLM

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = _load_tokenizer(directory, tokenizer_spec)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    has_mlm_head = any(arch.endswith("ForMaskedLM") for arch in config.get("architectures") or [])
    try:
        if has_mlm_head:
            mlm = AutoModelForMaskedLM.from_pretrained(directory, local_files_only=True)
            encoder = mlm.base_model
        else:
            mlm = None
            encoder = AutoModel.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{directory}: transformers cannot load this model: {error}") from None
    for module in (mlm, encoder):
        if module is not None:
            module.to(device).eval()
    limits = [max_length, getattr(encoder.config, "max_position_embeddings", max_length)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return EncoderUnderTest(name, directory, tokenizer, mlm, encoder, min(limits), batch_size, device)


def _load_tokenizer(directory: Path, spec: str | None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if spec is not None:  # a project tokenizer spec (gemma2, a tokenizer.json, …) with the project's special roles
        from tokenizer.gemma import load_tokenizer
        from tokenizer.special_tokens import SPECIAL_TOKEN_ROLES

        return PreTrainedTokenizerFast(tokenizer_object=load_tokenizer(spec), **SPECIAL_TOKEN_ROLES)
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        raise UsageError(f"{directory}: no usable tokenizer ({error}); pass --tokenizer") from None


def backend_tokenizer(model: EncoderUnderTest):
    """The `tokenizers.Tokenizer` behind the model's tokenizer (what fertility measures)."""
    backend = getattr(model.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UsageError(f"{model.name}: fertility needs a fast (tokenizers) tokenizer")
    return backend
