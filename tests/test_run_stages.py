"""`mmbert run`'s bookkeeping: which stages run again after a change or an interruption, and what a dry run writes.

The stages themselves are the real commands, run end to end in tests/test_end_to_end.py (minutes). Here the
subprocess that would run each one is replaced by one that creates the stage's result file (or fails on demand),
so that the decisions — reuse, run again, never trust a later stage built on an earlier stage's old output — are
checked over many runs in seconds.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from mmbert import run as run_module
from mmbert.cli import main

REPO = Path(__file__).resolve().parent.parent


class FakeStages:
    """Stands in for `subprocess.run` of the stage commands: records which stage ran, creates its result."""

    def __init__(self, recipe: dict, output: Path):
        self.results = {tuple(stage.command): (stage.name, stage.result)
                        for stage in run_module.plan_stages(recipe, output)}
        self.ran: list[str] = []
        self.fail: set[str] = set()

    def __call__(self, full, env=None, stdout=None):
        command = tuple(full[full.index("mmbert") + 1:])
        name, result = self.results[command]
        self.ran.append(name)
        if name in self.fail:
            return subprocess.CompletedProcess(full, 1)
        if result is not None:
            result.parent.mkdir(parents=True, exist_ok=True)
            result.touch()
        return subprocess.CompletedProcess(full, 0)


def write_recipe(tmp_path: Path, corpus_args: list[str], mixture: bool = False, temperature: float = 0.7) -> Path:
    recipe = {"output": str(tmp_path / "out"),
              "corpus": {"inputs": ["data/warc/udhr.warc.gz"], "args": corpus_args},
              "mixture": mixture,
              "train": {"recipe": str(REPO / "recipes/tiny-cpu.yaml"),
                        "overrides": [f"phases.0.temperature={temperature}"]}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(monkeypatch, path: Path, *flags: str, fail: set[str] = frozenset()) -> tuple[int, list[str]]:
    recipe = run_module.load_run_recipe(str(path))
    fake = FakeStages(recipe, Path(recipe["output"]))
    fake.fail = set(fail)
    monkeypatch.setattr(run_module.subprocess, "run", fake)
    return main(["run", str(path), *flags]), fake.ran


def test_a_stage_rebuilt_then_interrupted_never_lets_a_later_stage_be_reused(monkeypatch, tmp_path):
    recipe = write_recipe(tmp_path, ["--num-workers", "1"])
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran[:2] == ["corpus", "corpus-stats"] and ran[-1] == "eval"
    assert run(monkeypatch, recipe) == (0, [])  # everything reused
    # The corpus is rebuilt (its arguments changed), then packing fails: the run stops there.
    recipe = write_recipe(tmp_path, ["--num-workers", "2"])
    code, ran = run(monkeypatch, recipe, fail={"pack-64"})
    assert code == 1 and ran[-1] == "pack-64"
    # The next run must not reuse training, export or evaluation made from the old corpus.
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran == ["pack-64", "train", "export", "eval"]
    # Likewise after --force is interrupted in training: the training and what follows it run again.
    code, ran = run(monkeypatch, recipe, "--force", fail={"train"})
    assert code == 1 and ran[-1] == "train"
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran == ["train", "export", "eval"]


def test_a_dry_run_writes_nothing_and_sees_a_changed_mixture_schedule(monkeypatch, tmp_path, capsys):
    recipe = write_recipe(tmp_path, [], mixture=True)
    assert main(["run", str(recipe), "--dry-run"]) == 0
    assert not (tmp_path / "out").exists()
    assert run(monkeypatch, recipe)[0] == 0
    capsys.readouterr()
    # A new temperature changes the mixture's schedule (which the real run writes just before the stage runs).
    recipe = write_recipe(tmp_path, [], mixture=True, temperature=0.6)
    assert main(["run", str(recipe), "--dry-run"]) == 0
    planned = {line.split(":")[0].split("] ")[1]: line.split(": ")[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("[")}
    assert planned["corpus"] == "reuse" and planned["pack-64"] == "reuse"
    assert planned["mixture-64"] == "run" and planned["train"] == "run"
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran[0] == "mixture-64"
    assert "temperature: 0.6" in (tmp_path / "out" / "mixtures-64.schedule.yaml").read_text()


@pytest.mark.parametrize("change, message", [
    (lambda r: r["corpus"].update(args="--num-workers 2"), "corpus.args must be a list of strings"),
    (lambda r: r["train"].update(launcher="torchrun"), "train.launcher must be a list of strings"),
    (lambda r: r.update(eval={"tasks": ["mlm", "retreival"]}), "eval.tasks: unknown ['retreival']"),
    (lambda r: r.update(eval=["mlm"]), "eval must be a mapping"),
    (lambda r: r.update(output=None), "output must be a directory path"),
    (lambda r: r["train"].update(override=["optimizer.lr=5"]), "train: unknown key(s) override; known: launcher, "),
    (lambda r: r.update(eval={"task": ["retrieval"]}), "eval: unknown key(s) task; known: args, tasks"),
])
def test_run_recipes_of_the_wrong_shape_exit_2_before_any_stage(change, message, tmp_path, capsys):
    path = write_recipe(tmp_path, [])
    recipe = yaml.safe_load(path.read_text())
    change(recipe)
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_stage_without_an_output_runs_alone(monkeypatch, tmp_path):
    # The tokenizer stage (fetch-gemma2) makes nothing later stages read: running it again redoes nothing after it.
    recipe = write_recipe(tmp_path, [])
    assert run(monkeypatch, recipe)[0] == 0
    (tmp_path / "out" / ".stages" / "tokenizer.json").unlink()
    assert run(monkeypatch, recipe) == (0, ["tokenizer"])
    assert run(monkeypatch, recipe) == (0, [])
