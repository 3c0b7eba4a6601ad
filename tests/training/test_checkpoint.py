"""Checkpoints: atomic, keep-last-N, `latest`, resume lookup, and nothing unpickled beyond plain data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from mmbert.errors import UsageError
from training.checkpoint import (find_resume_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint)
from training.config import OptimizerConfig
from training.model import MaskedLM, ModelConfig
from training.optim import build_optimizer
from training.trainer import MetricsWriter


@pytest.fixture()
def trained():
    torch.manual_seed(0)
    model = MaskedLM(ModelConfig.named("tiny", vocab_size=512, hidden_size=16, intermediate_size=32, num_layers=2,
                                       num_heads=2))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3))
    ids = torch.randint(5, 512, (2, 16))
    model(ids, torch.zeros_like(ids), ids).loss.backward()
    optimizer.step()
    return model, optimizer


def save(run: Path, step: int, model, optimizer, keep: int = 3, extra=None) -> Path:
    state = {"optimizer": optimizer.state_dict(), "loader": {"phase_index": 0, "streams": {"x:eng_Latn": [0, 3]}},
             "step": step, **(extra or {})}
    meta = {"model_config": model.config.to_dict(), "phase": "pretrain", "tokens_seen": step * 10}
    return save_checkpoint(run, step, model.state_dict(), meta, state, keep)


def test_round_trip_with_weights_only(tmp_path, trained):
    model, optimizer = trained
    path = save(tmp_path, 7, model, optimizer)
    assert path.name == "step-00000007"
    assert sorted(p.name for p in path.iterdir()) == ["checkpoint.json", "model.safetensors", "trainer_state.pt"]
    weights, meta, state = load_checkpoint(path)
    assert meta["step"] == 7 and meta["model_config"]["hidden_size"] == 16
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor)
    restored = build_optimizer(model, OptimizerConfig(lr=1e-3))
    restored.load_state_dict(state["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert state["loader"]["streams"]["x:eng_Latn"] == [0, 3]


def test_keep_last_n_and_latest(tmp_path, trained):
    for step in (2, 4, 6, 8, 10):
        save(tmp_path, step, *trained, keep=3)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [
        "step-00000006", "step-00000008", "step-00000010"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000010"
    assert find_resume_checkpoint(tmp_path, "auto").name == "step-00000010"
    assert find_resume_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "step-00000008")).name == "step-00000008"
    assert find_resume_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "latest")).name == "step-00000010"
    assert find_resume_checkpoint(tmp_path / "fresh", "auto") is None
    with pytest.raises(UsageError, match="not a checkpoint directory"):
        find_resume_checkpoint(tmp_path, str(tmp_path / "nothing-here"))


def test_a_run_resumed_from_an_older_step_keeps_its_own_newest(tmp_path, trained):
    for step in (7, 14, 21, 28):
        save(tmp_path, step, *trained, keep=3)
    for step in (14, 21):  # resumed from step 7: 14, 21 and 28 of the replaced run are not this run's
        save(tmp_path, step, *trained, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000014", "step-00000021"]


def test_a_killed_save_leaves_nothing_behind_after_the_next(tmp_path, trained):
    directory = tmp_path / "checkpoints"
    (directory / ".step-00000004.abc123.tmp").mkdir(parents=True)  # what SIGKILL during a save leaves
    (directory / ".step-00000004.abc123.tmp" / "model.safetensors").write_bytes(b"half")
    save(tmp_path, 4, *trained)
    assert sorted(p.name for p in directory.iterdir()) == ["latest", "step-00000004"]


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, trained):
    save(tmp_path, 5, *trained)
    with pytest.raises(Exception):
        save(tmp_path, 6, *trained, extra={"unsaveable": lambda: None})  # torch.save cannot pickle a lambda
    directory = tmp_path / "checkpoints"
    assert [p.name for p in list_checkpoints(directory)] == ["step-00000005"]
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # the temporary directory is gone
    assert find_resume_checkpoint(tmp_path, "auto").name == "step-00000005"
    load_checkpoint(directory / "step-00000005")


class Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_trainer_state_is_never_unpickled_beyond_plain_data(tmp_path, trained):
    path = save(tmp_path, 1, *trained)
    with open(path / "trainer_state.pt", "wb") as handle:
        pickle.dump({"optimizer": Payload()}, handle, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_resumed_metrics_drop_later_lines_and_a_line_cut_short(tmp_path):
    lines = [json.dumps({"step": step, "loss": 1.0}) for step in (1, 2, 3)] + ['{"step": 4, "lo']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")  # killed mid-write at step 4
    MetricsWriter(tmp_path, enabled=True, resume_step=2).close()
    assert (tmp_path / "metrics.jsonl").read_text(encoding="utf-8") == lines[0] + "\n" + lines[1] + "\n"


def test_a_damaged_checkpoint_json_is_a_usage_error_for_every_reader(tmp_path, trained):
    from training.hf import export_checkpoint
    from training.merge import merge_checkpoints

    checkpoint = save(tmp_path, 2, *trained)
    other = save(tmp_path / "other", 2, *trained)
    readers = {"load": lambda: load_checkpoint(checkpoint),
               "export": lambda: export_checkpoint(checkpoint, tmp_path / "hf", tokenizer="gemma2"),
               "merge": lambda: merge_checkpoints([checkpoint, other], tmp_path / "merged")}
    for damage, message in (("{not json", "checkpoint.json is not valid JSON"),
                            ('{"step": 2}', "checkpoint.json has no model_config")):
        (checkpoint / "checkpoint.json").write_text(damage, encoding="utf-8")
        for name, read in readers.items():
            with pytest.raises(UsageError, match=message):
                read()
    (checkpoint / "model.safetensors").unlink()
    for name, read in readers.items():
        with pytest.raises(UsageError, match="is not a complete checkpoint: model.safetensors is missing"):
            read()
    assert not (tmp_path / "hf").exists() and not (tmp_path / "merged").exists()


def test_export_and_merge_refuse_an_output_that_would_delete_their_checkpoints(tmp_path, trained):
    from training.hf import export_checkpoint
    from training.merge import merge_checkpoints

    first, second = save(tmp_path / "run", 2, *trained), save(tmp_path / "run", 4, *trained, keep=3)
    for output in (tmp_path / "run", first):  # the run holding the checkpoint, or the checkpoint itself
        with pytest.raises(UsageError, match="must not be or hold the checkpoint it reads"):
            export_checkpoint(first, output, tokenizer="gemma2", overwrite=True)
        with pytest.raises(UsageError, match="must not be or hold the checkpoint it reads"):
            merge_checkpoints([first, second], output, overwrite=True)
    assert load_checkpoint(first)[1]["model_config"] and load_checkpoint(second)[1]["model_config"]
    with pytest.raises(UsageError, match=r"weights must be 2 non-negative numbers"):
        merge_checkpoints([first, second], tmp_path / "merged", method="average", weights=[float("nan"), 1.0])


def test_weights_cut_short_are_named_by_every_reader(tmp_path, trained):
    from training.hf import export_checkpoint
    from training.merge import merge_checkpoints

    checkpoint, other = save(tmp_path, 2, *trained), save(tmp_path / "other", 2, *trained)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for read in (lambda: load_checkpoint(checkpoint),
                 lambda: export_checkpoint(checkpoint, tmp_path / "hf", tokenizer="gemma2"),
                 lambda: merge_checkpoints([checkpoint, other], tmp_path / "merged")):
        with pytest.raises(UsageError, match="model.safetensors: not a readable safetensors file"):
            read()
