"""Recipes: the shipped ones parse, and every mistake is named by its key before anything runs (exit status 2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mmbert.cli import main
from mmbert.errors import UsageError
from training.config import apply_overrides, load_recipe, parse_recipe, parse_tokens
from training.model import MaskedLM, ModelConfig
from training.optim import batch_size_at, lr_at, parameter_groups

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_shipped_recipes_parse_and_mirror_mmbert():
    tiny = load_recipe(RECIPES / "tiny-cpu.yaml")
    assert [phase.name for phase in tiny.phases] == ["pretrain", "mid_training", "decay"]
    for name, mask, warmup in (("mmbert-small", 0.3, 4_000_000_000), ("mmbert-base", 0.25, 3_000_000_000)):
        recipe = load_recipe(RECIPES / f"{name}.yaml")
        assert recipe.model["name"] == name
        assert [p.mask_rate for p in recipe.phases] == [mask, 0.15, 0.05]
        assert [p.temperature for p in recipe.phases] == [0.7, 0.5, 0.3]
        assert [p.seq_len for p in recipe.phases] == [1024, 8192, 8192]
        assert [p.rope_theta_global for p in recipe.phases] == [10_000, 160_000, 160_000]
        assert [p.budget for p in recipe.phases] == [2_300_000_000_000, 600_000_000_000, 100_000_000_000]
        assert recipe.optimizer.lr == 8e-4 and recipe.optimizer.betas == (0.9, 0.95)
        assert recipe.schedule.warmup_tokens == warmup
        assert recipe.batch.global_size == 4608
        assert recipe.training.compile == "blocks"  # `compile: true`: regional compilation
    assert tiny.training.compile == "off"
    assert parse_recipe(apply_overrides(base(), ["training.compile=whole"])).training.compile == "whole"


def base() -> dict:
    return {"model": {"name": "tiny"}, "data": {"shards": "out/shards"},
            "phases": [{"name": "p", "top": 2, "temperature": 0.7, "budget": "10K", "mask_rate": 0.3,
                        "seq_len": 64}]}


@pytest.mark.parametrize("change, message", [
    (lambda d: d["optimizer"].update(weight_decy=1), r"optimizer: unknown key 'weight_decy' \(did you mean 'weight_decay'"),
    (lambda d: d["phases"][0].update(mask_rate=1.5), r"phases\[0\]\.mask_rate: must be between 0 and 1"),
    (lambda d: d["phases"][0].pop("budget"), r"phases\[0\]\.budget: required"),
    (lambda d: d["phases"][0].update(budget="lots"), r"phases\[0\]\.budget: expected a number of tokens"),
    (lambda d: d["phases"][0].update(temperature=0), r"phases\[0\]\.temperature: must be > 0"),
    (lambda d: d["phases"][0].pop("top"), r"phases\[0\]: name the phase's languages"),
    (lambda d: d["schedule"].update(decay_shape="cosine"), r"schedule\.decay_shape: must be one of linear, 1-sqrt"),
    (lambda d: d["schedule"].update(decay_tokens="1M"), r"schedule: warmup_tokens \+ decay_tokens"),
    (lambda d: d["batch"].update(global_size="eight"), r"batch\.global_size: expected a whole number"),
    (lambda d: d["data"].pop("shards"), r"data\.shards: required"),
    (lambda d: d.update(phases=[]), r"phases: a non-empty list"),
    (lambda d: d["training"].update(device="tpu"), r"training\.device: must be auto, cpu or cuda"),
    (lambda d: d["training"].update(compile="fast"), r"training\.compile: must be true, false or one of off, blocks"),
])
def test_errors_name_the_key(change, message):
    document = {"optimizer": {}, "schedule": {}, "batch": {}, "training": {}, **base()}
    change(document)
    with pytest.raises(UsageError, match=message):
        parse_recipe(document)


def test_overrides_and_token_counts():
    document = apply_overrides(base(), ["optimizer.lr=1e-3", "phases.0.budget=2.5K", "training.device=cpu"])
    recipe = parse_recipe(document)
    assert recipe.optimizer.lr == 1e-3 and recipe.phases[0].budget == 2500 and recipe.training.device == "cpu"
    assert parse_tokens("100000000000tok", "x") == 100_000_000_000 and parse_tokens("2.3T", "x") == 2_300_000_000_000
    with pytest.raises(UsageError, match="phases has no item 3"):
        apply_overrides(base(), ["phases.3.budget=1"])
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        apply_overrides(base(), ["optimizer.lr"])


def test_schedules_are_functions_of_tokens():
    recipe = parse_recipe({**base(), "schedule": {"warmup_tokens": 1000, "decay_tokens": 4000,
                                                   "decay_shape": "linear", "final_lr_ratio": 0.1},
                           "batch": {"global_size": 48, "warmup_tokens": 1000, "warmup_min_size": 6}})
    s, total = recipe.schedule, recipe.total_tokens
    assert lr_at(0, 1.0, s, total) == pytest.approx(0.001)
    assert lr_at(999, 1.0, s, total) == pytest.approx(1.0)
    assert lr_at(5000, 1.0, s, total) == 1.0
    assert lr_at(8000, 1.0, s, total) == pytest.approx(1 - 0.9 * 0.5)
    assert lr_at(10_000, 1.0, s, total) == pytest.approx(0.1)
    s.decay_shape = "1-sqrt"
    assert lr_at(7000, 1.0, s, total) == pytest.approx(1 - 0.9 * 0.25 ** 0.5)
    sizes = [batch_size_at(tokens, recipe.batch) for tokens in range(0, 1200, 100)]
    assert sizes[0] == 6 and sizes[-1] == 48 and sizes == sorted(sizes) and all(size % 6 == 0 for size in sizes)


def test_batch_size_warm_up_holds_each_size_for_the_same_number_of_steps():
    # ModernBERT's BatchSizeWarmupScheduler (mmBERT's): 48, 96, … rows, equally many steps each, so the batch grows
    # with the square root of the tokens (a linear ramp in tokens spends most steps at the smallest sizes)
    recipe = parse_recipe({**base(), "batch": {"global_size": 480, "warmup_tokens": 10_000_000, "warmup_min_size": 48}})
    steps, tokens, seq_len = Counter(), 0, 1024
    while tokens < recipe.batch.warmup_tokens:
        rows = batch_size_at(tokens, recipe.batch)
        steps[rows] += 1
        tokens += rows * seq_len
    assert sorted(steps) == list(range(48, 480, 48)) and batch_size_at(tokens, recipe.batch) == 480
    assert max(steps.values()) - min(steps.values()) <= 1, steps
    assert batch_size_at(recipe.batch.warmup_tokens // 4, recipe.batch) == 240  # a quarter of the way: half size


def test_cli_exits_2_on_a_bad_recipe(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: tiny}\ndata: {shards: x}\nphases: [{name: p, top: 1, temperature: 0.7, "
                   "budget: 1K, mask_rate: 2, seq_len: 64}]\n")
    assert main(["train", "--config", str(bad), "--output", str(tmp_path / "run")]) == 2
    assert "phases[0].mask_rate" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "optimizer.lr=-1"]) == 2
    capsys.readouterr()
    # Overrides after an option are overrides too; anything else unknown is still an error.
    assert main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--output", str(tmp_path / "run"),
                 "optimizer.lr=-1"]) == 2
    assert "optimizer.lr: must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--output", str(tmp_path / "run"), "--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_weight_decay_follows_mmberts_filter_bias_norm_wd():
    # timm's rule, which ModernBERT's trainer applies: 1-D tensors (norms, biases) are not decayed; every matrix is,
    # the tied embedding/decoder matrix included.
    model = MaskedLM(ModelConfig.named("tiny"))
    groups = {group["name"]: {id(p) for p in group["params"]} for group in parameter_groups(model, 0.1)}
    for name, param in model.named_parameters():
        assert (id(param) in groups["decay"]) == (param.ndim >= 2), name
    assert id(model.embeddings.tok_embeddings.weight) in groups["decay"]
    kept = parameter_groups(model, 0.1, decay_embeddings=False)
    assert id(model.embeddings.tok_embeddings.weight) in {id(p) for p in kept[1]["params"]}
    everything = parameter_groups(model, 0.1, decay_norms_biases=True)
    assert len(everything[0]["params"]) == len(list(model.parameters())) and not everything[1]["params"]
