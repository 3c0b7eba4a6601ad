"""`mmbert run`'s bookkeeping: which stages run again after a change or an interruption, and what a dry run writes.

The stages themselves are the real commands, run end to end in tests/test_end_to_end.py (minutes). Here the
subprocess that would run each one is replaced by one that creates the stage's result file (or fails on demand),
so that the decisions — reuse, run again, never trust a later stage built on an earlier stage's old output — are
checked over many runs in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mmbert import run as run_module
from mmbert.cli import main

REPO = Path(__file__).resolve().parent.parent


class FakeStages:
    """Stands in for `run_stage` of the stage commands: records which stage ran, creates its result."""

    def __init__(self, recipe: dict, output: Path):
        self.results = {tuple(stage.command): (stage.name, stage.result)
                        for stage in run_module.plan_stages(recipe, output)}
        self.ran: list[str] = []
        self.fail: set[str] = set()

    def __call__(self, full, env=None, stdout=None) -> int:
        command = tuple(full[full.index("mmbert") + 1:])
        name, result = self.results[command]
        self.ran.append(name)
        if name in self.fail:
            return 1
        if result is not None:
            result.parent.mkdir(parents=True, exist_ok=True)
            result.touch()
        return 0


def write_recipe(tmp_path: Path, corpus_args: list[str], mixture: bool = False, temperature: float = 0.7,
                 inputs=("data/warc/udhr.warc.gz",), overrides=()) -> Path:
    recipe = {"output": str(tmp_path / "out"),
              "corpus": {"inputs": list(inputs), "args": corpus_args},
              "mixture": mixture,
              "train": {"recipe": str(REPO / "recipes/tiny-cpu.yaml"),
                        "overrides": [f"phases.0.temperature={temperature}", *overrides]}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run(monkeypatch, path: Path, *flags: str, fail: set[str] = frozenset()) -> tuple[int, list[str]]:
    recipe = run_module.load_run_recipe(str(path))
    fake = FakeStages(recipe, Path(recipe["output"]))
    fake.fail = set(fail)
    monkeypatch.setattr(run_module, "run_stage", fake)
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
    # files named by the recipe are checked before hours of corpus building, not at the stage that reads them
    (lambda r: r["train"].update(recipe=5), "train.recipe must name an existing training recipe"),
    (lambda r: r.update(schedule="recipes/phases-exampel.yaml"), "schedule: file not found"),
    (lambda r: r.update(tokenizer="nope/tokenizer.json"), "not found"),
    (lambda r: r["train"].update(launcher=["no-such-launcher-mmbert"]), "neither on PATH nor beside this Python"),
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


def test_redoing_a_report_redoes_nothing_that_does_not_read_it(monkeypatch, tmp_path):
    # A deleted plot used to count as "an earlier stage ran": pack, training (the run directory deleted) and all
    recipe = write_recipe(tmp_path, [])
    assert run(monkeypatch, recipe)[0] == 0
    (tmp_path / "out" / "reports" / "corpus.png").unlink()
    assert run(monkeypatch, recipe) == (0, ["corpus-stats"])


def test_a_phase_languages_file_is_an_input_of_the_mixture_and_the_training(monkeypatch, tmp_path):
    languages = tmp_path / "langs.txt"
    languages.write_text("eng_Latn\nfra_Latn\n")
    recipe = write_recipe(tmp_path, [], mixture=True, overrides=["phases.0.top=null",
                                                                 f"phases.0.languages_file={languages}"])
    assert run(monkeypatch, recipe)[0] == 0
    assert run(monkeypatch, recipe) == (0, [])
    languages.write_text("rus_Cyrl\ncmn_Hani\n")  # the file's contents, not its name, are what the phase trains on
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran == ["mixture-64", "train", "export", "eval"]


def test_a_stage_built_from_an_earlier_output_that_was_rebuilt_since_runs_again(monkeypatch, tmp_path):
    # pack-64 is not in the second plan (seq_len 32), which rebuilds the corpus; back at 64, pack-64 must not be
    # reused: its shards hold the old corpus
    recipe = write_recipe(tmp_path, ["--num-workers", "1"])
    assert run(monkeypatch, recipe)[0] == 0
    other = write_recipe(tmp_path, ["--num-workers", "2"], overrides=[f"phases.{i}.seq_len=32" for i in range(3)])
    code, ran = run(monkeypatch, other)
    assert code == 0 and "corpus" in ran and "pack-32" in ran
    code, ran = run(monkeypatch, write_recipe(tmp_path, ["--num-workers", "2"]))
    assert code == 0 and ran[0] == "pack-64" and "corpus" not in ran


def test_a_new_file_under_an_input_glob_rebuilds_the_corpus(monkeypatch, tmp_path):
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    shutil.copy(REPO / "data/warc/udhr.warc.gz", warcs)
    recipe = write_recipe(tmp_path, [], inputs=[f"{warcs}/*.warc.gz"])
    assert run(monkeypatch, recipe)[0] == 0
    assert run(monkeypatch, recipe) == (0, [])
    shutil.copy(REPO / "data/warc/warcfile.warc.gz", warcs)
    code, ran = run(monkeypatch, recipe)
    assert code == 0 and ran[0] == "corpus"


def _runner_of_a_stage(tmp_path: Path, body: str) -> subprocess.Popen:
    """A process running `run_stage` on a Python stage that writes its pid to tmp_path/pid, then runs `body`;
    returned once the stage has started."""
    stage = tmp_path / "stage.py"
    stage.write_text(f"import os, pathlib\npathlib.Path({str(tmp_path / 'pid')!r}).write_text(str(os.getpid()))\n"
                     + body)
    runner = subprocess.Popen([sys.executable, "-c", "import os, sys; from mmbert.run import run_stage; "
                               f"run_stage([sys.executable, {str(stage)!r}], dict(os.environ))"], cwd=REPO)
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return runner


def test_ctrl_c_reaches_the_stage_once_and_waits_for_its_cleanup(tmp_path):
    # The runner gets SIGINT (as from `kill -INT`, or the terminal: the stage has a process group of its own); the
    # stage must receive it and finish its cleanup before the runner exits (subprocess.run killed it after 0.25 s).
    runner = _runner_of_a_stage(tmp_path, "import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                                          f"    time.sleep(1)\n    pathlib.Path({str(tmp_path / 'cleaned')!r}).touch()\n"
                                          "    sys.exit(130)\n")
    os.kill(runner.pid, signal.SIGINT)
    runner.wait(timeout=30)
    assert (tmp_path / "cleaned").exists()


def test_a_training_recipe_given_to_run_is_named_as_one(capsys):
    assert main(["run", str(REPO / "recipes/tiny-cpu.yaml")]) == 2
    assert "is a training recipe: run it with `mmbert train --config" in capsys.readouterr().err


def _as_written_before_ids(output: Path, recipe: dict) -> None:
    """Rewrite every marker as the runner wrote it before stages recorded ids (fingerprints of small named files)."""
    writes = {stage.name: stage.writes for stage in run_module.plan_stages(recipe, output)}
    for marker in (output / ".stages").glob("*.json"):
        record = json.loads(marker.read_text())
        if "args" not in record:  # the training's start record
            continue
        record.pop("id", None), record.pop("upstream", None)
        record["inputs"] = run_module.input_fingerprint(record["args"], output, writes[marker.stem], legacy=True)
        marker.write_text(json.dumps(record))


def test_markers_from_before_ids_are_reused_until_what_they_read_is_rebuilt(monkeypatch, tmp_path):
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    shutil.copy(REPO / "data/warc/udhr.warc.gz", warcs)
    big = warcs / "big.jsonl"  # an input of 1 MiB or more, which old fingerprints left out
    big.write_text('{"text": "x"}\n' * 80_000)
    recipe_path = write_recipe(tmp_path, [], inputs=[f"{warcs}/*.warc.gz", str(big)])
    assert run(monkeypatch, recipe_path)[0] == 0
    recipe, output = run_module.load_run_recipe(str(recipe_path)), tmp_path / "out"
    _as_written_before_ids(output, recipe)
    assert run(monkeypatch, recipe_path) == (0, [])  # an upgrade redoes nothing
    _as_written_before_ids(output, recipe)
    # the corpus is rebuilt, then a report stage fails: the old-style pack marker must not be trusted any more
    recipe_path = write_recipe(tmp_path, ["--num-workers", "1"], inputs=[f"{warcs}/*.warc.gz", str(big)])
    assert run(monkeypatch, recipe_path, fail={"corpus-stats"}) == (1, ["corpus", "corpus-stats"])
    code, ran = run(monkeypatch, recipe_path)
    assert code == 0 and "pack-64" in ran and "train" in ran


def test_a_hang_up_reaches_the_stage(tmp_path):
    # The stage has a session of its own (for Ctrl-C): the terminal's SIGHUP reaches only the runner, which passes
    # it on, or the stage would run on unattended and a second run would start beside it
    runner = _runner_of_a_stage(tmp_path, "import time\ntime.sleep(60)\n")
    time.sleep(0.2)  # the runner's handler is set just after the stage starts
    os.kill(runner.pid, signal.SIGHUP)
    runner.wait(timeout=30)
    pid, deadline = int((tmp_path / "pid").read_text()), time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the stage outlived the runner's hang-up")
