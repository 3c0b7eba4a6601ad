"""Training recipes: a YAML file → validated dataclasses, with every error naming its key before anything runs.

In: a recipe path (and `key=value` overrides from the command line). Out: a `Recipe`. A recipe reads like mmBERT's
published configs, one file for the whole staged run:

    seed: 0
    model: {name: tiny, hidden_size: 32}       # a ModelConfig name plus any ModelConfig field overrides
    data:
      shards: out/shards                        # packed shards (`mmbert tokenizer pack`); relative to the cwd
      skip_missing_languages: false             # true: phase languages without shards are dropped with a warning
    batch: {global_size: 16, micro_size: 8, warmup_tokens: 0, warmup_min_size: 8}
    optimizer: {lr: 3.0e-3, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 8.0e-5, grad_clip: 1.0}
    schedule: {warmup_tokens: 5K, decay_tokens: 20K, decay_shape: 1-sqrt, final_lr_ratio: 0.02}
    phases:
      - name: pretrain
        budget: 50K                             # tokens (rows × seq_len); K/M/B/T suffixes allowed
        languages: [eng_Latn, fra_Latn]         # or top: N, mmbert: pretrain, languages_file: … (languages.schedule)
        temperature: 0.7
        mask_rate: 0.3
        seq_len: 64
        rope_theta: 10000                       # or {global: 160000, local: 160000}
        shards: out/shards-64                   # optional, per phase; default data.shards
        mixture: out/mix/pretrain               # optional: a materialised phase mixture, read in order
        lr: 4.0e-4                              # optional: this phase's peak lr (default optimizer.lr)
        micro_size: 8                           # optional: this phase's micro-batch (default batch.micro_size)
    training: {device: auto, precision: auto, compile: false, log_every: 1, checkpoint_every: 50, keep_checkpoints: 3}

Overrides are dotted paths with YAML values: `optimizer.lr=1e-3`, `phases.0.budget=10K`, `training.device=cpu`;
`phases.0.top=null` removes a key (to name `phases.0.languages=[eng_Latn, fra_Latn]` instead).
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from languages.sampling import parse_token_count
from mmbert.errors import UsageError, read_yaml_mapping
from tokenizer.shards import MIN_SEQ_LEN
from training.compilation import COMPILE_MODES

# Keys a recipe phase passes through to `languages.schedule.parse_phase` (language set, τ, budget, epoch cap).
LANGUAGE_PHASE_KEYS = ("name", "temperature", "languages", "languages_file", "top", "mmbert", "budget", "max_epochs",
                       "description")
DECAY_SHAPES = ("linear", "1-sqrt")


@dataclass
class DataConfig:
    shards: str = ""
    skip_missing_languages: bool = False


@dataclass
class BatchConfig:
    global_size: int = 8  # rows per optimizer step, over all processes
    micro_size: int = 8  # rows per forward pass on one process; gradient accumulation makes up the rest
    warmup_tokens: int = 0  # batch-size warm-up: grow from warmup_min_size to global_size over this many tokens
    warmup_min_size: int = 0


@dataclass
class OptimizerConfig:
    lr: float = 8e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    # Decoupled weight decay (Loshchilov & Hutter, as mmBERT's decoupled AdamW): per step, w ← w·(1 − wd·lr/peak_lr).
    weight_decay: float = 8e-5
    decay_norms_biases: bool = False  # False: mmBERT's filter_bias_norm_wd (no decay on 1-D tensors)
    decay_embeddings: bool = True  # the tied embedding/decoder matrix is decayed, as in ModernBERT and mmBERT
    grad_clip: float = 1.0  # max global grad norm; 0 turns clipping off


@dataclass
class ScheduleConfig:
    """Warmup–stable–decay, over tokens: linear warm-up, constant, then decay over the run's last decay_tokens."""

    warmup_tokens: int = 0
    decay_tokens: int = 0
    decay_shape: str = "1-sqrt"
    final_lr_ratio: float = 0.02  # lr at the very end, as a fraction of the peak (mmBERT's alpha_f)


@dataclass
class PhaseConfig:
    name: str
    budget: int  # tokens, counted as rows × seq_len
    temperature: float
    mask_rate: float
    seq_len: int
    rope_theta_global: float
    rope_theta_local: float
    language_spec: dict  # the keys for languages.schedule.parse_phase, resolved against the shards by the loader
    shards: str | None = None
    mixture: str | None = None
    lr: float | None = None  # this phase's peak learning rate (default optimizer.lr)
    micro_size: int | None = None  # this phase's micro-batch (default batch.micro_size): long rows need smaller


PRECISIONS = ("auto", "fp32", "bf16", "bf16-residual")


@dataclass
class TrainingConfig:
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU; bf16-residual: also a bf16 residual stream
    compile: str = "off"  # off | blocks (regional torch.compile; YAML true) | whole (training/compilation.py)
    fsdp: bool = False
    log_every: int = 1
    checkpoint_every: int = 100  # steps; a checkpoint is also written at the end of every phase
    keep_checkpoints: int = 3
    output: str = ""  # run directory; default out/runs/<recipe name>


