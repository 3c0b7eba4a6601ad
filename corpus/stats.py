"""Corpus statistics: assemble `stats.json` and `counts.csv`, print the table, draw the plot, derive LID thresholds.

In: the pipeline's summed events `[[language, step, reason], [documents, bytes, words]]` (step "in", "out", or the
step that removed them). Out: `stats.json`:

    {"parameters": {...}, "totals": {documents_in, documents_out, bytes_in, bytes_out, removed: {reason: n}},
     "removed_before_language_id": {reason: {documents, bytes, words}},
     "languages": {"fra_Latn": {documents_in, bytes_in, words_in, documents_out, bytes_out, words_out,
                                removed: {step: {reason: {documents, bytes, words}}}}}}

and `counts.csv` (`language,tokens`), whose `tokens` column holds each language's UTF-8 bytes of kept text — a byte
count, not a token count (the sampler needs relative sizes; divide by a tokenizer's bytes/token for tokens).
"""

from __future__ import annotations

import json
from collections import defaultdict

SIZE_FIELDS = ("documents", "bytes", "words")


def _empty_language() -> dict:
    entry = {f"{size}_{side}": 0 for side in ("in", "out") for size in SIZE_FIELDS}
    entry["removed"] = {}
    return entry


def assemble(rows: list, parameters: dict) -> dict:
    languages: dict[str, dict] = defaultdict(_empty_language)
    before_lid: dict[str, dict] = {}
    for (language, step, reason), values in rows:
        sizes = dict(zip(SIZE_FIELDS, values))
        if step in ("in", "out"):
            for size, value in sizes.items():
                languages[language][f"{size}_{step}"] += value
        elif not language:  # one reason can come from several steps (empty_text: read and extract): add them up
            merged = before_lid.setdefault(reason, dict.fromkeys(SIZE_FIELDS, 0))
            for size, value in sizes.items():
                merged[size] += value
        else:
            languages[language]["removed"].setdefault(step, {})[reason] = sizes
    for entry in languages.values():  # the same bytes whatever order the workers reported in
        entry["removed"] = {step: dict(sorted(reasons.items())) for step, reasons in sorted(entry["removed"].items())}
    stats = {"parameters": parameters, "removed_before_language_id": dict(sorted(before_lid.items())),
             "languages": {label: languages[label] for label in sorted(languages)}}
    stats["totals"] = totals(stats)
    return stats


def totals(stats: dict) -> dict:
    result = {f"{size}_{side}": 0 for side in ("in", "out") for size in SIZE_FIELDS}
    removed: dict[str, int] = defaultdict(int)
    for entry in stats["languages"].values():
        for key in result:
            result[key] += entry[key]
        for reasons in entry["removed"].values():
            for reason, sizes in reasons.items():
                removed[reason] += sizes["documents"]
    for reason, sizes in stats["removed_before_language_id"].items():  # in the totals' "in" too: in = out + removed
        removed[reason] += sizes["documents"]
        for size in SIZE_FIELDS:
            result[f"{size}_in"] += sizes[size]
    result["languages_out"] = sum(1 for entry in stats["languages"].values() if entry["documents_out"])
    result["removed"] = dict(sorted(removed.items()))
    return result


def merge(previous: dict, rebuilt: dict, languages: set[str]) -> dict:
    """`previous` with the entries of `languages` replaced by `rebuilt`'s (a `--languages` run)."""
    merged_languages = {label: entry for label, entry in previous["languages"].items() if label not in languages}
    merged_languages.update({label: entry for label, entry in rebuilt["languages"].items() if label in languages})
    stats = {"parameters": dict(previous["parameters"], last_rebuild=rebuilt["parameters"]),
             "removed_before_language_id": previous["removed_before_language_id"],
             "languages": dict(sorted(merged_languages.items()))}
    stats["totals"] = totals(stats)
    return stats


def counts_csv(stats: dict) -> str:
    """UTF-8 bytes kept per language, as the counts file `mmbert languages sample` reads."""
    from languages.sampling import format_counts_csv

    return format_counts_csv({label: entry["bytes_out"] for label, entry in stats["languages"].items()
                              if entry["documents_out"]})


