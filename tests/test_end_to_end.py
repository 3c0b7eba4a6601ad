"""The whole chain on a slice of the shipped real data: `mmbert run` from WARC files to a per-language report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def run_recipe(tmp_path: Path, mixture: bool = False) -> Path:
    recipe = {
        "output": str(tmp_path / "out"),
        "corpus": {"inputs": [str(REPO / "data/warc/udhr.warc.gz"), str(REPO / "data/warc/warcfile.warc.gz"),
                              str(REPO / "data/warc/clipped.warc.gz")],
                   "args": ["--num-workers", "1"]},
        "tokenizer": "gemma2",
        "pack": {"args": ["--heldout-fraction", "0.2"]},
        "mixture": mixture,
        "train": {"recipe": str(REPO / "recipes/tiny-cpu.yaml"),
                  "overrides": ["phases.0.budget=4K", "phases.1.budget=3K", "phases.2.budget=6K",
                                "schedule.warmup_tokens=512", "schedule.decay_tokens=6K",
                                "training.checkpoint_every=1000", "training.device=cpu"]},
        "eval": {"tasks": ["mlm", "retrieval", "fertility"],
                 "args": ["--languages", "eng_Latn,fra_Latn,rus_Cyrl,cmn_Hani,arb_Arab", "--mlm-positions", "50"]},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def mmbert(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "mmbert", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("mixture", [False, True], ids=["on-the-fly-sampling", "materialised-mixtures"])
def test_chain_from_warc_to_report_then_reuse(tmp_path, gemma2_tokenizer_json, mixture, monkeypatch, capsys):
    recipe = run_recipe(tmp_path, mixture)
    first = mmbert("run", str(recipe))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = tmp_path / "out"

    # every stage consumed the previous one's real output
    stats = json.loads((out / "corpus/stats.json").read_text())
    corpus_languages = [p.name for p in (out / "corpus").iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert len(corpus_languages) >= 30 and stats
    manifest = json.loads((out / "shards-64/manifest.json").read_text())
    assert manifest["seq_len"] == 64 and len(manifest["languages"]) >= 30
    assert (out / "run/checkpoints/latest").is_file()
    if mixture:  # each phase trained from its materialised mix, whose manifest holds the sampler's budgets
        for phase in ("pretrain", "mid_training", "decay"):
            phase_manifest = json.loads((out / f"mixtures-64/{phase}/manifest.json").read_text())
            languages = phase_manifest["languages"].values()
            assert phase_manifest["tokens"] == sum(entry["tokens_taken"] for entry in languages) > 0
            for entry in languages:  # each language's budget, to within one of its rows (a sampled row may be short)
                row = entry["available_tokens"] / entry["available_rows"]
                assert abs(entry["rows_taken"] * row - entry["budget_tokens"]) <= row + 1e-6
        log = [json.loads(line) for line in (out / "run/metrics.jsonl").read_text().splitlines()]
        assert {row["phase"] for row in log if "phase" in row} == {"pretrain", "mid_training", "decay"}
    assert json.loads((out / "model/config.json").read_text())["model_type"] == "modernbert"
    with (out / "eval/results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    scored = {(row["task"], row["language"]) for row in rows if row["status"] == "ok"}
    assert {("retrieval", "fra_Latn"), ("fertility", "cmn_Hani")} <= scored
    assert any(task == "mlm" for task, _ in scored)

    report = (out / "report.md").read_text()
    for section in ("## Stages", "## Language sampling per phase", "## Training loss per phase", "## Evaluation"):
        assert section in report
    for image in ("reports/sampling.png", "reports/corpus.png", "reports/training-loss.png"):
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    assert f"report: {(out / 'report.md').resolve()}" in first.stdout

    # a second run reuses every finished stage
    second = mmbert("run", str(recipe))
    assert second.returncode == 0, second.stderr[-2000:]
    stages = [line for line in second.stdout.splitlines() if line.startswith("[")]
    assert stages and all("reused" in line for line in stages), stages

    # ... and so would one from another interpreter path (a moved or rebuilt .venv): the same interpreter, linked
    from mmbert.cli import main

    moved = tmp_path / "elsewhere" / "python"
    moved.parent.mkdir()
    moved.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(moved))
    assert main(["run", str(recipe), "--dry-run"]) == 0
    planned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert planned and all(": reuse: " in line for line in planned), planned

    # ... and markers written by earlier versions (full command, its fingerprint, no "args") are still honoured
    from mmbert.run import input_fingerprint

    monkeypatch.undo()
    for marker in (out / ".stages").glob("*.json"):
        if marker.name != "train.started.json":  # the training's start record, not a finished stage
            record = json.loads(marker.read_text())
            del record["args"]
            record["inputs"] = input_fingerprint(record["command"], out)
            marker.write_text(json.dumps(record))
    assert main(["run", str(recipe), "--dry-run"]) == 0
    planned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert planned and all(": reuse: " in line for line in planned), planned

def test_bad_run_recipes_fail_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: out\ncorpus: {inputs: []}\ntrain: {recipe: recipes/tiny-cpu.yaml}\n")
    result = mmbert("run", str(bad))
    assert result.returncode == 2 and "corpus.inputs (paths or globs) or corpus.manifests" in result.stderr
    bad.write_text("output: out\ncorpus: {inputs: [x]}\ntrain: {recipe: nope.yaml}\nextra: 1\n")
    result = mmbert("run", str(bad))
    assert result.returncode == 2 and "unknown keys ['extra']" in result.stderr
    assert mmbert("run", str(tmp_path / "missing.yaml")).returncode == 2
