"""The crawl as Beam transforms: URL lines in, WARC.gz shards and per-outcome counts out.

    lines ─ CleanUrls ─ KeyByOrigin ─┬─ GroupByKey(origin) ─ CrawlOrigin (serial, throttled) ─┬─ WriteWarcShards
                                     └─ rejected (bad_scheme, invalid_url) ───────────────────┴─ CountOutcomes

Grouping by origin is what makes the rate limit hold on any runner: one origin's URLs are fetched by one DoFn call,
one after the other, while different origins run on different workers (or threads, on the DirectRunner).
Fetched records are stored once per final URL (the listed URL that sorts first keeps them; the others that redirect
there are `duplicate`), in `num_shards` files chosen by a stable hash of the URL, each file's records sorted by URL,
so the layout does not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from corpus.crawl_policy import FETCHED, OUTCOMES, CrawlPolicy
from corpus.fetch import FetchResult, PoliteFetcher, url_origin, url_problem

STATS_FILE = "crawl_stats.json"
EVENTS = ("redirects", "retries", "bytes_fetched")


def clean_url_line(line: bytes | str) -> str | None:
    """A URL from one line of the list: blank lines and `#` comments are skipped, surrounding space stripped. A line
    that is not UTF-8 keeps U+FFFD where its bad bytes were, which `url_problem` calls an invalid URL."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    url = line.strip().lstrip("\ufeff").strip()  # a byte-order mark before the first URL is not part of it
    if not url or url.startswith("#"):
        return None
    return url.split("#", 1)[0]  # a fragment names a place in the page, not another page


def shard_of(url: str, num_shards: int) -> int:
    return xxhash.xxh64_intdigest(url.encode("utf-8")) % num_shards


def warc_shard_name(shard: int, num_shards: int) -> str:
    return f"crawl-{shard:05d}-of-{num_shards:05d}.warc.gz"


class KeyByOrigin(beam.DoFn):
    """(origin, url) for fetchable URLs; a FetchResult on the `rejected` output for the others."""

    REJECTED = "rejected"

    def process(self, url: str):
        problem = url_problem(url)
        if problem:
            yield beam.pvalue.TaggedOutput(self.REJECTED, FetchResult(url=url, outcome=problem, detail=url))
        else:
            yield url_origin(url), url


class CrawlOrigin(beam.DoFn):
    """Fetches one origin's URLs serially under the crawl policy; one FetchResult per URL."""

    def __init__(self, policy: CrawlPolicy):
        self.policy = policy

    def setup(self):
        self.fetcher = PoliteFetcher(self.policy)
        self._counters = {outcome: Metrics.counter("mmbert.crawl", outcome) for outcome in OUTCOMES}
        self._bytes = Metrics.counter("mmbert.crawl", "bytes_fetched")

    def process(self, element):
        _origin, urls = element
        fetched: set[str] = set()  # final URLs stored: a redirect onto one is not requested again
        for url in sorted(set(urls)):  # sorted: the same order of requests on every run
            result = self.fetcher.fetch(url, already_fetched=fetched)
            if result.outcome == FETCHED:
                fetched.add(result.final_url)
            self._counters[result.outcome].inc()  # live progress in the runner's metrics
            self._bytes.inc(result.bytes)
            yield result

    def teardown(self):
        self.fetcher.close()


class WriteWarcShard(beam.DoFn):
    """Writes one shard's records (sorted by URL) to a temporary name, then renames it into place."""

    def __init__(self, output_dir: str, num_shards: int):
        self.output_dir, self.num_shards = output_dir, num_shards

    def process(self, element):
        shard, records = element
        final = FileSystems.join(self.output_dir, warc_shard_name(shard, self.num_shards))
        temporary = FileSystems.join(self.output_dir, f".{warc_shard_name(shard, self.num_shards)}.tmp")
        # UNCOMPRESSED: the records are gzip members already; Beam would otherwise gzip the .gz name again.
        with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for _url, blob in sorted(records):
                handle.write(blob)
        FileSystems.rename([temporary], [final])
        yield final