@dataclass
class Recipe:
    name: str
    seed: int
    model: dict  # {"name": ..., field overrides...}
    data: DataConfig
    batch: BatchConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    phases: list[PhaseConfig]
    training: TrainingConfig
    source: dict = field(default_factory=dict)  # the recipe as read (after overrides), stored in checkpoints

    @property
    def total_tokens(self) -> int:
        return sum(phase.budget for phase in self.phases)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------------------------
# Loading


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe; UsageError naming the key and the problem on anything unusable."""
    path = Path(path)
    document = read_yaml_mapping(path, "recipe")
    document = apply_overrides(document, overrides)
    return parse_recipe(document, name=path.stem, where=str(path))


def apply_overrides(document: dict, overrides) -> dict:
    """`a.b=1`, `phases.0.budget=10K`: set a (possibly new) key; the value is parsed as YAML; `a.b=null` removes b."""
    document = copy.deepcopy(document)
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r}: expected KEY=VALUE, e.g. optimizer.lr=1e-3")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node: Any = document
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise UsageError(f"override {dotted}: {'.'.join(keys[:depth])} has no item {key}")
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last and value is None:
                    node.pop(key, None)
                elif last:
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
            else:
                raise UsageError(f"override {dotted}: {'.'.join(keys[:depth])} is not a mapping or a list")
    return document


def parse_recipe(document: dict, name: str = "recipe", where: str = "recipe") -> Recipe:
    _check_keys(document, ("seed", "model", "data", "batch", "optimizer", "schedule", "phases", "training",
                           "description"), where)
    seed = _int(document.get("seed", 0), f"{where}: seed", minimum=0)
    model = document.get("model")
    if isinstance(model, str):
        model = {"name": model}
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise UsageError(f"{where}: model: expected a mapping with a 'name' (mmbert-small, mmbert-base, tiny)")
    data = _section(document, "data", DataConfig, where)
    if not data.shards:
        raise UsageError(f"{where}: data.shards: required (a packed-shards directory from `mmbert tokenizer pack`)")
    batch = _section(document, "batch", BatchConfig, where, token_keys=("warmup_tokens",))
    optimizer = _section(document, "optimizer", OptimizerConfig, where)
    schedule = _section(document, "schedule", ScheduleConfig, where, token_keys=("warmup_tokens", "decay_tokens"))
    training_raw = document.get("training")
    if isinstance(training_raw, dict) and isinstance(training_raw.get("compile"), bool):  # YAML true/false
        document = {**document, "training": {**training_raw, "compile": "blocks" if training_raw["compile"] else "off"}}
    training = _section(document, "training", TrainingConfig, where)
    phases_raw = document.get("phases")
    if not isinstance(phases_raw, list) or not phases_raw:
        raise UsageError(f"{where}: phases: a non-empty list of phases is required")
    phases = [_parse_phase(entry, f"{where}: phases[{index}]") for index, entry in enumerate(phases_raw)]
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names):
        raise UsageError(f"{where}: phases: names must be unique, got {names}")
    recipe = Recipe(name, seed, model, data, batch, optimizer, schedule, phases, training, source=document)
    _validate(recipe, where)
    return recipe


def parse_tokens(value: Any, where: str) -> int:
    """10000, 1e4, "10K", "2.3T", "100000000000tok" (mmBERT's spelling) → an integer number of tokens."""
    try:
        return parse_token_count(value)
    except ValueError as error:
        raise UsageError(f"{where}: {error}") from None


def _parse_phase(entry: Any, where: str) -> PhaseConfig:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a mapping, got {type(entry).__name__}")
    own = ("mask_rate", "seq_len", "rope_theta", "shards", "mixture", "lr", "micro_size")
    _check_keys(entry, own + LANGUAGE_PHASE_KEYS, where)
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}.name: a non-empty string is required")
    for key in ("budget", "temperature", "mask_rate", "seq_len"):
        if key not in entry:
            raise UsageError(f"{where}.{key}: required")
    budget = parse_tokens(entry["budget"], f"{where}.budget")
    if budget <= 0:
        raise UsageError(f"{where}.budget: must be > 0 tokens")
    temperature = _float(entry["temperature"], f"{where}.temperature")
    if not temperature > 0:
        raise UsageError(f"{where}.temperature: must be > 0, got {temperature}")
    mask_rate = _float(entry["mask_rate"], f"{where}.mask_rate")
    if not 0 < mask_rate < 1:
        raise UsageError(f"{where}.mask_rate: must be between 0 and 1 (exclusive), got {mask_rate}")
    seq_len = _int(entry["seq_len"], f"{where}.seq_len", minimum=MIN_SEQ_LEN)  # what `tokenizer pack` can make
    rope = entry.get("rope_theta", 10_000.0)
    if isinstance(rope, dict):
        _check_keys(rope, ("global", "local"), f"{where}.rope_theta")
        rope_global = _float(rope.get("global", 10_000.0), f"{where}.rope_theta.global")
        rope_local = _float(rope.get("local", rope_global), f"{where}.rope_theta.local")
    else:
        rope_global = rope_local = _float(rope, f"{where}.rope_theta")
    if rope_global <= 0 or rope_local <= 0:
        raise UsageError(f"{where}.rope_theta: must be > 0")
    for key in ("shards", "mixture"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise UsageError(f"{where}.{key}: expected a directory path, got {entry[key]!r}")
    lr = None if entry.get("lr") is None else _float(entry["lr"], f"{where}.lr")
    if lr is not None and not lr > 0:
        raise UsageError(f"{where}.lr: must be > 0, got {lr}")
    micro = None if entry.get("micro_size") is None else _int(entry["micro_size"], f"{where}.micro_size", minimum=1)
    language_spec = {key: entry[key] for key in LANGUAGE_PHASE_KEYS if key in entry}
    language_spec["budget"] = budget
    if entry.get("mixture") is None and not any(
            key in entry for key in ("languages", "languages_file", "top", "mmbert")):
        raise UsageError(f"{where}: name the phase's languages (languages, languages_file, top or mmbert) "
                         "or a materialised mixture (mixture)")
    return PhaseConfig(name, budget, temperature, mask_rate, seq_len, rope_global, rope_local, language_spec,
                       entry.get("shards"), entry.get("mixture"), lr, micro)


def _validate(recipe: Recipe, where: str) -> None:
    b, o, s, t = recipe.batch, recipe.optimizer, recipe.schedule, recipe.training
    if b.global_size < 1 or b.micro_size < 1:
        raise UsageError(f"{where}: batch.global_size and batch.micro_size must be >= 1")
    if b.warmup_tokens and not 1 <= b.warmup_min_size <= b.global_size:
        raise UsageError(f"{where}: batch.warmup_min_size: must be between 1 and batch.global_size "
                         f"({b.global_size}) when batch.warmup_tokens is set, got {b.warmup_min_size}")
    if b.warmup_tokens and b.global_size % b.warmup_min_size:
        raise UsageError(f"{where}: batch.global_size ({b.global_size}) must be a multiple of batch.warmup_min_size "
                         f"({b.warmup_min_size}): warm-up batch sizes are multiples of it")
    if not o.lr > 0:
        raise UsageError(f"{where}: optimizer.lr: must be > 0, got {o.lr}")
    if len(o.betas) != 2 or not all(0 <= beta < 1 for beta in o.betas):
        raise UsageError(f"{where}: optimizer.betas: expected two numbers in [0, 1), got {list(o.betas)}")
    if o.eps <= 0 or o.weight_decay < 0 or o.grad_clip < 0:
        raise UsageError(f"{where}: optimizer: eps must be > 0, weight_decay and grad_clip >= 0")
    if s.decay_shape not in DECAY_SHAPES:
        raise UsageError(f"{where}: schedule.decay_shape: must be one of {', '.join(DECAY_SHAPES)}, "
                         f"got {s.decay_shape!r}")
    if not 0 <= s.final_lr_ratio <= 1:
        raise UsageError(f"{where}: schedule.final_lr_ratio: must be in [0, 1], got {s.final_lr_ratio}")
    if s.warmup_tokens + s.decay_tokens > recipe.total_tokens:
        raise UsageError(f"{where}: schedule: warmup_tokens + decay_tokens ({s.warmup_tokens + s.decay_tokens}) "
                         f"exceed the phases' total budget ({recipe.total_tokens})")
    if t.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"{where}: training.device: must be auto, cpu or cuda, got {t.device!r}")
    if t.precision not in PRECISIONS:
        raise UsageError(f"{where}: training.precision: must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.compile not in COMPILE_MODES:
        raise UsageError(f"{where}: training.compile: must be true, false or one of {', '.join(COMPILE_MODES)}, "
                         f"got {t.compile!r}")
    if t.log_every < 1 or t.checkpoint_every < 1 or t.keep_checkpoints < 1:
        raise UsageError(f"{where}: training: log_every, checkpoint_every and keep_checkpoints must be >= 1")


# --------------------------------------------------------------------------------------------------------------------
# Small typed readers


def _section(document: dict, key: str, cls, where: str, token_keys: tuple[str, ...] = ()):
    raw = document.get(key) or {}
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: {key}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    _check_keys(raw, tuple(known), f"{where}: {key}")
    values = {}
    for name, value in raw.items():
        label = f"{where}: {key}.{name}"
        default = getattr(cls(), name)
        if name in token_keys:
            values[name] = parse_tokens(value, label)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise UsageError(f"{label}: expected true or false, got {value!r}")
            values[name] = value
        elif isinstance(default, int):
            values[name] = _int(value, label)
        elif isinstance(default, float):
            values[name] = _float(value, label)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise UsageError(f"{label}: expected a list, got {value!r}")
            values[name] = tuple(_float(item, label) for item in value)
        else:
            if not isinstance(value, str):
                raise UsageError(f"{label}: expected a string, got {value!r}")
            values[name] = value
    return cls(**values)


def _check_keys(mapping: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; allowed: {', '.join(allowed)}"
            raise UsageError(f"{where}: unknown key {key!r}{hint}")


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise UsageError(f"{where}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{where}: must be >= {minimum}, got {value}")
    return int(value)


def _float(value: Any, where: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: expected a finite number, got {value!r}")
    return float(value)
