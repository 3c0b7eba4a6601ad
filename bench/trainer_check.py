"""Does `mmbert train` run as fast as the benchmark's step? The real trainer at the benchmark's shape, compared.

bench/train_throughput.py times the training step on prepared random batches. This runs the trainer itself
(`python -m mmbert train`, recipes/mmbert-base-gpu-check.yaml: mmbert-base, 32 x 1024 tokens a step, 30 % masking,
compiled blocks, bf16) for 60 steps on real packed shards, so the data loader, masking, pinned copies, the
optimizer's learning-rate updates and logging are all inside the timing. Its steady rate is the median of
metrics.jsonl's intervals after the first (which holds the compilation); with the benchmark's JSON it is compared
with `ours` at the same model and shape. A trainer that keeps its step free of host waits should be within a few
per cent of the benchmark; much less means the host side (or a synchronisation) is starving the GPU.

    python bench/trainer_check.py --shards .gpu/shards-1024 --bench $OUT/train_throughput.json   # GPU
    python bench/trainer_check.py --shards out/shards-64 --tiny                                  # CPU smoke

Shards: `bash bench/prepare_gpu_session.sh` packs the shipped WARCs at 1024 tokens into .gpu/shards-1024.
The run directory (a 3.7 GB final checkpoint for mmbert-base) is a temporary folder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmbert.atomic import write_text_atomic  # noqa: E402

RECIPE = REPO / "recipes" / "mmbert-base-gpu-check.yaml"
# --tiny: the same recipe shrunk to a CPU smoke run (8 steps of 4 x 64 tokens, a 3-layer model, eager).
TINY_OVERRIDES = ["model.name=tiny", "model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=3",
                  "model.num_heads=2", "training.compile=false", "training.device=cpu", "batch.global_size=4",
                  "batch.micro_size=4", "phases.0.seq_len=64", "phases.0.budget=2048", "training.log_every=2",
                  "schedule.warmup_tokens=256", "schedule.decay_tokens=256"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__[__doc__.index("    python"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", required=True, type=Path, help="packed shards at the recipe's sequence length")
    p.add_argument("--recipe", type=Path, default=RECIPE)
    p.add_argument("--bench", type=Path, help="bench/train_throughput.py's JSON from the same machine, to compare")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run: a tiny model, 8 steps of 4 x 64 tokens")
    p.add_argument("--timeout-s", type=float, default=600, help="stop the trainer after this many seconds")
    p.add_argument("--output", type=Path, default=None, help="JSON report (default: $OUT or bench/results)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more recipe overrides, as `mmbert train`'s")
    args = p.parse_args(argv)
    if not (args.shards / "manifest.json").is_file():
        p.error(f"--shards {args.shards}: no manifest.json there (pack shards with `mmbert tokenizer pack`)")
    if args.output is None:
        base = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"
        args.output = base / "trainer_check.json"
    return args


def run_trainer(args, run_dir: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`python -m mmbert train` on the recipe; a run past --timeout-s comes back with returncode None."""
    overrides = [f"data.shards={args.shards.resolve()}", *(TINY_OVERRIDES if args.tiny else []), *args.overrides]
    command = [sys.executable, "-m", "mmbert", "train", "--config", str(args.recipe.resolve()), "--output",
               str(run_dir), "--no-progress", *overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired as timeout:  # its output so far comes as bytes, whatever text= says
        stderr = timeout.stderr.decode(errors="replace") if isinstance(timeout.stderr, bytes) else timeout.stderr
        done = subprocess.CompletedProcess(command, None, stdout="", stderr=stderr or "")
    return done, command


def bench_rate(bench_json: Path, model: str, seq_len: int, rows: int) -> float | None:
    """tokens/s of the benchmark's `ours` at this model and shape, if it ran."""
    for run in json.loads(bench_json.read_text()).get("results", []):
        if (run.get("impl"), run.get("model"), run.get("seq_len"), run.get("batch")) == ("ours", model, seq_len, rows) \
                and run.get("status") == "ok":
            return run["tokens_per_s"]
    return None


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl's complete lines (a trainer stopped by the timeout may have left half of its last one)."""
    lines = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from mmbert.errors import UsageError
    from training.config import load_recipe

    try:
        recipe = load_recipe(args.recipe, [f"data.shards={args.shards}", *(TINY_OVERRIDES if args.tiny else []),
                                           *args.overrides])
    except UsageError as error:
        print(f"trainer_check: {error}", file=sys.stderr)
        return 2
    phase = recipe.phases[0]
    recipe_path = args.recipe.resolve()
    report = {"recipe": str(recipe_path.relative_to(REPO) if recipe_path.is_relative_to(REPO) else recipe_path),
              "model": recipe.model["name"], "seq_len": phase.seq_len, "rows": recipe.batch.global_size,
              "mask_rate": phase.mask_rate, "compile": recipe.training.compile,
              "environment": {"python": platform.python_version(), "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}}
    run_dir = Path(tempfile.mkdtemp(prefix="trainer-check-"))
    try:
        done, command = run_trainer(args, run_dir)
        report["command"] = " ".join(command[1:])
        metrics_file = run_dir / "metrics.jsonl"
        lines = read_metrics(metrics_file)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if done.returncode != 0:
        report["status"] = "timed out" if done.returncode is None else f"exit status {done.returncode}"
        report["stderr_tail"] = done.stderr[-4000:]
    else:
        report["status"] = "ok"
    keys = ("step", "loss", "grad_norm", "tokens_per_second", "predicted", "peak_memory_gib")  # memory: CUDA only
    report["logged"] = [{key: line[key] for key in keys if key in line} for line in lines]
    steady = [line["tokens_per_second"] for line in lines[1:]]  # the first interval holds the compilation
    report["steady_tokens_per_s"] = round(statistics.median(steady)) if steady else None
    if args.bench and args.bench.exists():
        reference = bench_rate(args.bench, report["model"], phase.seq_len, recipe.batch.global_size)
        report["bench_ours_tokens_per_s"] = reference
        if reference and report["steady_tokens_per_s"]:
            report["trainer_vs_bench"] = round(report["steady_tokens_per_s"] / reference, 3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=1) + "\n")
    print(f"trainer check: {report['status']}; {len(lines)} logged lines, steady "
          f"{report['steady_tokens_per_s']} tokens/s"
          + (f", {report['trainer_vs_bench']}x the benchmark's ours" if "trainer_vs_bench" in report else "")
          + f" → {args.output}")
    if report["status"] != "ok":
        print(report.get("stderr_tail", ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
