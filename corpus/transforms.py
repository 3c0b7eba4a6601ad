"""The corpus steps as Beam PTransforms: thin wrappers over the pure per-document functions.

Every step has one main output (records or documents) and a `removed` output of `Removed` entries; `pipeline.py`
flattens the removals into the statistics and, optionally, `OUT/_removed/<reason>/`. Each removal also increments a
Beam counter `corpus/<step>.<reason>`, and each language has `corpus.languages/<label>.in` and `.out`, so a
runner's UI (or `PipelineResult.metrics()`) shows progress live.

    ReadInputs      file paths → records                                 (inputs.read_records)
    ExtractText     records → documents with text                        (extract.extract_text)
    IdentifyLanguage documents → + language, language_score, script      (lid.LanguageIdentifier, batched)
    QualityFilter   documents → documents that pass, + signal columns    (filters.quality_filter)
    ExactDedup      one document per (language, normalised-text hash)    (dedup.exact_hash; a combiner, no hot key)
    MinHashDedup    drop near-duplicates, set cluster_size                (dedup.minhash_signature, band_keys)
    WriteParquet    documents → <root>/<prefix>-NNNNN.parquet              (pyarrow, through Beam FileSystems)
"""

from __future__ import annotations

import math
from typing import Any

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam.metrics import Metrics

from corpus import dedup, extract, filters, inputs
from corpus.records import OUTPUT_COLUMNS, Removed, utf8_size
from corpus.segmentation import count_words, script_of_label

REMOVED = "removed"


def _count(step: str, reason: str):
    return Metrics.counter("corpus", f"{step}.{reason}")


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _ReadFile(beam.DoFn):
    def __init__(self, max_page_bytes: int, text_field: str):
        self.max_page_bytes, self.text_field = max_page_bytes, text_field
        self.records = Metrics.counter("corpus", "read.records")

    def process(self, path):
        for item in inputs.read_records(path, self.max_page_bytes, self.text_field):
            if isinstance(item, Removed):
                _count(item.step, item.reason).inc()
                yield beam.pvalue.TaggedOutput(REMOVED, item)
            else:
                self.records.inc()
                yield item


class ReadInputs(beam.PTransform):
    """Resolved input paths → records; Reshuffle spreads the files over workers."""

    def __init__(self, paths: list[str], max_page_bytes: int = inputs.DEFAULT_MAX_PAGE_BYTES, text_field: str = "text"):
        super().__init__()
        self.paths, self.max_page_bytes, self.text_field = paths, max_page_bytes, text_field

    def expand(self, pbegin):
        return (pbegin | "Paths" >> beam.Create(self.paths) | "SpreadFiles" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadFile(self.max_page_bytes, self.text_field))
                .with_outputs(REMOVED, main="records"))


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _Extract(beam.DoFn):
    def __init__(self, extractor: str):
        self.extractor = extractor

    def process(self, record):
        if "text" in record:  # JSONL / Parquet input: already text
            yield record
            return
        document, reason = extract.extract_text(record, self.extractor)
        if reason:
            _count("extract", reason).inc()
            yield beam.pvalue.TaggedOutput(REMOVED, Removed(reason, "extract", len(record["payload"])))
        else:
            yield document


class ExtractText(beam.PTransform):
    def __init__(self, extractor: str = "resiliparse"):
        super().__init__()
        self.extractor = extractor

    def expand(self, records):
        return records | "Extract" >> beam.ParDo(_Extract(self.extractor)).with_outputs(REMOVED, main="documents")


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _Identify(beam.DoFn):
    """Batched fastText prediction; the model loads once per worker in setup()."""

    def __init__(self, model_path: str | None, thresholds: dict[str, float], min_language_score: float | None,
                 languages: frozenset[str] | None):
        self.model_path, self.thresholds = model_path, thresholds
        self.min_language_score, self.languages = min_language_score, languages
        self.identifier = None

    def setup(self):
        from corpus.lid import LanguageIdentifier

        self.identifier = LanguageIdentifier(self.model_path)

    def threshold(self, language: str) -> float:
        if self.min_language_score is not None:
            return self.min_language_score
        if language in self.thresholds:
            return self.thresholds[language]
        return filters.language_score_threshold(language)

    def process(self, batch):
        for document, (language, score, script) in zip(batch, self.identifier.identify([d["text"] for d in batch])):
            size = utf8_size(document["text"])
            if language is None:
                _count("lid", "unknown_label").inc()
                yield beam.pvalue.TaggedOutput(REMOVED, Removed("lid_unknown_label", "lid", size))
                continue
            if self.languages is not None and language not in self.languages:
                continue  # --languages: other languages are not part of this build
            words = count_words(document["text"], script_of_label(language))
            document = dict(document, language=language, language_score=score, script=script, words=words)
            Metrics.counter("corpus.languages", f"{language}.in").inc()  # live per-language progress
            yield beam.pvalue.TaggedOutput("seen", (language, size, document["words"]))
            if score < self.threshold(language):
                _count("lid", "low_confidence").inc()
                yield beam.pvalue.TaggedOutput(REMOVED, Removed("lid_low_confidence", "lid", size, document["words"],
                                                                language, document))
            else:
                yield document


