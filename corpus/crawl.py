"""`mmbert corpus crawl`: fetch a URL list politely into WARC.gz files that `mmbert corpus build` reads.

In:  a text file of URLs, one per line (blank lines and `#` comments skipped; duplicates fetched once).
Out: DIR/crawl-SSSSS-of-NNNNN.warc.gz (WARC request + response records of every 2xx fetch),
     DIR/crawl_stats.json (each URL's outcome counted under a reason: fetched, robots_disallowed, timeout, too_large,
     bad_scheme, http_error, redirect_loop…; events: redirects, retries, bytes; the run's parameters),
     DIR/_SUCCESS last. A local DIR appears whole or not at all.

The rules of politeness are in `corpus.fetch`, the Beam job in `corpus.crawl_pipeline`; this module is the command
line and the driver. Beam is imported inside the handler so `mmbert --help` stays quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from corpus.crawl_policy import CrawlPolicy
from mmbert.beam import add_runner_arguments, runner_arguments
from mmbert.errors import UsageError
from mmbert.paths import is_remote

EPILOG = """\
examples:
  mmbert corpus crawl --urls urls.txt --output out/crawl
  mmbert corpus crawl --urls urls.txt --output out/crawl --delay 2 --max-bytes 5000000 --num-workers 16
  mmbert corpus build --input 'out/crawl/*.warc.gz' --output out/corpus

Each origin (scheme://host:port) is fetched by one worker, one request at a time, at least --delay seconds apart
(longer when its robots.txt asks with Crawl-delay); different origins are fetched in parallel.
"""


def register(corpus_subparsers) -> argparse.ArgumentParser:
    """Add `crawl` to the `mmbert corpus` group's sub-parsers."""
    from mmbert.argtypes import HelpFormatter

    defaults = CrawlPolicy()
    p = corpus_subparsers.add_parser(
        "crawl",
        help="fetch a URL list politely into WARC files",
        description="Fetch a URL list politely into WARC.gz files that `mmbert corpus build` reads: robots.txt "
        "honoured,\nper-host rate limit, timeouts, retries with backoff, a size cap, http(s) only, bounded redirects.\n"
        "Writes DIR/crawl-*.warc.gz, DIR/crawl_stats.json (every URL counted under its outcome) and DIR/_SUCCESS.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--urls", required=True, metavar="FILE", help="text file of URLs, one per line")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="directory for the WARC.gz files and crawl_stats.json")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--user-agent", default=defaults.user_agent, help="User-Agent sent and matched against robots.txt "
                   "(add a contact URL for real crawls; default: %(default)r)")
    p.add_argument("--delay", type=float, default=defaults.delay_s, metavar="S",
                   help="minimum seconds between two requests to one host (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=defaults.read_timeout_s, metavar="S",
                   help="read timeout, and the limit for a whole body (default: %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=defaults.connect_timeout_s, metavar="S",
                   help="(default: %(default)s)")
    p.add_argument("--retries", type=int, default=defaults.max_retries, metavar="N",
                   help="retries after a timeout, connection error, 429 or 5xx (default: %(default)s)")
    p.add_argument("--backoff", type=float, default=defaults.backoff_s, metavar="S",
                   help="first wait before a retry, doubled each time (default: %(default)s)")
    p.add_argument("--max-bytes", type=int, default=defaults.max_bytes, metavar="N",
                   help="skip responses larger than this (default: %(default)s)")
    p.add_argument("--max-redirects", type=int, default=defaults.max_redirects, metavar="N",
                   help="(default: %(default)s)")
    p.add_argument("--num-files", type=int, default=1, metavar="N",
                   help="number of WARC files; one worker writes each, so keep a file to ~1 GB (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=8, metavar="N",
                   help="DirectRunner threads, i.e. hosts fetched at once (default: %(default)s)")
    add_runner_arguments(p)
    p.set_defaults(func=crawl_command)
    return p


def crawl_command(args: argparse.Namespace) -> int:
    policy = CrawlPolicy(
        user_agent=args.user_agent,
        delay_s=args.delay,
        connect_timeout_s=args.connect_timeout,
        read_timeout_s=args.timeout,
        max_retries=args.retries,
        backoff_s=args.backoff,
        max_bytes=args.max_bytes,
        max_redirects=args.max_redirects,
    )
    stats = run_crawl(
        args.urls,
        args.output,
        policy,
        num_shards=args.num_files,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        pipeline_args=runner_arguments(args),
    )
    outcomes = stats["outcomes"]
    skipped = ", ".join(f"{reason} {n}" for reason, n in outcomes.items() if n and reason != "fetched")
    print(f"crawled {stats['urls']} URLs: fetched {outcomes['fetched']}" + (f"; skipped {skipped}" if skipped else ""))
    print(f"wrote {args.output}")
    return 0


