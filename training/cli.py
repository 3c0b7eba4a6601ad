"""`mmbert train`, `mmbert export`, `mmbert merge`: the training stage's commands.

train:  a YAML recipe (recipes/*.yaml) + packed shards → RUN/checkpoints/…, RUN/metrics.jsonl. The same command runs
        on one CPU process, under `torchrun --nproc-per-node N` on CPUs (gloo) or GPUs (NCCL).
export: a checkpoint → a transformers ModernBertForMaskedLM directory (training/hf.py).
merge:  several checkpoints → one (TIES or a weighted average; training/merge.py).
torch is imported inside the handlers so `mmbert --help` stays fast.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mmbert.argtypes import HelpFormatter
from mmbert.errors import UsageError

TRAIN_EPILOG = """\
examples:
  mmbert train --config recipes/tiny-cpu.yaml
  mmbert train --config recipes/tiny-cpu.yaml --output out/runs/tiny --resume auto
  mmbert train --config recipes/tiny-cpu.yaml optimizer.lr=1e-3 phases.0.budget=20K data.shards=out/shards
  torchrun --nproc-per-node 8 -m mmbert train --config recipes/mmbert-small.yaml --resume auto

overrides are KEY=VALUE with a dotted key into the recipe and a YAML value; see docs/training.md for the schema.
"""


def register(subparsers) -> None:
    _add_train(subparsers)
    _add_export(subparsers)
    _add_merge(subparsers)


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an encoder with masked-LM through a recipe's phases (CPU, N CPUs, N GPUs)",
        description="Train the ModernBERT-style encoder with masked-LM on packed shards, phase by phase as the "
                    "recipe says (languages, sampling temperature, mask rate, sequence length, RoPE base, token "
                    "budget). Writes RUN/checkpoints/step-XXXXXXXX/ (safetensors weights, checkpoint.json, "
                    "trainer_state.pt), RUN/metrics.jsonl and, when tensorboard is installed, RUN/tensorboard/.",
        epilog=TRAIN_EPILOG, formatter_class=HelpFormatter,
    )
    p.add_argument("--config", required=True, metavar="RECIPE", help="training recipe (YAML), e.g. recipes/tiny-cpu.yaml")
    p.add_argument("--output", metavar="RUN", help="run directory (default: training.output, else out/runs/<recipe>)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': continue from RUN's latest checkpoint if there is one; or a checkpoint directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (metrics.jsonl is still written)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optimizer.lr=1e-3")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from training.config import load_recipe

    recipe = load_recipe(args.config, args.overrides)
    run_dir = Path(args.output or recipe.training.output or Path("out") / "runs" / recipe.name)
    main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training.trainer import train

    last = train(recipe, run_dir, resume=args.resume, progress=not args.no_progress)
    if last and main_process:  # under torchrun, one summary line
        print(f"done: step {last['step']}, phase {last['phase']}, loss {last['loss']:.4f}, "
              f"{last['tokens_seen']:,} tokens → {run_dir}")
    return 0


def _add_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a training checkpoint as a Hugging Face ModernBertForMaskedLM directory",
        description="Convert a checkpoint (RUN/checkpoints/step-…) into a directory that "
                    "transformers.AutoModelForMaskedLM.from_pretrained loads: config.json, model.safetensors and "
                    "the tokenizer files.",
        epilog="examples:\n  mmbert export out/runs/tiny-cpu/checkpoints/step-00000040 --output out/export\n"
               "  mmbert export out/runs/tiny-cpu/checkpoints/step-00000040 --output out/export --tokenizer gemma2\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint directory, or a run directory (its latest)")
    p.add_argument("--output", required=True, metavar="DIR", help="directory to create")
    p.add_argument("--tokenizer", metavar="SPEC", help="tokenizer to ship (default: the one the checkpoint records)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.set_defaults(func=_export)


def _checkpoint_dir(path: str) -> Path:
    """A checkpoint directory as given, or the latest checkpoint of a run directory."""
    from training.checkpoint import find_resume_checkpoint

    # As a path, always: a directory named `auto` is not `--resume auto`.
    return find_resume_checkpoint(Path(path), str(Path(path).absolute()), option="checkpoint")


def _export(args) -> int:
    from training.hf import export_checkpoint

    out = export_checkpoint(_checkpoint_dir(args.checkpoint), args.output, tokenizer=args.tokenizer,
                            overwrite=args.overwrite)
    print(out)
    return 0


def _add_merge(subparsers) -> None:
    p = subparsers.add_parser(
        "merge", help="merge checkpoints (TIES or weighted average) into one checkpoint",
        description="Merge checkpoints of the same model into a new checkpoint directory, as mmBERT merged its "
                    "decay-phase variants with TIES (trim each task vector to its largest entries, elect a sign "
                    "per parameter, average the agreeing ones).",
        epilog="examples:\n  mmbert merge --method ties runA/checkpoints/step-00001000 runB/checkpoints/step-00001000 "
               "--base pre/checkpoints/step-00000800 --output out/merged\n"
               "  mmbert merge --method average ckptA ckptB --weights 0.7,0.3 --output out/merged\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint directories (at least two)")
    p.add_argument("--method", choices=("ties", "average"), default="ties", help="merge method (default ties)")
    p.add_argument("--output", required=True, metavar="CKPT", help="checkpoint directory to create")
    p.add_argument("--base", help="TIES: the checkpoint the inputs were trained from")
    p.add_argument("--density", type=float, default=0.2, help="TIES: fraction of each task vector kept (default 0.2)")
    p.add_argument("--weights", help="comma-separated weight per checkpoint (default equal)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    p.set_defaults(func=_merge)


def _merge(args) -> int:
    from training.merge import merge_checkpoints

    weights = None
    if args.weights:
        try:
            weights = [float(value) for value in args.weights.split(",")]
        except ValueError:
            raise UsageError(f"--weights: expected comma-separated numbers, got {args.weights!r}") from None
    out = merge_checkpoints([_checkpoint_dir(path) for path in args.checkpoints], args.output, method=args.method,
                            density=args.density, weights=weights, base=args.base and _checkpoint_dir(args.base),
                            overwrite=args.overwrite)
    print(out)
    return 0