class IdentifyLanguage(beam.PTransform):
    """Documents → language-labelled documents (main), `seen` (language, bytes, words) and `removed`."""

    def __init__(self, model_path: str | None = None, thresholds: dict[str, float] | None = None,
                 min_language_score: float | None = None, languages: frozenset[str] | None = None,
                 batch_size: int = 256):
        super().__init__()
        self.fn = _Identify(model_path, thresholds or {}, min_language_score, languages)
        self.batch_size = batch_size

    def expand(self, documents):
        return (documents
                | "Batch" >> beam.BatchElements(min_batch_size=8, max_batch_size=self.batch_size)
                | "Identify" >> beam.ParDo(self.fn).with_outputs(REMOVED, "seen", main="documents"))


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _Filter(beam.DoFn):
    def process(self, document):
        reason, signals = filters.quality_filter(document["text"], document["language"])
        signals.pop("words", None)  # the LID step's count of words is the one the statistics use
        document = dict(document, **signals)
        if reason:
            _count("filters", reason).inc()
            yield beam.pvalue.TaggedOutput(REMOVED, Removed(reason, "filters", utf8_size(document["text"]),
                                                            document["words"], document["language"], document))
        else:
            yield document


class QualityFilter(beam.PTransform):
    def expand(self, documents):
        return documents | "Filter" >> beam.ParDo(_Filter()).with_outputs(REMOVED, main="documents")


def _document_order(document: dict) -> tuple:
    # Every written field: copies with the same id and text (ids repeated across JSONL shards, WARC records without
    # one) must not leave the choice of url or date to the order they arrive in.
    return (document["id"], document["text"], document.get("url", ""), document.get("date", ""),
            document.get("source", ""))


class _KeepFirstCombineFn(beam.CombineFn):
    """Per exact-hash key: the document with the smallest id, how many there were, and what the others weighed."""

    def create_accumulator(self):
        return None, 0, 0, 0  # best document, count, bytes and words of the dropped ones

    def add_input(self, accumulator, document):
        return self.merge_accumulators([accumulator, (document, 1, 0, 0)])

    def merge_accumulators(self, accumulators):
        best, count, dropped_bytes, dropped_words = None, 0, 0, 0
        for doc, n, b, w in accumulators:
            count, dropped_bytes, dropped_words = count + n, dropped_bytes + b, dropped_words + w
            if doc is None:
                continue
            if best is None:
                best = doc
                continue
            loser = doc if _document_order(best) <= _document_order(doc) else best
            best = best if loser is doc else doc
            dropped_bytes += utf8_size(loser["text"])
            dropped_words += loser["words"]
        return best, count, dropped_bytes, dropped_words

    def extract_output(self, accumulator):
        return accumulator


def _exact_key(document):
    return (document["language"], dedup.exact_hash(document["text"])), document


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
def _emit_exact(keyed):
    _, (document, count, dropped_bytes, dropped_words) = keyed
    document = dict(document, cluster_size=count)
    if count > 1:
        _count("dedup_exact", "exact_duplicate").inc(count - 1)
        yield beam.pvalue.TaggedOutput("stats", ((document["language"], "dedup_exact", "exact_duplicate"),
                                                 (count - 1, dropped_bytes, dropped_words)))
    yield document


