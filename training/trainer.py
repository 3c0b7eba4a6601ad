"""The staged MLM training loop, top to bottom: config, data, model, optimizer, loop.

In: a validated `Recipe` (training/config.py), a run directory, optionally a checkpoint to resume from. Out:
`RUN/checkpoints/step-XXXXXXXX/` (training/checkpoint.py), `RUN/metrics.jsonl` (one line per logged step: loss, lr,
tokens/s, tokens seen in all and per language, phase, mask rate, …), TensorBoard events under `RUN/tensorboard/`
when tensorboard is installed, and a progress bar on the main process.

One step: the loader plans the global batch (same on every process) and hands each process its rows; rows are
masked with seeds of their own; each micro-batch's summed loss is divided by the number of masked tokens in the
whole global batch, so 1 process and N processes compute the same gradient; clip, step, log, maybe checkpoint.
Phases change the languages, τ, mask rate, sequence length and RoPE base between steps.

On a GPU the step is built never to wait for the device (training/step.py): batches are copied from pinned memory
without blocking, the prediction gather has a fixed capacity (static shapes: one per micro-batch size), and loss,
gradient norm and masked count stay on the device until a logged step reads them. So the host prepares batch n + 1
while the device runs batch n; `tokens_per_second` in metrics.jsonl is the rate since the previous logged line (or
checkpoint, whose writing it leaves out). `training.compile` (off, blocks, whole) applies training/compilation.py,
the same compilation the benchmark measures.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from mmbert.atomic import write_text_atomic
from mmbert.errors import RunFailed, UsageError
from training import checkpoint as ckpt
from training.batches import document_ids_from_lengths
from training.compilation import compile_model
from training.config import Recipe
from training.data import TrainLoader
from training.distributed import Distributed, all_reduce_sum, barrier, init_distributed, shutdown, wrap_model
from training.loss import IGNORE_INDEX
from training.masking import mask_batch
from training.model import PHASE_FIELDS, TRAINING_FIELDS, MaskedLM, ModelConfig
from training.optim import batch_size_at, build_optimizer, lr_at, set_lr
from training.step import prediction_rows, to_device, train_step

log = logging.getLogger(__name__)


def train(recipe: Recipe, run_dir: str | Path, resume: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) the recipe's phases to the end; returns a summary of the last step."""
    ctx = init_distributed(recipe.training.device, fsdp=recipe.training.fsdp)
    try:
        return _train(recipe, Path(run_dir), resume, progress, ctx)
    finally:
        shutdown()