# The command-line flag of each CrawlPolicy field, so that an error names what the user typed.
POLICY_FLAGS = {"user_agent": "--user-agent", "delay_s": "--delay", "connect_timeout_s": "--connect-timeout",
                "read_timeout_s": "--timeout", "max_retries": "--retries", "backoff_s": "--backoff",
                "max_bytes": "--max-bytes", "max_redirects": "--max-redirects"}


def check_arguments(urls: str, output: str, policy: CrawlPolicy, num_shards: int, num_workers: int,
                    overwrite: bool) -> None:
    """Raise UsageError naming the first unusable argument; nothing has been written yet."""
    from apache_beam.io.filesystems import FileSystems

    problems = policy.check()
    if problems:
        named = []
        for problem in problems:
            field = problem.split(" ", 1)[0]
            named.append(f"{POLICY_FLAGS[field]} ({problem})" if field in POLICY_FLAGS else problem)
        raise UsageError("; ".join(named))
    if num_shards < 1:
        raise UsageError(f"--num-files must be >= 1, got {num_shards}")
    if num_workers < 1:
        raise UsageError(f"--num-workers must be >= 1, got {num_workers}")
    try:
        matched = FileSystems.match([urls])[0].metadata_list
    except Exception as error:  # Beam raises BeamIOError for unknown schemes and missing buckets alike
        raise UsageError(f"--urls {urls}: cannot be read ({error})") from None
    if not matched:
        raise UsageError(f"--urls {urls}: no such file")
    if not is_remote(urls) and os.path.isdir(urls):
        raise UsageError(f"--urls {urls} is a directory; name the file that lists the URLs")
    if is_remote(output):
        if FileSystems.exists(output) and FileSystems.match([FileSystems.join(output, "*")])[0].metadata_list:
            raise UsageError(f"--output {output} is not empty (remote outputs cannot be overwritten; pick a new one)")
        return
    from corpus.pipeline import check_output

    check_output(output, overwrite, languages=None)  # the same rules as `corpus build`'s output


def run_crawl(
    urls: str,
    output: str,
    policy: CrawlPolicy,
    *,
    num_shards: int = 1,
    num_workers: int = 8,
    overwrite: bool = False,
    pipeline_args: list[str] | None = None,
) -> dict:
    """Crawl the URLs listed in `urls` into `output`; returns the crawl_stats.json document.

    `pipeline_args` (e.g. `mmbert.beam.runner_arguments(args)`) override the local multi-threaded DirectRunner.
    """
    check_arguments(urls, output, policy, num_shards, num_workers, overwrite)
    if is_remote(output):  # written in place; _SUCCESS, written last, marks it complete
        return _run_pipeline(urls, output, policy, num_shards, num_workers, list(pipeline_args or []))
    from mmbert.atomic import atomic_directory

    with atomic_directory(output, overwrite=overwrite) as work_dir:
        return _run_pipeline(urls, str(work_dir), policy, num_shards, num_workers, list(pipeline_args or []))


def _run_pipeline(urls, output_dir, policy, num_shards, num_workers, pipeline_args) -> dict:
    import json

    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from corpus.crawl_pipeline import STATS_FILE, Crawl, write_empty_shards
    from mmbert.beam import new_pipeline

    # Fetching waits on the network, not the CPU: threads, one origin each, are the cheap way to overlap hosts.
    pipeline = new_pipeline(pipeline_args, num_workers, running_mode="multi_threading")
    parameters = {
        "urls": urls,
        "num_shards": num_shards,
        "runner": pipeline.options.get_all_options()["runner"],
        "policy": dataclasses.asdict(policy),
    }
    with pipeline:
        _ = pipeline | "ReadUrls" >> beam.io.ReadFromText(urls, coder=beam.coders.BytesCoder()) | "Crawl" >> Crawl(
            output_dir, policy, num_shards, parameters
        )
    write_empty_shards(output_dir, num_shards)
    with FileSystems.open(FileSystems.join(output_dir, STATS_FILE)) as handle:
        stats = json.loads(handle.read().decode("utf-8"))
    with FileSystems.create(FileSystems.join(output_dir, "_SUCCESS")) as handle:
        handle.write(b"")
    return stats
