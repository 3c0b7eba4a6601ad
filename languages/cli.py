"""`mmbert languages …`: list the registry and phases, normalise labels, temperature-sample a phase's mix."""

from __future__ import annotations

import csv
import json
import sys

from mmbert.argtypes import HelpFormatter, positive_float, token_count

EPILOG = """\
examples:
  mmbert languages list --phase pretrain                    # mmBERT's 60 pre-training languages + code
  mmbert languages list --phase decay --format json         # its 1,891 labels (1,833 languages + code), as JSON
  mmbert languages normalize __label__zh sr-Latn ara         # → cmn_Hani srp_Latn arb_Arab
  mmbert languages counts --output counts.csv               # FineWeb-2 words per label, as a counts file
  mmbert languages sample --counts counts.csv --phase pretrain --budget 1e9 --plot mix.png
"""


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "languages", help="the language registry, training phases and temperature sampling",
        description="The language registry (1,903 xxx_Scrp labels from FineWeb-2 + mmBERT), label normalisation, "
                    "staged language introduction and temperature sampling.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="languages_command", metavar="COMMAND")

    listing = commands.add_parser(
        "list", help="list registry labels, or one phase's languages", formatter_class=HelpFormatter,
        description="List language-script labels with name, family, script and FineWeb-2 sizes.",
        epilog="examples:\n  mmbert languages list --phase pretrain\n"
               "  mmbert languages list --schedule my-phases.yaml --phase stage1 --format csv")
    listing.add_argument("--phase", help="only this phase's languages (pretrain, mid_training, decay by default)")
    listing.add_argument("--schedule", help="phases YAML file (default: mmBERT's three phases)")
    listing.add_argument("--format", choices=("table", "json", "csv"), default="table")
    listing.set_defaults(func=list_command)

    norm = commands.add_parser(
        "normalize", help="map LID / ISO 639 / BCP-47 labels to registry labels", formatter_class=HelpFormatter,
        description="Print each label and the registry label it normalises to (exit 2 if any is unknown).",
        epilog="example:\n  mmbert languages normalize __label__en __label__eng_Latn sr-Latn zho est")
    norm.add_argument("labels", nargs="+")
    norm.add_argument("--script", help="ISO 15924 script for labels that carry none (e.g. Latn)")
    norm.set_defaults(func=normalize_command)

    counts = commands.add_parser(
        "counts", help="write a counts CSV (language,tokens) from FineWeb-2's table", formatter_class=HelpFormatter,
        description="Write FineWeb-2's size per label as a counts file that `sample` reads.",
        epilog="example:\n  mmbert languages counts --unit words --output fineweb2-counts.csv")
    counts.add_argument("--unit", choices=("words", "bytes", "documents"), default="words")
    counts.add_argument("--output", required=True, help="CSV path ('-' for stdout)")
    counts.set_defaults(func=counts_command)

    sample = commands.add_parser(
        "sample", help="temperature-sampling probabilities and token budgets per phase", formatter_class=HelpFormatter,
        description="p_i ∝ n_i^τ over each phase's languages, with n_i from a counts CSV (header language,tokens; "
                    "ISO 639-3 codes or xxx_Scrp labels). With a budget (--budget, or the schedule's), integer "
                    "token budgets per language, capped at --max-epochs × its data.",
        epilog="examples:\n  mmbert languages sample --counts counts.csv --phase pretrain\n"
               "  mmbert languages sample --counts counts.csv --budget 2e9 --max-epochs 3 --format json --plot mix.png")
    sample.add_argument("--counts", required=True, help="CSV with header language,tokens")
    sample.add_argument("--schedule", help="phases YAML file (default: mmBERT's three phases)")
    sample.add_argument("--phase", help="only this phase (default: every phase)")
    sample.add_argument("--budget", type=token_count, metavar="TOKENS",
                        help="phase token budget: 2.3T, 600B, 1e9 (default: the schedule's, if any)")
    sample.add_argument("--max-epochs", type=positive_float, help="cap on epochs over one language's data")
    sample.add_argument("--format", choices=("table", "json"), default="table")
    sample.add_argument("--plot", help="write the distribution per phase (log scale) to this PNG")
    sample.add_argument("--ignore-unknown", action="store_true", help="drop unknown language codes instead of failing")
    sample.set_defaults(func=sample_command)

    try:
        from languages.mixture_cli import register_mix
    except ModuleNotFoundError as error:
        if error.name != "languages.mixture_cli":
            raise
    else:
        register_mix(commands)


def _selected_phases(args, counts: dict | None = None) -> list:
    """The schedule's phases (or the one --phase names); `top: N` phases rank languages by `counts` when given, as
    `languages mix` and the training loader do with the shards' own counts."""
    from languages.schedule import find_phase, load_schedule

    phases = load_schedule(args.schedule, counts=counts)
    return [find_phase(phases, args.phase)] if args.phase else phases


def list_command(args) -> int:
    from languages.registry import all_languages, get

    if args.phase or args.schedule:
        labels = sorted({label for phase in _selected_phases(args) for label in phase.languages})
        languages = [get(label) for label in labels]
    else:
        languages = all_languages()
    rows = [{"code": l.code, "iso639_3": l.iso639_3, "script": l.script, "name": l.name, "family": l.family,
             "words": l.words, "documents": l.documents, "bytes": l.bytes} for l in languages]
    if args.format == "json":
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=1)
        print()
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["code"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"{'code':<10} {'script':<6} {'words':>15}  name")
        for row in rows:
            print(f"{row['code']:<10} {row['script']:<6} {row['words']:>15,}  {row['name']}")
        print(f"{len(rows)} languages", file=sys.stderr)
    return 0