def write_outputs(root: str, stats: dict) -> None:
    """stats.json, counts.csv, then _SUCCESS (last: a directory without it is incomplete)."""
    from apache_beam.io.filesystems import FileSystems

    files = (("stats.json", json.dumps(stats, indent=1, ensure_ascii=False, sort_keys=False) + "\n"),
             ("counts.csv", counts_csv(stats)), ("_SUCCESS", ""))
    for name, text in files:
        with FileSystems.create(FileSystems.join(root, name)) as handle:
            handle.write(text.encode("utf-8"))


def load(root: str) -> dict:
    from apache_beam.io.filesystems import FileSystems

    from mmbert.errors import UsageError

    if not FileSystems.exists(FileSystems.join(root, "_SUCCESS")):
        raise UsageError(f"{root} is not a finished corpus (no _SUCCESS); run `mmbert corpus build` first")
    if not FileSystems.exists(FileSystems.join(root, "stats.json")):
        raise UsageError(f"{root} has no stats.json (a corpus from another tool?); rebuild it with `mmbert corpus build`")
    with FileSystems.open(FileSystems.join(root, "stats.json")) as handle:
        try:
            stats = json.loads(handle.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise UsageError(f"{root}/stats.json is not readable JSON ({error}); rebuild the corpus") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("languages"), dict):
        raise UsageError(f"{root}/stats.json has no per-language table; rebuild the corpus")
    return stats


def biggest_first(stats: dict) -> list[tuple[str, dict]]:
    """Languages by the text the corpus keeps for them, the largest first: the order of the table and the plot."""
    return sorted(stats["languages"].items(), key=lambda kv: (-kv[1]["bytes_out"], kv[0]))


def table(stats: dict, top: int | None = None) -> str:
    """A fixed-width table: one row per language, biggest first, then the totals and removal reasons."""
    header = f"{'language':<12}{'docs in':>9}{'docs out':>10}{'kept':>7}{'MB out':>9}{'words out':>11}  top removal"
    lines = [header, "-" * len(header)]
    rows = biggest_first(stats)
    for label, entry in rows[:top] if top else rows:
        reasons = [(sizes["documents"], reason) for step in entry["removed"].values() for reason, sizes in step.items()]
        worst = max(reasons)[1] if reasons else ""
        kept = entry["documents_out"] / entry["documents_in"] if entry["documents_in"] else 0.0
        lines.append(f"{label:<12}{entry['documents_in']:>9}{entry['documents_out']:>10}{kept:>7.0%}"
                     f"{entry['bytes_out'] / 1e6:>9.2f}{entry['words_out']:>11}  {worst}")
    total = stats["totals"]
    lines += ["-" * len(header), f"{'total':<12}{total['documents_in']:>9}{total['documents_out']:>10}"
              f"{'':>7}{total['bytes_out'] / 1e6:>9.2f}{total['words_out']:>11}  {total['languages_out']} languages",
              "", "removed (documents): " + ", ".join(f"{r} {n}" for r, n in total["removed"].items())]
    return "\n".join(lines)


def plot(stats: dict, path: str, top: int = 40) -> None:
    """Horizontal bars of kept and removed bytes per language (the `top` biggest), saved as PNG."""
    from mmbert.plots import pyplot, save_png

    plt = pyplot()
    rows = biggest_first(stats)[:top][::-1]  # the same languages as the table's --top, largest at the top
    labels = [label for label, _ in rows]
    kept = [entry["bytes_out"] / 1e6 for _, entry in rows]
    dropped = [(entry["bytes_in"] - entry["bytes_out"]) / 1e6 for _, entry in rows]
    figure, axis = plt.subplots(figsize=(8, max(3, 0.22 * len(rows) + 1)))
    axis.barh(labels, kept, label="kept")
    axis.barh(labels, dropped, left=kept, label="removed (LID, filters, dedup)", color="#cccccc")
    axis.set_xlabel("MB of text")
    axis.set_title(f"corpus: {stats['totals']['languages_out']} languages, {stats['totals']['documents_out']} documents")
    axis.legend(loc="lower right")
    axis.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    save_png(figure, path, dpi=120)