def write_empty_shards(output_dir: str, num_shards: int) -> None:
    """Every shard file exists, empty when no record reached it: `--shards N` means N files, and a crawl that fetched
    nothing still gives `corpus build --input 'OUT/*.warc.gz'` files to read (each counted as an empty file)."""
    for shard in range(num_shards):
        path = FileSystems.join(output_dir, warc_shard_name(shard, num_shards))
        if not FileSystems.exists(path):
            FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED).close()


def one_per_final_url(element):
    """Fetched results that reached one final URL (redirects from several listed URLs, across origins): the one
    listed first keeps its records, the others become `duplicate`."""
    _final_url, results = element
    first, *others = sorted(results, key=lambda result: result.url)
    yield first
    for result in others:
        yield dataclasses.replace(result, outcome="duplicate", warc_records=b"", bytes=0,
                                  detail=f"same page as {first.url}")


def outcome_counts(result: FetchResult):
    yield result.outcome, 1
    yield "redirects", result.redirects
    yield "retries", result.retries
    yield "bytes_fetched", result.bytes


def stats_document(counts: dict[str, int], parameters: dict) -> dict:
    """crawl_stats.json: every outcome (each URL has exactly one), the events, and the run's parameters."""
    outcomes = {outcome: int(counts.get(outcome, 0)) for outcome in OUTCOMES}
    return {
        "urls": sum(outcomes.values()),
        "outcomes": outcomes,
        "events": {event: int(counts.get(event, 0)) for event in EVENTS},
        "parameters": parameters,
    }


class WriteStats(beam.DoFn):
    def __init__(self, output_dir: str, parameters: dict):
        self.output_dir, self.parameters = output_dir, parameters

    def process(self, counts: dict):
        path = FileSystems.join(self.output_dir, STATS_FILE)
        text = json.dumps(stats_document(counts, self.parameters), indent=2, sort_keys=False) + "\n"
        with FileSystems.create(path, mime_type="application/json") as handle:
            handle.write(text.encode("utf-8"))
        yield path


class Crawl(beam.PTransform):
    """URL lines → WARC.gz shards and crawl_stats.json in `output_dir`."""

    def __init__(self, output_dir: str, policy: CrawlPolicy, num_shards: int, parameters: dict):
        super().__init__()
        self.output_dir, self.policy, self.num_shards, self.parameters = output_dir, policy, num_shards, parameters

    def expand(self, lines):
        keyed = (
            lines
            | "CleanUrls" >> beam.FlatMap(lambda line: [url] if (url := clean_url_line(line)) else [])
            | "Deduplicate" >> beam.Distinct()
            | "KeyByOrigin" >> beam.ParDo(KeyByOrigin()).with_outputs(KeyByOrigin.REJECTED, main="fetchable")
        )
        fetched = (
            keyed.fetchable
            | "GroupByOrigin" >> beam.GroupByKey()
            | "CrawlOrigin" >> beam.ParDo(CrawlOrigin(self.policy))
        )
        stored = (
            fetched
            | "OnlyFetched" >> beam.Filter(lambda result: result.outcome == FETCHED)
            | "KeyByFinalUrl" >> beam.Map(lambda result: (result.final_url, result))
            | "GroupByFinalUrl" >> beam.GroupByKey()
            | "OnePerFinalUrl" >> beam.FlatMap(one_per_final_url)
        )
        not_stored = fetched | "NotFetched" >> beam.Filter(lambda result: result.outcome != FETCHED)
        results = (stored, not_stored, keyed[KeyByOrigin.REJECTED]) | "AllResults" >> beam.Flatten()
        warc_files = (  # shards no record reached are written empty afterwards (`write_empty_shards`)
            stored
            | "OnlyStored" >> beam.Filter(lambda result: result.outcome == FETCHED)  # not the `duplicate`s
            | "KeyByShard" >> beam.Map(lambda r: (shard_of(r.url, self.num_shards), (r.url, r.warc_records)))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteWarcShards" >> beam.ParDo(WriteWarcShard(self.output_dir, self.num_shards))
        )
        stats = (
            results
            | "OutcomeCounts" >> beam.FlatMap(outcome_counts)
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "ToDict" >> beam.combiners.ToDict()
            | "WriteStats" >> beam.ParDo(WriteStats(self.output_dir, self.parameters))
        )
        return warc_files, stats
