"""The human side of results: `report.md` and PNG plots for one model, and the side-by-side `compare` of several.

In:  result rows (evaluation/results.py), the training schedule (which phase introduced each language) and the
     amount of training data per language (the shards' token_counts.csv, else FineWeb-2's word counts).
Out: report.md (a table per task, means, skipped rows with their reasons) and per headline metric three plots:
     `<task>-<metric>-by-language.png` (sorted), `-by-phase.png` (grouped by the phase that introduced the language),
     `-vs-data.png` (against training data, log scale). `compare` writes compare.csv, compare.md (which also lists
     the settings, and the cells' n, that differ between the runs) and `compare-<task>-<metric>.png`.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path

from evaluation.results import Result
from mmbert.atomic import write_text_atomic
from mmbert.plots import pyplot, save_png

# The metrics drawn, per task; lower is better for the ones in LOWER_IS_BETTER.
HEADLINE_METRICS = {
    "mlm": ("accuracy", "pseudo_perplexity"),
    "retrieval": ("accuracy",),
    "classification": ("accuracy", "zero_shot_accuracy"),
    "fertility": ("tokens_per_word",),
}
LOWER_IS_BETTER = {"pseudo_perplexity", "tokens_per_word"}
LOG_SCALE = {"pseudo_perplexity"}
NOT_SCHEDULED = "not in schedule"


def phase_of_languages(schedule_path: str | None = None,
                       counts: dict[str, float] | None = None) -> tuple[dict[str, str], list[str]]:
    """Label → the first phase that trains on it, and the phase names in order. `top: N` phases rank languages by
    `counts` when given (the shards' own, as the training loader does), else by FineWeb-2's words."""
    from languages.schedule import load_schedule

    phases = load_schedule(schedule_path, counts=counts)
    first: dict[str, str] = {}
    for phase in phases:
        for language in phase.languages:
            first.setdefault(language, phase.name)
    return first, [phase.name for phase in phases]


def shard_token_counts(shards: str | Path | None) -> dict[str, float] | None:
    """Label → training tokens from SHARDS/token_counts.csv, or None without one."""
    if shards is None or not (Path(shards) / "token_counts.csv").is_file():
        return None
    from languages.sampling import read_counts_csv

    return {k: float(v) for k, v in read_counts_csv(Path(shards) / "token_counts.csv", ignore_unknown=True).items()}


def training_data_amounts(shards: str | Path | None) -> tuple[dict[str, float], str]:
    """Label → training tokens from SHARDS/token_counts.csv when given, else FineWeb-2 words from the registry."""
    counts = shard_token_counts(shards)
    if counts is not None:
        return counts, "training tokens (packed shards)"
    from languages.registry import all_languages

    return {language.code: float(language.words) for language in all_languages()}, "FineWeb-2 words"


def _no_minor_labels(axis) -> None:
    """Log axes over a narrow range label every minor tick, on top of each other; keep the major ones."""
    from matplotlib.ticker import NullFormatter

    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.yaxis.set_minor_formatter(NullFormatter())


def plot_sorted(values: dict[str, float], title: str, ylabel: str, path: Path, log: bool = False) -> None:
    plt = pyplot()
    ordered = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.14 * len(ordered) + 2), 4))
    axis.bar(range(len(ordered)), [v for _, v in ordered], color="tab:blue")
    axis.set_xticks(range(len(ordered)), [k for k, _ in ordered], rotation=90, fontsize=6)
    axis.set(title=title, ylabel=ylabel, xlim=(-0.7, len(ordered) - 0.3))
    if log:
        axis.set_yscale("log")
        _no_minor_labels(axis)
    save_png(figure, path, dpi=110, bbox_inches="tight")


def plot_by_phase(values: dict[str, float], phase_of: dict[str, str], phases: list[str], title: str, ylabel: str,
                  path: Path, log: bool = False) -> None:
    plt = pyplot()
    groups = [(name, [v for k, v in sorted(values.items()) if phase_of.get(k, NOT_SCHEDULED) == name])
              for name in [*phases, NOT_SCHEDULED]]
    groups = [(name, group) for name, group in groups if group]
    figure, axis = plt.subplots(figsize=(1.6 * len(groups) + 2, 4))
    axis.boxplot([g for _, g in groups], showfliers=False)
    for position, (_, group) in enumerate(groups, start=1):  # every language as a point, spread for visibility
        spread = [position + 0.25 * ((i % 9) / 8 - 0.5) for i in range(len(group))]
        axis.scatter(spread, group, s=10, alpha=0.6, color="tab:blue")
    axis.set_xticks(range(1, len(groups) + 1), [f"{name}\n({len(g)} languages)" for name, g in groups])
    axis.set(title=title, ylabel=ylabel, xlabel="phase that introduced the language")
    if log:
        axis.set_yscale("log")
        _no_minor_labels(axis)
    save_png(figure, path, dpi=110, bbox_inches="tight")


def plot_vs_data(values: dict[str, float], amounts: dict[str, float], amount_label: str, title: str, ylabel: str,
                 path: Path, log: bool = False) -> None:
    plt = pyplot()
    known = sorted(k for k in values if amounts.get(k, 0) > 0)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter([amounts[k] for k in known], [values[k] for k in known], s=14, color="tab:blue")
    for k in known if len(known) <= 40 else []:
        axis.annotate(k, (amounts[k], values[k]), fontsize=6, alpha=0.7)
    missing = len(values) - len(known)
    axis.set(title=title + (f"\n({missing} languages without a data count not shown)" if missing else ""),
             ylabel=ylabel, xlabel=amount_label)
    if known:
        axis.set_xscale("log")
    if log:
        axis.set_yscale("log")
    _no_minor_labels(axis)
    save_png(figure, path, dpi=110, bbox_inches="tight")


def headline_values(results: list[Result]) -> dict[tuple[str, str], dict[str, float]]:
    """(task, metric) → {language: value} for the plotted metrics, ok rows only."""
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for result in results:
        if result.ok and result.metric in HEADLINE_METRICS.get(result.task, ()):
            values[(result.task, result.metric)][result.language] = result.value
    return dict(values)


def write_plots(results: list[Result], directory: Path, model: str, phase_info: tuple[dict[str, str], list[str]],
                data_amounts: tuple[dict[str, float], str]) -> list[str]:
    """All plots of one model's results; returns the file names written. `phase_info` is `phase_of_languages(…)`,
    `data_amounts` `training_data_amounts(…)`: the CLI reads both before scoring, so a bad file fails early."""
    (phase_of, phases), (amounts, amount_label) = phase_info, data_amounts
    written = []
    for (task, metric), values in sorted(headline_values(results).items()):
        log = metric in LOG_SCALE
        label = f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)"
        stem = f"{task}-{metric}"
        plot_sorted(values, f"{model}: {task} {metric} per language", label, directory / f"{stem}-by-language.png", log)
        plot_by_phase(values, phase_of, phases, f"{model}: {task} {metric} by phase", label,
                      directory / f"{stem}-by-phase.png", log)
        plot_vs_data(values, amounts, amount_label, f"{model}: {task} {metric} vs training data", label,
                     directory / f"{stem}-vs-data.png", log)
        written += [f"{stem}-by-language.png", f"{stem}-by-phase.png", f"{stem}-vs-data.png"]
    return written


def _format(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _mean(metric: str, values: list[float]) -> float:
    """Geometric for perplexities (a ratio scale: one language at 1,000 would swamp forty at 20), else arithmetic."""
    return statistics.geometric_mean(values) if metric in LOG_SCALE else statistics.fmean(values)


def _mean_name(metric: str) -> str:
    return "geometric mean" if metric in LOG_SCALE else "mean"


def write_report(results: list[Result], directory: Path, model: str, settings: dict, plots: list[str]) -> None:
    lines = [f"# Evaluation of {model}", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    by_task: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_task[result.task].append(result)
    for task, rows in by_task.items():
        metrics = list(dict.fromkeys(r.metric for r in rows))
        ok = [r for r in rows if r.ok]
        lines += ["", f"## {task}", ""]
        for metric in metrics:
            values = [r.value for r in ok if r.metric == metric]
            if values:
                lines.append(f"- {_mean_name(metric)} {metric} over {len(values)} languages: "
                             f"{_mean(metric, values):.4g}")
        accuracies = [r for r in ok if r.metric.startswith("accuracy")]
        if task == "retrieval" and accuracies:  # 1/n: a random embedding finds its translation among n by chance
            lines.append(f"- chance level: {statistics.fmean(1 / r.n for r in accuracies):.3g} (1 / sentence pairs)")
        table: dict[str, dict[str, Result]] = defaultdict(dict)
        for r in rows:
            table[r.language][r.metric] = r
        # n is per metric (fertility: words for tokens_per_word, tokens for bytes_per_token): show the first's.
        lines += ["", "| language | " + " | ".join(metrics) + f" | n ({metrics[0]}) |",
                  "|---" * (len(metrics) + 2) + "|"]
        for language in sorted(table):
            cells = [_format(table[language][m].value) if m in table[language] else "" for m in metrics]
            n = next(table[language][m].n for m in metrics if m in table[language])
            lines.append(f"| {language} | " + " | ".join(cells) + f" | {n} |")
        skipped_rows = sorted({(r.language, r.status) for r in rows if not r.ok})
        if skipped_rows:
            lines += ["", f"Skipped ({len(skipped_rows)}):", ""]
            lines += [f"- {language}: {status.removeprefix('skipped: ')}" for language, status in skipped_rows]
        lines += [""] + [f"![{p}]({p})" for p in plots if p.startswith(f"{task}-")]
    write_text_atomic(directory / "report.md", "\n".join(lines) + "\n")


# Settings that name the model itself: they differ between compared runs by design.
MODEL_SETTINGS = {"model", "model path"}
SHOWN_N_DIFFERENCES = 30


def differing_settings(settings: list[dict | None]) -> dict[str, list[str]]:
    """Setting → its value per run, for the settings (other than the model's own) that are not the same in every run
    that recorded settings; "–" where a run lacks the setting. Runs without settings (None) are left out."""
    recorded = [s for s in settings if s is not None]
    keys = dict.fromkeys(k for s in recorded for k in s if k not in MODEL_SETTINGS)
    values = {key: [str(s.get(key, "–")) if s is not None else "?" for s in settings] for key in keys}
    return {key: row for key, row in values.items()
            if len({v for v, s in zip(row, settings) if s is not None}) > 1}


def _settings_lines(models: list[str], settings: list[dict | None], differing: dict[str, list[str]]) -> list[str]:
    lines = []
    if differing:
        lines += ["## Settings that differ", "",
                  "The runs were not made the same way: score differences may come from these, not the models.", "",
                  "| setting | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        lines += [f"| {key} | " + " | ".join(row) + " |" for key, row in differing.items()] + [""]
    unknown = [model for model, s in zip(models, settings) if s is None]
    if unknown:
        lines += [f"No settings recorded (no results.json) for {', '.join(unknown)}: they could not be checked.", ""]
    return lines


def _n_difference_lines(models: list[str], counts: dict[tuple[str, str, str], dict[str, int]]) -> list[str]:
    """Cells scored by every model on a different number of examples (masked positions, pairs, test rows)."""
    differ = [key for key in sorted(counts)
              if len(counts[key]) == len(models) and len(set(counts[key].values())) > 1]
    if not differ:
        return []
    lines = ["## Scores over a different n", "",
             f"{len(differ)} task × language × metric cells were scored on a different number of examples per run "
             "(see `n` in each results.csv); their values are not measured alike.", "",
             "| task | language | metric | " + " | ".join(f"n {m}" for m in models) + " |",
             "|---" * (len(models) + 3) + "|"]
    lines += [f"| {' | '.join(key)} | " + " | ".join(str(counts[key][m]) for m in models) + " |"
              for key in differ[:SHOWN_N_DIFFERENCES]]
    if len(differ) > SHOWN_N_DIFFERENCES:
        lines.append(f"\n… and {len(differ) - SHOWN_N_DIFFERENCES} more.")
    return lines + [""]


def write_comparison(runs: list[list[Result]], directory: Path, settings: list[dict | None] | None = None) -> None:
    """Side by side: compare.csv (task, language, metric, one column per model), compare.md, one plot per metric.
    `settings`: each run's recorded settings (None where it has none); those that differ get a table."""
    models = [run[0].model for run in runs]
    settings = settings if settings is not None else [None] * len(runs)
    cells: dict[tuple[str, str, str], dict[str, float | None]] = defaultdict(dict)
    counts: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)  # n of the cells scored
    for run in runs:
        for r in run:
            cells[(r.task, r.language, r.metric)][r.model] = r.value if r.ok else None
            if r.ok:
                counts[(r.task, r.language, r.metric)][r.model] = r.n
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["task", "language", "metric", *models])
    for key in sorted(cells):
        writer.writerow([*key, *("" if cells[key].get(m) is None else f"{cells[key][m]:.6g}" for m in models)])
    write_text_atomic(directory / "compare.csv", buffer.getvalue())

    lines = [f"# Comparison: {', '.join(models)}", "",
             *_settings_lines(models, settings, differing_settings(settings)),
             "## Means", "", "Means over the languages that every model scored (geometric for "
             f"{', '.join(sorted(LOG_SCALE))}).", "",
             "| task | metric | languages | " + " | ".join(models) + " |", "|---" * (len(models) + 3) + "|"]
    plots = []
    for task, metric in sorted({(t, m) for t, _, m in cells}):
        shared = sorted(l for t, l, m in cells if (t, m) == (task, metric)
                        and all(cells[(t, l, m)].get(model) is not None for model in models))
        if not shared:
            continue
        means = [_mean(metric, [cells[(task, l, metric)][model] for l in shared]) for model in models]
        lines.append(f"| {task} | {metric} | {len(shared)} | " + " | ".join(f"{v:.4g}" for v in means) + " |")
        if metric in HEADLINE_METRICS.get(task, ()):
            name = f"compare-{task}-{metric}.png"
            plot_comparison({m: {l: cells[(task, l, metric)][m] for l in shared} for m in models},
                            f"{task} {metric}", directory / name, metric in LOG_SCALE)
            plots.append(name)
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    lines += [*_n_difference_lines(models, counts), "Per language: compare.csv."]
    write_text_atomic(directory / "compare.md", "\n".join(lines) + "\n")


def plot_comparison(values: dict[str, dict[str, float]], title: str, path: Path, log: bool = False) -> None:
    """Grouped bars per language, languages sorted by the first model's score."""
    plt = pyplot()
    models = list(values)
    first = values[models[0]]
    languages = sorted(first, key=lambda language: (-first[language], language))
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(6.0, 0.12 * len(languages) * len(models) + 2), 4))
    for i, model in enumerate(models):
        axis.bar([x + i * width for x in range(len(languages))], [values[model][l] for l in languages], width,
                 label=model)
    axis.set_xticks([x + 0.4 - width / 2 for x in range(len(languages))], languages, rotation=90, fontsize=6)
    axis.set(title=title, ylabel=title.split()[-1], xlim=(-0.5, len(languages)))
    if log:
        axis.set_yscale("log")
        _no_minor_labels(axis)
    axis.legend(fontsize=8)
    save_png(figure, path, dpi=110, bbox_inches="tight")