class ExactDedup(beam.PTransform):
    """One document per (language, normalised-text hash): the smallest id; `cluster_size` counts the copies."""

    def expand(self, documents):
        return (documents
                | "KeyByHash" >> beam.Map(_exact_key)
                | "KeepFirst" >> beam.CombinePerKey(_KeepFirstCombineFn())
                | "Emit" >> beam.FlatMap(_emit_exact).with_outputs("stats", main="documents"))


def _dedup_key(document: dict) -> tuple[str, int]:
    """A document's identity in MinHash dedup: its id, then a hash of its text, since inputs may repeat ids (JSONL
    shards numbered from 0, WARC records without an id), and a shared id must neither join two documents' fates nor
    make the choice between them depend on input order."""
    return document["id"], xxhash.xxh3_64_intdigest(document["text"].encode("utf-8"))


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _BandKeys(beam.DoFn):
    def __init__(self, config: dedup.MinHashConfig):
        self.config = config

    def process(self, document):
        signature = dedup.minhash_signature(document["text"], document["language"], self.config)
        member = (_dedup_key(document), signature.tobytes(), document.get("cluster_size", 1))
        for band, value in dedup.band_keys(signature, self.config):
            yield (document["language"], band, value), member


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
class _BucketDuplicates(beam.DoFn):
    """In one LSH bucket, in key order: a member confirmed similar to an earlier kept member is its duplicate; any
    other member is kept and later members are compared with it too.

    So no two kept members of a bucket (up to MAX_COMPARED of them) are confirmed similar (comparing with the
    smallest member alone kept B and C, similar to each other, when the smallest was similar to neither). A bucket of
    true near-duplicates keeps one
    member and compares each of the others once; its members are held, sorted, while it is read. A bucket of many
    dissimilar members (pages sharing boilerplate) would cost a comparison per pair: members are compared with the
    first MAX_COMPARED kept ones only, which bounds a bucket of n members to n × MAX_COMPARED comparisons.
    """

    MAX_COMPARED = 2048  # ~0.15 ms per member here: 100k dissimilar members in 16 s (~7 min when uncapped)

    def __init__(self, threshold: float):
        self.threshold = threshold

    def process(self, keyed):
        (language, _, _), members = keyed
        members = sorted(members, key=lambda member: member[0])
        if len(members) < 2:
            return
        kept_keys: list = []  # the kept members compared with (the first MAX_COMPARED)
        kept = np.empty((min(len(members), self.MAX_COMPARED), len(members[0][1]) // 8), dtype=np.uint64)
        for member_key, signature, member_weight in members:
            signature = np.frombuffer(signature, dtype=np.uint64)
            if kept_keys:
                similar = np.flatnonzero(dedup.estimated_jaccard(kept[:len(kept_keys)], signature) >= self.threshold)
                if similar.size:
                    yield beam.pvalue.TaggedOutput("duplicate", ((language, member_key), 1))
                    # An edge to the first (smallest) kept member it matches; the same one may come from other bands.
                    yield (language, kept_keys[similar[0]], member_key, member_weight)
                    continue
            if len(kept_keys) < self.MAX_COMPARED:
                kept[len(kept_keys)] = signature
                kept_keys.append(member_key)


@beam.typehints.with_output_types(Any)  # tagged outputs: Beam cannot infer one type
def _resolve(keyed):
    (language, _), grouped = keyed
    is_duplicate = bool(list(grouped["duplicate"]))
    absorbed = sum(grouped["absorbed"])
    for document in grouped["document"]:
        if is_duplicate:
            _count("dedup_minhash", "near_duplicate").inc()
            yield beam.pvalue.TaggedOutput(REMOVED, Removed("near_duplicate", "dedup_minhash",
                                                            utf8_size(document["text"]), document["words"], language))
        else:
            yield dict(document, cluster_size=document.get("cluster_size", 1) + absorbed)


class MinHashDedup(beam.PTransform):
    """Near-duplicate removal per language with MinHash LSH, as Beam shuffles only.

    Rule: within each LSH bucket, members are taken in key order (id, then text hash: `_dedup_key`); a member
    confirmed similar (estimated Jaccard ≥ threshold) to an earlier member that was kept in that bucket is dropped. A
    document is dropped when any of its buckets drops it. So two documents that share a bucket and are confirmed
    similar never both survive, and the smallest key of a bucket always survives it. The outcome depends only on ids
    and texts: the same for any number of workers or input order.
    Survivors' `cluster_size` = their exact copies + the copies of every document they absorbed (in any band).
    """

    def __init__(self, config: dedup.MinHashConfig = dedup.MinHashConfig()):
        super().__init__()
        self.config = config

    def expand(self, documents):
        buckets = (documents
                   | "BandKeys" >> beam.ParDo(_BandKeys(self.config))
                   | "GroupBuckets" >> beam.GroupByKey()
                   | "Duplicates" >> beam.ParDo(_BucketDuplicates(self.config.threshold))
                   .with_outputs("duplicate", main="absorbed"))
        keyed = documents | "KeyByDedupKey" >> beam.Map(lambda d: ((d["language"], _dedup_key(d)), d))
        absorbed = (buckets.absorbed | "DistinctEdges" >> beam.Distinct()
                    | "EdgeWeight" >> beam.Map(lambda edge: ((edge[0], edge[1]), edge[3]))
                    | "AbsorbedWeight" >> beam.CombinePerKey(sum))
        duplicates = buckets.duplicate | "AnyBucket" >> beam.CombinePerKey(sum)
        return ({"document": keyed, "duplicate": duplicates, "absorbed": absorbed}
                | "Join" >> beam.CoGroupByKey()
                | "Resolve" >> beam.FlatMap(_resolve).with_outputs(REMOVED, main="documents"))


# --------------------------------------------------------------------------------------------------- writing
def part_count(documents: int, rows_per_part: int) -> int:
    return max(1, math.ceil(documents / rows_per_part))


def _shard_of(document: dict, parts: int) -> int:
    return xxhash.xxh64_intdigest(document["id"].encode("utf-8")) % parts


def _arrow_schema(extra: tuple[str, ...] = ()):
    import pyarrow as pa

    types = {"language_score": pa.float32(), "cluster_size": pa.int64(), "words": pa.int64(), "stop_words": pa.int64(),
             "avg_word_length": pa.float32(), "alpha_words_ratio": pa.float32(), "dup_line_frac": pa.float32(),
             "line_punct_ratio": pa.float32(), "new_line_ratio": pa.float32()}
    return pa.schema([(name, types.get(name, pa.string())) for name in OUTPUT_COLUMNS + extra])


class _WritePart(beam.DoFn):
    """One Parquet file per (prefix, part), rows sorted by id so the bytes do not depend on the runner."""

    def __init__(self, root: str, extra_columns: tuple[str, ...]):
        self.root, self.extra_columns = root, extra_columns

    def process(self, keyed):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from apache_beam.io.filesystems import FileSystems

        (prefix, part), documents = keyed
        rows = sorted(documents, key=_document_order)
        schema = _arrow_schema(self.extra_columns)
        table = pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema=schema)
        path = FileSystems.join(self.root, f"{prefix}-{part:05d}.parquet")
        with FileSystems.create(path) as handle:
            pq.write_table(table, handle, compression="zstd")
        yield path


class WriteParquet(beam.PTransform):
    """Documents → <root>/<prefix_of(doc)>-NNNNN.parquet, ≈rows_per_part rows per file, parts chosen by id hash.

    The per-prefix document counts travel as a side input: one small entry per language, whatever the corpus size.
    """

    def __init__(self, root: str, prefix_of, rows_per_part: int = 50_000, extra_columns: tuple[str, ...] = ()):
        super().__init__()
        self.root, self.prefix_of, self.rows_per_part = root, prefix_of, rows_per_part
        self.extra_columns = extra_columns

    def expand(self, documents):
        prefix_of, rows_per_part = self.prefix_of, self.rows_per_part
        sizes = (documents | "Prefix" >> beam.Map(lambda d: (prefix_of(d), 1))
                 | "CountPerPrefix" >> beam.CombinePerKey(sum))
        return (documents
                | "AssignPart" >> beam.Map(
                    lambda d, counts: ((prefix_of(d), _shard_of(d, part_count(counts[prefix_of(d)], rows_per_part))), d),
                    counts=beam.pvalue.AsDict(sizes))
                | "GroupParts" >> beam.GroupByKey()
                | "WritePart" >> beam.ParDo(_WritePart(self.root, self.extra_columns)))