def normalize_command(args) -> int:
    from languages.registry import UnknownLanguage, normalize

    status = 0
    for label in args.labels:
        try:
            print(f"{label}\t{normalize(label, args.script)}")
        except UnknownLanguage as error:
            print(f"{label}\terror: {error}", file=sys.stderr)
            status = 2
    return status


def counts_command(args) -> int:
    from languages.registry import all_languages
    from languages.sampling import format_counts_csv
    from mmbert.atomic import write_text_atomic

    text = format_counts_csv({language.code: getattr(language, args.unit) for language in all_languages()})
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def sample_command(args) -> int:
    from languages.sampling import read_counts_csv, temperature_weights, token_budgets

    counts = read_counts_csv(args.counts, ignore_unknown=args.ignore_unknown)
    phases = _selected_phases(args, counts)
    sampled = {label for phase in phases for label in phase.languages}
    outside = {label: n for label, n in counts.items() if n and label not in sampled}
    if outside:  # data no selected phase samples from: say so rather than drop it silently
        largest = ", ".join(sorted(outside, key=lambda label: (-outside[label], label))[:5])
        print(f"{len(outside)} languages in {args.counts} ({sum(outside.values()):,} tokens) are in no selected "
              f"phase, largest: {largest}", file=sys.stderr)
    results = {}
    for phase in phases:
        phase_counts = {label: counts.get(label, 0) for label in phase.languages}
        missing = sorted(label for label, value in phase_counts.items() if value == 0)
        if len(missing) == len(phase_counts):  # `mix` and `train` refuse it; this is a report (`mmbert run` plots
            # mmBERT's phases whatever the corpus holds): said, not refused
            print(f"warning: phase {phase.name}: none of its {len(missing)} languages has data in {args.counts}: "
                  "it samples nothing", file=sys.stderr)
        elif missing:  # named, as `train` names them: they get probability 0
            named = ", ".join(missing[:8]) + (f", … ({len(missing) - 8} more)" if len(missing) > 8 else "")
            print(f"{phase.name}: {len(missing)} of {len(phase.languages)} languages have no data in {args.counts} "
                  f"(sampled with probability 0): {named}", file=sys.stderr)
        weights = temperature_weights(phase_counts, phase.temperature)
        budget = args.budget if args.budget is not None else phase.budget
        max_epochs = args.max_epochs if args.max_epochs is not None else phase.max_epochs
        budgets = token_budgets(phase_counts, phase.temperature, budget, max_epochs) if budget is not None else None
        if budgets is not None and 0 < sum(budgets.values()) < budget:
            print(f"{phase.name}: the epoch caps (max {max_epochs} epochs) leave {budget - sum(budgets.values()):,} "
                  f"of {int(budget):,} tokens unfilled", file=sys.stderr)
        entries = {}
        for label in sorted(phase_counts, key=lambda l: (-weights[l], l)):
            entry = {"probability": weights[label], "count": phase_counts[label]}
            if budgets is not None:
                entry["tokens"] = budgets[label]
            entries[label] = entry
        results[phase.name] = {"temperature": phase.temperature, "budget": budget, "languages": entries}
    if args.format == "json":
        output = results[phases[0].name]["languages"] if args.phase else \
            {name: result["languages"] for name, result in results.items()}
        json.dump(output, sys.stdout, indent=1)
        print()
    else:
        for name, result in results.items():
            budget = "-" if result["budget"] is None else f"{int(result['budget']):,}"
            print(f"# {name}  τ={result['temperature']}  budget={budget}")
            print(f"{'language':<10} {'count':>16} {'probability':>12} {'tokens':>18}")
            for label, entry in result["languages"].items():
                tokens = f"{entry['tokens']:,}" if "tokens" in entry else "-"
                print(f"{label:<10} {entry['count']:>16,} {entry['probability']:>12.6f} {tokens:>18}")
            if result["budget"] is not None:
                total = sum(entry["tokens"] for entry in result["languages"].values())
                print(f"{'total':<10} {sum(e['count'] for e in result['languages'].values()):>16,} "
                      f"{1.0:>12.6f} {total:>18,}")
    if args.plot:
        plot_distributions(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def plot_distributions(results: dict, path: str) -> None:
    """One panel per phase: sampling probability per language, sorted, on a log scale, beside the data share."""
    from mmbert.plots import pyplot, save_png

    plt = pyplot()
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.2 * len(results)), squeeze=False)
    for axis, (name, result) in zip(axes[:, 0], results.items()):
        entries = [e for e in result["languages"].values() if e["count"] > 0]
        total = sum(e["count"] for e in entries) or 1
        ranks = range(1, len(entries) + 1)
        axis.plot(ranks, [e["count"] / total for e in entries], ".", markersize=3, label="share of data (τ = 1)")
        axis.plot(ranks, [e["probability"] for e in entries], "-", label=f"sampling probability (τ = {result['temperature']})")
        axis.set_yscale("log")
        axis.set_title(f"{name}: {len(entries)} languages with data")
        axis.set_xlabel("language rank by probability")
        axis.set_ylabel("probability")
        axis.legend(loc="upper right")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