def _train(recipe: Recipe, run_dir: Path, resume: str | None, progress: bool, ctx: Distributed) -> dict:
    resume_from = _check_run(recipe, run_dir, resume, ctx)  # checks that need no work
    loader = TrainLoader(recipe, ctx.rank, ctx.world_size)  # opens every phase's data, checks languages and lengths

    # ---- model
    config = _model_config(recipe, loader)
    torch.manual_seed(recipe.seed)  # the same initial weights on every process and every run
    model = MaskedLM(config)
    state = {"step": 0, "tokens_seen": 0, "tokens_per_language": {}}
    trainer_state: dict = {}
    if resume_from is not None:
        trainer_state = _restore(resume_from, config, model, loader)
        state = {key: trainer_state[key] for key in state}
        if ctx.is_main:
            log.info("resumed from %s (step %d)", resume_from, state["step"])
    model.to(ctx.device)
    precision = recipe.training.precision
    bf16 = precision in ("bf16", "bf16-residual") or (precision == "auto" and ctx.device.type == "cuda")
    fsdp = recipe.training.fsdp
    if precision == "bf16-residual" and not fsdp:  # under FSDP's bf16 policy the stream is bf16 anyway
        model.residual_dtype = torch.bfloat16
    # bf16 is autocast, or under FSDP its mixed-precision policy (bf16 weights and activations, fp32 master weights).
    outer = wrap_model(model, ctx, fsdp, param_dtype=torch.bfloat16 if bf16 and fsdp else None)
    wrapped = compile_model(model, recipe.training.compile, outer=outer)
    # Static shapes on the GPU and under torch.compile: the prediction gather has a fixed capacity per micro-batch
    # shape, so nothing waits for the device to say how many positions are masked, and the compiled graphs are one
    # per micro-batch size (a partial last micro-batch during batch-size warm-up adds a few, never one per batch).
    fixed_capacity = ctx.device.type == "cuda" or recipe.training.compile != "off"

    # ---- optimizer
    optimizer = build_optimizer(model, recipe.optimizer, fused=ctx.device.type == "cuda")  # one kernel, as torchtitan
    if trainer_state.get("optimizer"):
        _load_optimizer_state(model, optimizer, trainer_state, sharded=fsdp)

    # ---- the loop: no value is read back from the device except on logged steps, so the host prepares the next
    # batch while the device still runs this one
    metrics = MetricsWriter(run_dir, ctx.is_main, resume_step=state["step"] if resume_from else None)
    bar = _progress_bar(recipe.total_tokens, state["tokens_seen"], progress and ctx.is_main)
    last: dict = {}
    interval_start, interval_tokens = time.perf_counter(), 0
    if loader.finished and ctx.is_main:  # a finished run resumed: its loader state ends after the last phase
        log.warning("every phase had already finished at step %d: nothing to train (a changed recipe, e.g. a larger "
                    "budget, needs a new run directory)", state["step"])
    while not loader.finished:
        phase = loader.phase
        if (config.global_rope_theta, config.local_rope_theta) != (phase.rope_theta_global, phase.rope_theta_local):
            model.set_rope_theta(phase.rope_theta_global, phase.rope_theta_local)
        step, tokens_seen = state["step"], state["tokens_seen"]
        rows = batch_size_at(tokens_seen, recipe.batch)
        lr = lr_at(loader.schedule_tokens, phase.lr or recipe.optimizer.lr, recipe.schedule, recipe.total_tokens)
        set_lr(optimizer, lr)

        batch = loader.next_batch(rows)
        inputs, labels = mask_batch(batch.input_ids, phase.mask_rate, batch.row_seeds, config.vocab_size)
        document_ids = document_ids_from_lengths(batch.document_lengths, phase.seq_len)
        micro = phase.micro_size or recipe.batch.micro_size
        capacities = [prediction_rows(labels[start:start + micro], phase.mask_rate) if fixed_capacity else None
                      for start in range(0, labels.shape[0], micro)]
        local_predicted = torch.tensor(float((labels != IGNORE_INDEX).sum()), dtype=torch.float64)
        inputs, document_ids, labels, local_predicted = (
            to_device(t, ctx.device) for t in (inputs, document_ids, labels, local_predicted))
        loss, grad_norm, predicted = train_step(
            wrapped, model, optimizer, inputs, document_ids, labels, all_reduce_sum(local_predicted), capacities,
            micro=micro, ctx=ctx, autocast=bf16 and not fsdp, grad_clip=recipe.optimizer.grad_clip, fsdp=fsdp,
            dropout_seed=(recipe.seed, step), first_row=ctx.rank * (rows // ctx.world_size))

        step_tokens = rows * phase.seq_len
        state["step"], state["tokens_seen"] = step + 1, tokens_seen + step_tokens
        for language in batch.global_languages:
            state["tokens_per_language"][language] = state["tokens_per_language"].get(language, 0) + phase.seq_len
        interval_tokens += step_tokens
        if bar is not None:
            bar.update(step_tokens)
        if state["step"] % recipe.training.log_every == 0 or loader.finished:
            loss, grad_norm, predicted = float(loss), float(grad_norm), int(predicted)  # waits for the device
            now = time.perf_counter()
            tokens_per_second = interval_tokens / max(now - interval_start, 1e-9)
            interval_start, interval_tokens = now, 0
            last = {"step": state["step"], "phase": phase.name, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                    "batch_rows": rows, "seq_len": phase.seq_len, "mask_rate": phase.mask_rate,
                    "rope_theta": [phase.rope_theta_global, phase.rope_theta_local], "predicted": predicted,
                    "tokens_seen": state["tokens_seen"], "tokens_per_second": tokens_per_second}
            if ctx.device.type == "cuda":  # the most this process held since the previous logged line
                last["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2**30, 2)
                torch.cuda.reset_peak_memory_stats(ctx.device)
            metrics.write({**last, "tokens_per_language": dict(sorted(state["tokens_per_language"].items())),
                           "epochs": loader.epochs()})
            if bar is not None:
                bar.set_postfix(phase=phase.name, loss=f"{loss:.3f}", lr=f"{lr:.2e}", refresh=False)
            _stop_if_diverged(loss, state["step"])

        phase_ended = loader.finished or loader.phase_index != batch.phase_index
        if state["step"] % recipe.training.checkpoint_every == 0 or phase_ended:
            _stop_if_diverged(float(loss), state["step"])  # never checkpoint nan weights
            _save(run_dir, model, config, optimizer, loader, state, recipe, phase.name, ctx)
            interval_start, interval_tokens = time.perf_counter(), 0  # the rate is training's, not the writes
    if bar is not None:
        bar.close()
    metrics.close()
    return last


def _check_run(recipe: Recipe, run_dir: Path, resume: str | None, ctx: Distributed) -> Path | None:
    """Batch shape against the process count, the run directory, and the checkpoint to resume from (or None)."""
    b = recipe.batch
    for name, rows in (("batch.global_size", b.global_size), ("batch.warmup_min_size", b.warmup_min_size)):
        if rows and rows % ctx.world_size:
            raise UsageError(f"{name} ({rows}) must be a multiple of the number of processes ({ctx.world_size})")
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists() or p == Path(p.anchor or "."))
    if existing.exists() and not existing.is_dir():  # found now, not after the data and the model are loaded
        raise UsageError(f"--output {run_dir}: {existing} is a file; name a directory for the run")
    resume_from = ckpt.find_resume_checkpoint(run_dir, resume)
    if resume_from is None and ckpt.list_checkpoints(run_dir / "checkpoints"):
        raise UsageError(f"{run_dir} already has checkpoints: pass --resume auto to continue it, "
                         "or choose another --output")
    return resume_from


def _model_config(recipe: Recipe, loader: TrainLoader) -> ModelConfig:
    """The recipe's model, with the first phase's RoPE bases and the shards' vocabulary unless it sets them."""
    first = recipe.phases[0]
    overrides = {key: value for key, value in recipe.model.items() if key != "name"}
    overrides.setdefault("global_rope_theta", first.rope_theta_global)
    overrides.setdefault("local_rope_theta", first.rope_theta_local)
    if loader.vocab_size:
        overrides.setdefault("vocab_size", loader.vocab_size)
    try:
        config = ModelConfig.named(recipe.model["name"], **overrides)
    except (ValueError, TypeError) as error:
        raise UsageError(f"model: {error}") from None
    if loader.vocab_size and config.vocab_size < loader.vocab_size:
        raise UsageError(f"model.vocab_size {config.vocab_size} is smaller than the shards' tokenizer "
                         f"vocabulary ({loader.vocab_size})")
    longest = max(phase.seq_len for phase in recipe.phases)
    if config.max_position_embeddings < longest:  # the export records it, and evaluation caps its inputs there
        raise UsageError(f"model.max_position_embeddings {config.max_position_embeddings} is shorter than the "
                         f"longest phase's seq_len {longest}: set model.max_position_embeddings={longest}")
    return config


def _restore(resume_from: Path, config: ModelConfig, model: MaskedLM, loader: TrainLoader) -> dict:
    """Load a checkpoint's weights and loader position into the run; → its trainer state. UsageError when it is
    not a resumable checkpoint of this model."""
    weights, meta, trainer_state = ckpt.load_checkpoint(resume_from)
    if "loader" not in trainer_state:
        raise UsageError(f"{resume_from} holds weights but no training state (a merged checkpoint?): "
                         "it cannot be resumed")
    free = TRAINING_FIELDS | PHASE_FIELDS  # what phases and training settings change in one model
    differs = sorted(key for key, value in config.to_dict().items()
                     if key not in free and meta["model_config"].get(key) != value)
    if differs:
        raise UsageError(f"{resume_from} is a different model from the recipe's: " + ", ".join(
            f"{key} {meta['model_config'].get(key)!r} there, {getattr(config, key)!r} here" for key in differs))
    model.set_rope_theta(meta["model_config"]["global_rope_theta"], meta["model_config"]["local_rope_theta"])
    model.load_state_dict(weights)
    loader.load_state_dict(trainer_state["loader"])
    return trainer_state


def _stop_if_diverged(loss: float, step: int) -> None:
    if not math.isfinite(loss):  # the weights are lost too: every later step and checkpoint would carry them
        raise RunFailed(f"the loss is {loss} at step {step}; stopped before saving. Resume from the last checkpoint "
                        "with a lower optimizer.lr, or check model.norm_eps and the data")


def _save(run_dir, model, config, optimizer, loader, state, recipe, phase_name, ctx) -> None:
    if recipe.training.fsdp:  # parameters are sharded DTensors: gather full tensors first (a collective)
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        # On a group of one these CPU tensors may share storage with the live weights: fine while the save below is
        # synchronous (an asynchronous save would have to clone them first).
        model_state = get_model_state_dict(model, options=options)
        optimizer_state = get_optimizer_state_dict(model, optimizer, options=options)
    else:
        model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
    if ctx.is_main:
        meta = {"model_config": config.to_dict(), "phase": phase_name, "tokens_seen": state["tokens_seen"],
                "tokenizer": loader.tokenizer, "recipe": recipe.source, "recipe_name": recipe.name}
        trainer_state = {"optimizer": optimizer_state, "optimizer_format": "fqn" if recipe.training.fsdp
                         else "torch", "loader": loader.state_dict(), **state,
                         "world_size": ctx.world_size}
        ckpt.save_checkpoint(run_dir, state["step"], model_state, meta, trainer_state, recipe.training.keep_checkpoints)
    barrier()


def _load_optimizer_state(model, optimizer, trainer_state: dict, sharded: bool) -> None:
    """FSDP checkpoints hold the full optimizer state keyed by parameter name; DDP/single ones torch's own format."""
    saved_format = trainer_state.get("optimizer_format", "torch")
    if saved_format != ("fqn" if sharded else "torch"):
        raise UsageError(f"the checkpoint's optimizer state was saved {'with' if saved_format == 'fqn' else 'without'} "
                         "FSDP; resume it with the same training.fsdp setting")
    saved_sizes = [len(group["params"]) for group in trainer_state["optimizer"]["param_groups"]]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes != sizes:  # torch would raise a bare ValueError deep inside load_state_dict
        raise UsageError(f"the checkpoint's optimizer groups hold {saved_sizes} tensors (decayed, undecayed), "
                         f"this run's {sizes}: the weight-decay settings differ (optimizer.decay_norms_biases, "
                         "optimizer.decay_embeddings; checkpoints from before the embedding was decayed by default "
                         "resume with optimizer.decay_embeddings=false)")
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optimizer, trainer_state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    else:
        optimizer.load_state_dict(trainer_state["optimizer"])


def _progress_bar(total_tokens: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_tokens, initial=done, unit="tok", unit_scale=True, dynamic_ncols=True,
                desc="train", disable=None)


class MetricsWriter:
    """`RUN/metrics.jsonl` (+ TensorBoard when installed), main process only. A resumed run first drops the lines
    after the checkpoint it resumed from, so the file always reads as one uninterrupted run."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None):
        self.enabled, self.path, self.handle, self.tensorboard = enabled, run_dir / "metrics.jsonl", None, None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if _logged_step(line) <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            os.unlink(self.path)
        self.handle = self.path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.tensorboard is not None:
            step = record["step"]
            for key in ("loss", "lr", "grad_norm", "tokens_per_second", "tokens_seen", "batch_rows", "mask_rate",
                        "peak_memory_gib"):
                if key in record:
                    self.tensorboard.add_scalar(f"train/{key}", record[key], step)
            for language, tokens in record["tokens_per_language"].items():
                self.tensorboard.add_scalar(f"tokens_per_language/{language}", tokens, step)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; a blank line or one cut short by a kill mid-write sorts after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
