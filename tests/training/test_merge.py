"""Checkpoint merging: averaging is the mean of the weights; TIES trims, elects signs and averages the agreeing."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmbert.errors import UsageError
from training.merge import merge_checkpoints, ties_merge
from training.model import MaskedLM, ModelConfig


def _checkpoint(directory, state, config=None, tokens_seen=0):
    directory.mkdir(parents=True)
    save_file(state, str(directory / "model.safetensors"))
    meta = {"model_config": config or {"name": "hand-made"}, "step": 3, "tokens_seen": tokens_seen,
            "tokenizer": "gemma2"}
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    return directory


def test_average_of_two_real_checkpoints_is_the_mean_and_loads(tmp_path):
    config = ModelConfig.named("tiny", vocab_size=50)
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(MaskedLM(config).state_dict())
    a = _checkpoint(tmp_path / "a", states[0], config.to_dict(), tokens_seen=10)
    b = _checkpoint(tmp_path / "b", states[1], config.to_dict(), tokens_seen=20)
    out = merge_checkpoints([a, b], tmp_path / "merged", method="average")
    merged = load_file(str(out / "model.safetensors"))
    for key in states[0]:
        torch.testing.assert_close(merged[key], (states[0][key] + states[1][key]) / 2)
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["model_config"] == config.to_dict() and meta["tokens_seen"] == 20
    assert meta["merge"]["method"] == "average"
    MaskedLM(ModelConfig.from_dict(meta["model_config"])).load_state_dict(merged)


def test_ties_on_hand_made_task_vectors(tmp_path):
    base = torch.zeros(6)
    # Coordinates: 0 all agree; 1 disagree, positive mass larger; 2 disagree, negative larger; 3 tiny moves; 4 only
    # one model moves; 5 two small positives outweighed by one large negative.
    t1 = torch.tensor([1.0, 3.0, 1.0, 0.01, 0.0, 0.6])
    t2 = torch.tensor([3.0, -1.0, -4.0, 0.01, 0.0, 0.6])
    t3 = torch.tensor([2.0, 2.0, 1.0, -0.01, 2.0, -2.0])
    merged = ties_merge([t1, t2, t3], base, density=5 / 6, weights=[1, 1, 1])
    # Density 5/6 drops each vector's smallest entry: coordinate 4 of t1 and t2, coordinate 3 of t3. Then each
    # coordinate averages the entries whose sign matches the sign of the sum, e.g. coordinate 1: mean(3, 2).
    expected = torch.tensor([2.0, 2.5, -4.0, 0.01, 2.0, -2.0])
    torch.testing.assert_close(merged, expected)
    assert torch.equal(torch.sign(merged), torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0, -1.0]))

    # Density 0.5 keeps the three largest entries of each vector: small coordinates vanish.
    sparse = ties_merge([t1, t2, t3], base, density=0.5, weights=[1, 1, 1])
    assert sparse[3] == 0.0
    assert torch.equal(torch.sign(sparse), torch.tensor([1.0, 1.0, -1.0, 0.0, 1.0, -1.0]))

    # Against a non-zero base the task vectors are differences; weights tilt the election.
    shifted = ties_merge([t1 + 5, t2 + 5, t3 + 5], base + 5, density=1.0, weights=[1, 1, 1])
    torch.testing.assert_close(shifted - 5, ties_merge([t1, t2, t3], base, 1.0, [1, 1, 1]))
    tilted = ties_merge([t1, t2], base, density=1.0, weights=[1, 10])
    assert tilted[1] == -1.0  # the heavier model's sign wins at the disagreeing coordinate


def test_ties_checkpoints_with_base(tmp_path):
    base = _checkpoint(tmp_path / "base", {"w": torch.zeros(4)})
    a = _checkpoint(tmp_path / "a", {"w": torch.tensor([1.0, -1.0, 2.0, 0.0])})
    b = _checkpoint(tmp_path / "b", {"w": torch.tensor([3.0, 2.0, -1.0, 0.0])})
    out = merge_checkpoints([a, b], tmp_path / "out", method="ties", density=1.0, base=base)
    assert load_file(str(out / "model.safetensors"))["w"].tolist() == [2.0, 2.0, 2.0, 0.0]
    assert json.loads((out / "checkpoint.json").read_text())["merge"]["base"] == str(base)


def test_a_ties_base_may_have_other_rope_bases_the_inputs_may_not(tmp_path):
    # A pre-training checkpoint (RoPE 10k) as the base of context-extended ones (160k); dropout never matters.
    base = _checkpoint(tmp_path / "base", {"w": torch.zeros(2)}, config={"global_rope_theta": 10_000.0})
    a = _checkpoint(tmp_path / "a", {"w": torch.ones(2)},
                    config={"global_rope_theta": 160_000.0, "attention_out_dropout": 0.1})
    b = _checkpoint(tmp_path / "b", {"w": torch.ones(2)}, config={"global_rope_theta": 160_000.0})
    out = merge_checkpoints([a, b], tmp_path / "out", method="ties", density=1.0, base=base)
    assert json.loads((out / "checkpoint.json").read_text())["model_config"]["global_rope_theta"] == 160_000.0
    with pytest.raises(UsageError, match=r"global_rope_theta differ"):
        merge_checkpoints([a, base], tmp_path / "other")


def test_merge_refuses_bad_input_and_writes_nothing(tmp_path):
    a = _checkpoint(tmp_path / "a", {"w": torch.zeros(2)})
    b = _checkpoint(tmp_path / "b", {"w": torch.zeros(3)}, config={"name": "other"})
    c = _checkpoint(tmp_path / "c", {"v": torch.zeros(2)})
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"a different model .*\(name differ\)"):
        merge_checkpoints([a, b], out)
    with pytest.raises(UsageError, match="different parameters"):
        merge_checkpoints([a, c], out)
    with pytest.raises(UsageError, match="at least two"):
        merge_checkpoints([a], out)
    with pytest.raises(UsageError, match="density"):
        merge_checkpoints([a, c], out, density=0)
    with pytest.raises(UsageError, match="unknown merge method"):
        merge_checkpoints([a, c], out, method="slerp")
    with pytest.raises(UsageError, match="weights"):
        merge_checkpoints([a, c], out, weights=[1.0])
    with pytest.raises(UsageError, match="not a complete checkpoint: checkpoint.json is missing"):
        merge_checkpoints([a, tmp_path], out)
    assert not out.exists()
