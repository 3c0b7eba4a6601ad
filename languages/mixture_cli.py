"""`mmbert languages mix`: plan (--dry-run) or materialise each phase's language mixture from packed shards.

In: packed shards (`mmbert tokenizer pack`) and a schedule; out: `OUTPUT/<phase>/train/part-*.parquet`,
`OUTPUT/<phase>/manifest.json`, `OUTPUT/_SUCCESS` (see languages/mixture.py and docs/mixtures.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from mmbert.argtypes import HelpFormatter, non_negative_int, positive_float, positive_int, token_count
from mmbert.beam import add_runner_arguments, runner_arguments
from mmbert.errors import UsageError

if TYPE_CHECKING:
    from languages.mixture import PhasePlan

EPILOG = """\
examples:
  # check a schedule's budgets before running anything (prints a table per phase, writes a plot)
  mmbert languages mix --shards out/shards --schedule phases.yaml --dry-run --plot mix.png
  # materialise two phases of 50M tokens each, no language repeated more than 3 times
  mmbert languages mix --shards out/shards --schedule phases.yaml --phase pretrain --phase decay \\
      --budget 50M --max-epochs 3 --seed 0 --num-workers 2 --output out/mixtures

The output holds OUTPUT/<phase>/train/part-*.parquet (input_ids, document_lengths, language), in a shuffled order
that depends only on --seed, and OUTPUT/<phase>/manifest.json with each language's budget, rows taken, epochs used
and shortfall. Budgets come from --budget or the schedule's `budget:` per phase; --max-epochs likewise.
"""

def register_mix(languages_commands) -> None:
    """Add `mix` to the `mmbert languages` sub-commands."""
    mix = languages_commands.add_parser(
        "mix", help="materialise each phase's temperature-sampled language mixture (Beam)",
        formatter_class=HelpFormatter, epilog=EPILOG,
        description="Plan each phase's per-language token budgets (p_i ∝ n_i^τ over the packed shards' train tokens,\n"
                    "capped at --max-epochs × a language's data) and write the phase as shuffled packed rows: a\n"
                    "language's rows are drawn without replacement in a seeded order, then repeated in a new seeded\n"
                    "order per epoch, up to the cap. Same seed: the same rows in the same order, whatever --num-workers.")
    mix.add_argument("--shards", required=True, metavar="DIR", help="packed shards from `mmbert tokenizer pack`")
    mix.add_argument("--output", metavar="DIR", help="where the mixtures go (required unless --dry-run)")
    mix.add_argument("--schedule", metavar="FILE", help="phases YAML (default: mmBERT's pretrain/mid_training/decay)")
    mix.add_argument("--phase", action="append", metavar="NAME", help="only this phase (repeatable; default: all)")
    mix.add_argument("--budget", type=token_count, metavar="TOKENS",
                     help="token budget of every selected phase, e.g. 50M (default: each phase's `budget:`)")
    mix.add_argument("--max-epochs", type=positive_float, metavar="E",
                     help="at most E passes over one language's rows (default: each phase's `max_epochs:`, else none)")
    mix.add_argument("--seed", type=non_negative_int, default=0, metavar="S",
                     help="seed of the row orders and the shuffle (default: 0)")
    mix.add_argument("--num-workers", type=positive_int, default=1, metavar="N",
                     help="Beam DirectRunner workers (default: 1; the output does not depend on it)")
    mix.add_argument("--rows-per-file", type=positive_int, default=None, metavar="R",
                     help="about R rows per output file (default: 16384)")
    mix.add_argument("--dry-run", action="store_true", help="print the budget table (and --plot), write no data")
    mix.add_argument("--plot", metavar="OUT.png", help="plot each phase's data share against its mixture share")
    mix.add_argument("--overwrite", action="store_true", help="replace an existing --output directory")
    add_runner_arguments(mix)
    mix.set_defaults(func=mix_command)


def mix_command(args) -> int:
    from languages.mixture import DEFAULT_ROWS_PER_FILE, budget_table, plan_phase, read_packed_shards
    from languages.schedule import find_phase, load_schedule
    from mmbert.atomic import check_output_directory

    if not args.dry_run and not args.output:
        raise UsageError("--output is required (or pass --dry-run to only print the plan)")
    if args.output and not args.dry_run:
        check_output_directory(args.output, args.overwrite, scans=[("--shards", args.shards)])
    shards = read_packed_shards(args.shards)
    # `top: N` phases rank languages by the shards' own counts, as the training loader's on-the-fly sampling does.
    schedule = load_schedule(args.schedule, counts=shards.counts)
    phases = [find_phase(schedule, name) for name in dict.fromkeys(args.phase)] if args.phase else schedule
    plans = [plan_phase(phase, shards.counts, shards.available_rows(), shards.seq_len, args.seed, args.budget,
                        args.max_epochs, args.rows_per_file or DEFAULT_ROWS_PER_FILE) for phase in phases]
    for plan in plans:
        if plan.missing:
            print(f"{plan.phase}: {len(plan.missing)} of {len(plan.missing) + len(plan.languages)} languages have no "
                  f"packed rows in {args.shards} and get no budget", file=sys.stderr)
        if plan.shortfall_tokens:
            print(f"{plan.phase}: the epoch caps leave {plan.shortfall_tokens:,} of {plan.requested_tokens:,} tokens "
                  "unfilled", file=sys.stderr)
    if args.plot:
        plot_plans(plans, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.dry_run:
        print("\n\n".join(budget_table(plan) for plan in plans))
        return 0

    from languages.mixture import run_mixture

    rows = sum(plan.total_rows for plan in plans)
    mib = rows * shards.seq_len * 4 / 2**20  # int32 token ids, before compression
    size = f"{mib / 1024:,.1f} GiB" if mib >= 1024 else f"{mib:,.1f} MiB"
    print(f"writing {rows:,} rows of {shards.seq_len} tokens (~{size} of token ids) for {len(plans)} "
          f"phase{'s' if len(plans) != 1 else ''}; --dry-run shows the plan", file=sys.stderr)
    manifests = run_mixture(shards, phases, plans, args.output, num_workers=args.num_workers,
                            overwrite=args.overwrite, pipeline_args=runner_arguments(args))
    for name, manifest in manifests.items():
        print(f"{name}: {manifest['rows']:,} rows, {manifest['tokens']:,} tokens in {manifest['files']} "
              f"file{'s' if manifest['files'] != 1 else ''} "
              f"→ {args.output}/{name}/train", file=sys.stderr)
    return 0


def plot_plans(plans: Sequence[PhasePlan], path: str | Path) -> None:
    """One panel per phase: each language's share of the data against its share of the phase (log scale)."""
    import numpy as np

    from mmbert.plots import pyplot, save_png

    plt = pyplot()
    figure, axes = plt.subplots(len(plans), 1, figsize=(10, 3.2 * len(plans)), squeeze=False)
    for axis, plan in zip(axes[:, 0], plans):
        ordered = sorted(plan.languages, key=lambda b: -b.available_tokens)
        data_total = sum(b.available_tokens for b in ordered) or 1
        x = np.arange(len(ordered))
        axis.bar(x, [b.available_tokens / data_total for b in ordered], color="#bbbbbb", label="share of the data")
        axis.plot(x, [b.budget_tokens / max(plan.planned_tokens, 1) for b in ordered], "o-", markersize=3,
                  color="#c0392b", label=f"share of the phase (τ {plan.temperature:g})")
        axis.set_yscale("log")
        axis.set_title(f"{plan.phase}: {plan.planned_tokens:,} tokens over {len(ordered)} languages", fontsize=10)
        axis.set_ylabel("fraction of tokens")
        if len(ordered) <= 60:
            axis.set_xticks(x, [b.language for b in ordered], rotation=90, fontsize=6)
        else:
            axis.set_xlabel("languages, most data first")
        axis.legend(fontsize=8)
    figure.tight_layout()
    save_png(figure, path, dpi=120)
