"""Training checkpoints: written whole or not at all, read without unpickling anything.

In: the model's state dict, checkpoint metadata and the trainer state (optimizer, loader position, counters).
Out: `RUN/checkpoints/step-XXXXXXXX/` with

    model.safetensors   the model's weights (safetensors: no code runs when they are read)
    checkpoint.json     model_config, step, phase, tokens_seen, tokenizer, recipe
    trainer_state.pt    optimizer, loader position, counters: tensors, numbers and strings, read with weights_only

and `RUN/checkpoints/latest` (a text file naming the newest). Each directory is built under a temporary name and
renamed into place, and `latest` is replaced atomically after it, so a kill at any moment leaves the previous
checkpoint intact. Only the newest `keep` checkpoints are kept; after a resume from an older step, the newer ones of
the replaced run are removed at the first save, as are temporary directories a killed save left.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmbert.atomic import atomic_directory, write_text_atomic
from mmbert.errors import UsageError

MODEL_FILE, META_FILE, STATE_FILE, LATEST = "model.safetensors", "checkpoint.json", "trainer_state.pt", "latest"
log = logging.getLogger(__name__)


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(run_dir: str | Path, step: int, model_state: dict, meta: dict, trainer_state: dict,
                    keep: int) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, then delete all but the newest `keep`."""
    directory = Path(run_dir) / "checkpoints"
    target = directory / checkpoint_name(step)
    for leftover in [*directory.glob(".step-*.tmp"), *directory.glob(".step-*.old-*")]:  # from a killed save
        shutil.rmtree(leftover, ignore_errors=True)
    with atomic_directory(target, overwrite=True) as tmp:
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model_state.items()}
        save_file(tensors, tmp / MODEL_FILE, metadata={"format": "pt"})
        (tmp / META_FILE).write_text(json.dumps({**meta, "step": step}, indent=2, default=str) + "\n",
                                     encoding="utf-8")
        torch.save(trainer_state, tmp / STATE_FILE)
    write_text_atomic(directory / LATEST, target.name + "\n")
    existing = list_checkpoints(directory)
    # Newer checkpoints belong to the run this one replaced by resuming from an older step: not this run's history.
    abandoned = [path for path in existing if path.name > target.name]
    if abandoned:
        log.warning("removing %d checkpoints after step %d, left by the run this resumed run replaces: %s",
                    len(abandoned), step, ", ".join(path.name for path in abandoned))
    for old in abandoned + [path for path in existing if path.name <= target.name][:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoint directories (temporary ones are hidden by their leading dot), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("step-*") if (path / META_FILE).is_file())


def find_resume_checkpoint(run_dir: str | Path, resume: str | None, option: str = "--resume") -> Path | None:
    """`--resume auto` → the run's latest checkpoint or None; a path → that checkpoint, the one a `latest` file
    names, or a run directory's latest."""
    if not resume:
        return None
    if resume == "auto":
        return latest_checkpoint(Path(run_dir) / "checkpoints")
    path = Path(resume)
    if (path / META_FILE).is_file():
        return path
    if path.name == LATEST and path.is_file():  # RUN/checkpoints/latest: the checkpoint it names
        found = latest_checkpoint(path.parent)
        if found is not None:
            return found
    for candidate in (path / "checkpoints", path):
        found = latest_checkpoint(candidate)
        if found is not None:
            return found
    raise UsageError(f"{option} {resume}: not a checkpoint directory (no {META_FILE}) nor a run with checkpoints")


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / LATEST
    if pointer.is_file():
        named = directory / pointer.read_text(encoding="utf-8").strip()
        if (named / META_FILE).is_file():
            return named
    existing = list_checkpoints(directory)  # `latest` missing or stale: fall back on the newest complete one
    return existing[-1] if existing else None


def read_checkpoint_meta(path: str | Path) -> dict:
    """checkpoint.json of a checkpoint directory, checked: UsageError when the weights or the metadata are missing,
    the JSON is unreadable or it has no model_config (what train, export, merge and eval all need)."""
    path = Path(path)
    for name in (META_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise UsageError(f"{path} is not a complete checkpoint: {name} is missing")
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path / META_FILE} is not valid JSON: {error}") from None
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise UsageError(f"{path / META_FILE} has no model_config")
    return meta


def read_weights(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; UsageError naming the file when it is damaged (a copy cut short)."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as error:
        raise UsageError(f"{path}: not a readable safetensors file ({error})") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict, dict]:
    """→ (model state dict, checkpoint.json, trainer state). The trainer state is unpickled with weights_only."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    model_state = read_weights(path / MODEL_FILE, device=str(map_location))
    state_path = path / STATE_FILE
    trainer_state = torch.load(state_path, map_location=map_location, weights_only=True) if state_path.is_file() else {}
    return model_state, meta, trainer_state
