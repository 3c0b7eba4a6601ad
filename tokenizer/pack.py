"""Tokenize the corpus and pack it into training rows: the pure packer and the Beam job around it.

In: the corpus artefact (`CORPUS/<label>/part-*.parquet` with `id`, `text`; `CORPUS/_SUCCESS`) and a tokenizer spec.
Out: the packed-shards artefact —
    SHARDS/<label>/train/part-*.parquet, SHARDS/<label>/heldout/part-*.parquet
        input_ids: list<int32> (exactly seq_len; <pad> only at the end of a shard's last row)
        document_lengths: list<int32> (the document pieces of the row, in order; sum = non-padding tokens)
    SHARDS/manifest.json, SHARDS/token_counts.csv (`language,tokens`, train split), SHARDS/_SUCCESS (last).

Each document becomes `[CLS] tokens… [SEP]` (ModernBERT/mmBERT packing); documents are concatenated, a long one
continues in the next row as a new piece, and `document_lengths` lets the model keep packed documents from attending
to each other.

The job (Beam): row groups of the input files → read, clean and tokenize in batches (`encode_batch_fast`, no special
tokens; [CLS]/[SEP] added here) → per language the (min, max) document hash and count → each document keyed by
(language, split, shard) from its id's hash alone → group → sort by hash → pack → one Parquet file per key.
Why this keying: the output depends only on document ids and contents, never on worker count or read order, and a
big language is spread over many shards (`shard_text_bytes` of text each, planned from Parquet metadata) that
different workers pack in parallel, so no worker ever holds a whole large language.
Held out: documents whose hash falls under `heldout_fraction` (a language with two or more documents always has
both splits, `split_mask`); a language with a single document holds out the tail of it (`SINGLE_DOCUMENT_HELDOUT`).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue

from languages.registry import normalize_list
from mmbert.atomic import atomic_directory, check_output_directory, write_text_atomic
from mmbert.errors import UsageError
from tokenizer.corpus_files import corpus_languages, read_texts
from tokenizer.documents import MAX_DOCUMENT_CHARS, clean_text, document_hash, shard_indices, split_mask
from tokenizer.gemma import describe_tokenizer, load_tokenizer, resolve_tokenizer_file
from tokenizer.shards import MAX_SEQ_LEN, MIN_SEQ_LEN, write_rows
from tokenizer.special_tokens import (CLS_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, check_special_ids,
                                      encode_special_tokens_as_text)
from tokenizer.vocab import vocab_digest

SPLITS = ("train", "heldout")
DEFAULT_SHARD_TEXT_BYTES = 256 * 2**20
ENCODE_BATCH_DOCUMENTS = 512


def pack_documents(token_id_lists: Iterable[Sequence[int]], seq_len: int) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Pack documents into rows of exactly `seq_len` tokens: yields (input_ids int32 array, document_lengths).

    Each document (token ids without special tokens) is wrapped as [CLS] … [SEP]; documents are concatenated, a
    document that does not fit continues in the next row as a new piece, and only the last row is padded with PAD_ID.
    """
    packed = pack_arrays([np.asarray(tokens, dtype=np.int32) for tokens in token_id_lists], seq_len)
    for row, start, end in zip(packed.input_ids, packed.piece_offsets[:-1], packed.piece_offsets[1:]):
        yield row, packed.piece_lengths[start:end].tolist()


class PackedRows(NamedTuple):
    input_ids: np.ndarray  # (rows, seq_len) int32
    piece_lengths: np.ndarray  # int32, the document pieces of all rows in order
    piece_offsets: np.ndarray  # int64, row r holds piece_lengths[piece_offsets[r]:piece_offsets[r + 1]]


_CLS, _SEP = np.array([CLS_ID], dtype=np.int32), np.array([SEP_ID], dtype=np.int32)


def pack_arrays(documents: Sequence[np.ndarray], seq_len: int) -> PackedRows:
    """`pack_documents` on int32 arrays, all rows at once: one concatenation, no loop over tokens."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    ends = np.cumsum([len(document) + 2 for document in documents], dtype=np.int64)  # stream end of each
    total = int(ends[-1]) if len(ends) else 0
    rows = -(-total // seq_len)
    parts = [part for document in documents for part in (_CLS, document, _SEP)]
    parts.append(np.full(rows * seq_len - total, PAD_ID, dtype=np.int32))
    stream = np.concatenate(parts).astype(np.int32, copy=False)
    # Pieces end where a document ends or a row ends, whichever comes first.
    cuts = np.union1d(ends, np.arange(seq_len, total, seq_len))
    piece_lengths = np.diff(cuts, prepend=0).astype(np.int32)
    per_row = np.bincount((cuts - 1) // seq_len, minlength=rows)
    piece_offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(per_row, out=piece_offsets[1:])
    return PackedRows(stream.reshape(rows, seq_len), piece_lengths, piece_offsets)


def packed_table(packed: PackedRows):
    """A pyarrow Table (input_ids, document_lengths: list<int32>) from packed rows."""
    rows, seq_len = packed.input_ids.shape
    id_offsets = np.arange(0, (rows + 1) * seq_len, seq_len, dtype=np.int64)
    return pa.table({
        "input_ids": pa.LargeListArray.from_arrays(id_offsets, packed.input_ids.reshape(-1))
        .cast(pa.list_(pa.int32())),
        "document_lengths": pa.LargeListArray.from_arrays(packed.piece_offsets, packed.piece_lengths)
        .cast(pa.list_(pa.int32())),
    })


def write_shard(path: str | Path, packed: PackedRows) -> None:
    """One Parquet shard. Written in place: the whole output directory is made atomic by `run_pack`, and a retried
    Beam bundle simply rewrites the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_rows(packed_table(packed), path, packed.input_ids.shape[1])


# ---------------------------------------------------------------------------------------------------------------
# Planning: everything checked and sized before the job starts (and before anything is written).

def plan_inputs(corpus_dir: Path, languages: list[str] | None, heldout_fraction: float, shard_text_bytes: int) -> dict:
    """Work items (language, file, row group), shards per language and split, and what was skipped and why."""
    files = corpus_languages(corpus_dir, languages)
    items, shards, skipped_languages, skipped_files = [], {}, {}, {}
    for label, paths in files.items():
        text_bytes, label_items = 0, []
        for path in paths:
            relative = f"{label}/{path.name}"
            try:
                metadata = pq.ParquetFile(path).metadata
            except Exception as error:  # corrupt or not Parquet: skip the file, say why
                skipped_files[relative] = f"unreadable Parquet ({type(error).__name__})"
                continue
            names = metadata.schema.names
            if "text" not in names:
                skipped_files[relative] = "no text column"
                continue
            text_column = names.index("text")
            first_row = 0
            for group in range(metadata.num_row_groups):
                row_group = metadata.row_group(group)
                if row_group.num_rows:
                    label_items.append((label, str(path), relative, group, first_row))
                first_row += row_group.num_rows
                text_bytes += row_group.column(text_column).total_uncompressed_size
        if not label_items:
            skipped_languages[label] = "no data (no Parquet rows)"
            continue
        items += label_items
        shards[label] = {
            "train": max(1, math.ceil((1 - heldout_fraction) * text_bytes / shard_text_bytes)),
            "heldout": max(1, math.ceil(heldout_fraction * text_bytes / shard_text_bytes)),
        }
    if not items:
        raise UsageError(f"nothing to pack in {corpus_dir}: " + "; ".join(f"{k}: {v}" for k, v in
                                                                       {**skipped_languages, **skipped_files}.items()))
    return {"items": items, "shards": shards, "skipped_languages": skipped_languages, "skipped_files": skipped_files}


# ---------------------------------------------------------------------------------------------------------------
# The Beam steps. Each emits counts as ((language, name), n) on the "stats" output; they end up in manifest.json.

class DocumentBatch(NamedTuple):
    """Tokenized documents travelling between the Beam steps — a few large arrays cost Beam far less than many small
    objects. Document i: tokens[offsets[i]:offsets[i + 1]], sort key (hashes[i], ids[i], source, rows[i])."""

    hashes: np.ndarray  # uint64, `document_hash` of each id
    ids: list  # document ids (str)
    source: str  # the corpus file, relative to the corpus directory
    rows: np.ndarray  # int64, row of each document in `source`
    tokens: np.ndarray  # int32, all documents' tokens end to end (no special tokens)
    offsets: np.ndarray  # int64, len(ids) + 1

    def take(self, indices: np.ndarray) -> "DocumentBatch":
        if len(indices) == len(self.ids):
            return self
        pieces = [self.tokens[start:end] for start, end in
                  zip(self.offsets[indices].tolist(), self.offsets[indices + 1].tolist())]
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum([len(piece) for piece in pieces], out=offsets[1:])
        return DocumentBatch(self.hashes[indices], [self.ids[i] for i in indices], self.source, self.rows[indices],
                             np.concatenate(pieces), offsets)


class TokenizeRowGroup(beam.DoFn):
    """(language, path, relative path, row group, first row) → (language, DocumentBatch) + stats."""

    def __init__(self, tokenizer_file: str, seed: int, max_chars: int):
        self.tokenizer_file, self.seed, self.max_chars = tokenizer_file, seed, max_chars
        self.tokenizer = None

    def setup(self):
        self.tokenizer = packing_tokenizer(self.tokenizer_file)

    def process(self, item):
        label, path, relative, row_group, first_row = item
        try:
            ids, texts, maybe_dirty = read_texts(path, row_group, flag_control_characters=True)
        except Exception:  # a damaged page behind a valid footer: skip the row group, count it, go on
            yield pvalue.TaggedOutput("stats", ((label, "unreadable_row_groups"), 1))
            return
        counts = {"documents_in": len(texts)}
        kept_ids, kept_rows, kept_texts = [], [], []
        for offset, (doc_id, raw, dirty) in enumerate(zip(ids, texts, maybe_dirty)):
            if dirty or not isinstance(raw, str) or len(raw) > self.max_chars or not raw or raw.isspace():
                text, reason, modified = clean_text(raw, self.max_chars)  # the rare, slow path
                if reason:
                    counts[f"dropped_{reason}"] = counts.get(f"dropped_{reason}", 0) + 1
                    continue
                for name in modified:
                    counts[name] = counts.get(name, 0) + 1
            else:
                text = raw
            if doc_id is None or doc_id == "":
                counts["missing_id"] = counts.get("missing_id", 0) + 1
                doc_id = f"{relative}#{first_row + offset}"
            kept_ids.append(str(doc_id))
            kept_rows.append(first_row + offset)
            kept_texts.append(text)
        for start in range(0, len(kept_texts), ENCODE_BATCH_DOCUMENTS):
            end = start + ENCODE_BATCH_DOCUMENTS
            batch = self._encode(kept_ids[start:end], relative, kept_rows[start:end], kept_texts[start:end], counts)
            if batch is not None:
                yield label, batch
        for name, value in counts.items():
            yield pvalue.TaggedOutput("stats", ((label, name), value))

    def _encode(self, ids, source, rows, texts, counts) -> DocumentBatch | None:
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        pieces = [encoding.ids for encoding in encode(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        if not lengths.all():  # text made only of characters the tokenizer maps to nothing
            keep = np.flatnonzero(lengths)
            counts["dropped_no_tokens"] = counts.get("dropped_no_tokens", 0) + len(pieces) - len(keep)
            ids, rows, pieces, lengths = [ids[i] for i in keep], [rows[i] for i in keep], [pieces[i] for i in keep], lengths[keep]
        if not pieces:
            return None
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.fromiter(itertools.chain.from_iterable(pieces), dtype=np.int32, count=int(offsets[-1]))
        hashes = np.fromiter((document_hash(doc_id, self.seed) for doc_id in ids), dtype=np.uint64, count=len(ids))
        return DocumentBatch(hashes, ids, source, np.asarray(rows, dtype=np.int64), tokens, offsets)


class HashRangeFn(beam.CombineFn):
    """(min hash, max hash, documents) per language, from the same triple per batch; for `split_mask`."""

    def create_accumulator(self):
        return (None, None, 0)

    def add_input(self, accumulator, triple):
        return self.merge_accumulators([accumulator, triple])

    def merge_accumulators(self, accumulators):
        low, high, count = None, None, 0
        for a_low, a_high, a_count in accumulators:
            if a_count:
                low = a_low if low is None else min(low, a_low)
                high = a_high if high is None else max(high, a_high)
                count += a_count
        return (low, high, count)

    def extract_output(self, accumulator):
        return accumulator


def batch_hash_range(element):
    label, batch = element
    # numpy uint64 scalars on purpose: Beam would give Python ints its (signed) 64-bit varint coder.
    return label, (batch.hashes.min(), batch.hashes.max(), len(batch.hashes))


# A language with a single document holds out the last tokens of it: at least this share (or --heldout-fraction).
SINGLE_DOCUMENT_HELDOUT = 0.1


def key_by_shard(element, ranges: dict, shards: dict, heldout_fraction: float):
    """(language, batch) → ((language, split, shard), sub-batch) for each shard its documents go to."""
    label, batch = element
    low, high, count = ranges[label]
    if count == 1 and heldout_fraction > 0 and len(batch.tokens) >= 2:
        yield from _split_only_document(label, batch, shards, heldout_fraction)
        return
    heldout = split_mask(batch.hashes, heldout_fraction, low, high, count)
    for split, mask in (("train", ~heldout), ("heldout", heldout)):
        indices = np.flatnonzero(mask)
        if not len(indices):
            continue
        shard_of = shard_indices(batch.hashes[indices], shards[label][split])
        for shard in np.unique(shard_of):
            yield (label, split, int(shard)), batch.take(indices[shard_of == shard])


def _split_only_document(label: str, batch: DocumentBatch, shards: dict, heldout_fraction: float):
    """A language's only document: its head trains, its tail is held out, so the language still gets an evaluation
    set (a web page per language is common in small corpora: the UDHR has one per language). The cut is a function
    of the document alone, so it is the same for any number of workers."""
    length = len(batch.tokens)
    held = min(length - 1, max(1, round(length * max(heldout_fraction, SINGLE_DOCUMENT_HELDOUT))))
    cut = length - held
    for split, piece in (("train", batch.tokens[:cut]), ("heldout", batch.tokens[cut:])):
        part = batch._replace(tokens=piece, offsets=np.array([0, len(piece)], dtype=np.int64))
        yield (label, split, int(shard_indices(batch.hashes, shards[label][split])[0])), part


def pack_shard(keyed, output_dir: str, seq_len: int):
    """((language, split, shard), batches) → one Parquet file; yields its counts as ((language, name), n)."""
    (label, split, shard), batches = keyed
    batches = list(batches)
    hashes = np.concatenate([batch.hashes for batch in batches])
    order = np.argsort(hashes, kind="stable")
    if len(order) > 1 and (ties := hashes[order][1:] == hashes[order][:-1]).any():
        order = _break_ties(order, ties, batches)
    # (batch, start, end) of every document, then the documents' token slices in sorted order.
    where = [(b, start, end) for b, batch in enumerate(batches)
             for start, end in zip(batch.offsets[:-1].tolist(), batch.offsets[1:].tolist())]
    packed = pack_arrays([batches[b].tokens[start:end] for b, start, end in map(where.__getitem__, order.tolist())],
                         seq_len)
    write_shard(Path(output_dir) / label / split / f"part-{shard:05d}.parquet", packed)
    used = int(packed.piece_lengths.sum())
    yield (label, f"{split}_documents"), len(order)
    yield (label, f"{split}_rows"), len(packed.input_ids)
    yield (label, f"{split}_tokens"), used
    yield (label, f"{split}_padding"), packed.input_ids.size - used
    yield (label, f"{split}_shards"), 1


def _break_ties(order: np.ndarray, ties: np.ndarray, batches: list[DocumentBatch]) -> np.ndarray:
    """Equal hashes (duplicate ids): order those documents by (id, source, row), never by arrival order."""
    keys = [(doc_id, batch.source, int(row)) for batch in batches for doc_id, row in zip(batch.ids, batch.rows)]
    order = order.copy()
    run_start = None
    for position in range(len(ties) + 1):
        tied = position < len(ties) and ties[position]
        if tied and run_start is None:
            run_start = position
        elif not tied and run_start is not None:
            run = order[run_start:position + 1]
            order[run_start:position + 1] = sorted(run, key=keys.__getitem__)
            run_start = None
    return order


# ---------------------------------------------------------------------------------------------------------------

def run_pack(corpus_dir, tokenizer_spec, seq_len: int, output_dir, heldout_fraction: float = 0.01,
             num_workers: int = 1, languages: str | list[str] | None = None, overwrite: bool = False, seed: int = 0,
             shard_text_bytes: int = DEFAULT_SHARD_TEXT_BYTES, max_document_chars: int = MAX_DOCUMENT_CHARS,
             pipeline_args: list[str] | None = None) -> dict:
    """Tokenize and pack `corpus_dir` into `output_dir` (see the module docstring); returns the manifest.

    Arguments are checked first (UsageError, nothing written); the output appears whole or not at all.
    `pipeline_args` go to Beam's PipelineOptions after the defaults (the local DirectRunner with `num_workers`
    processes); workers write shards straight into the output's temporary sibling, so with another runner it must
    be a path every worker can reach (a shared mount).
    """
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    if not isinstance(seq_len, int) or not MIN_SEQ_LEN <= seq_len <= MAX_SEQ_LEN:
        raise UsageError(f"--seq-len must be an integer from {MIN_SEQ_LEN} to {MAX_SEQ_LEN:,}, got {seq_len!r}")
    if not 0 <= heldout_fraction < 1:
        raise UsageError(f"--heldout-fraction must be in [0, 1), got {heldout_fraction}")
    if num_workers < 1:
        raise UsageError(f"--num-workers must be at least 1, got {num_workers}")
    if shard_text_bytes < 1 or max_document_chars < 1:
        raise UsageError("shard size and maximum document length must be positive")
    if not 0 <= seed < 2**64:
        raise UsageError(f"--seed must be in [0, 2^64), got {seed}")
    check_output_directory(output_dir, overwrite, scans=[("--corpus", corpus_dir)])
    languages = normalize_list(languages)
    plan = plan_inputs(corpus_dir, languages, heldout_fraction, shard_text_bytes)
    load_spec, description = _checked_tokenizer(tokenizer_spec)

    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        stats = _run_pipeline(plan, load_spec, tmp, seq_len, heldout_fraction,
                              seed, max_document_chars, num_workers, pipeline_args)
        manifest = _manifest(plan, stats, description, seq_len, heldout_fraction, seed, shard_text_bytes)
        for label, entry in manifest["languages"].items():
            for split in SPLITS:  # both splits always exist, even empty, so readers need no special case
                if not entry[f"{split}_rows"]:
                    write_shard(tmp / label / split / "part-00000.parquet", pack_arrays([], seq_len))
        write_text_atomic(tmp / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        write_text_atomic(tmp / "token_counts.csv", _counts_csv(manifest))
        write_text_atomic(tmp / "_SUCCESS", "")
    return manifest


@functools.lru_cache(maxsize=2)
def packing_tokenizer(spec: str):
    """The tokenizer as packing uses it (special-token strings in text read as text); loaded once per process."""
    return encode_special_tokens_as_text(load_tokenizer(spec))


def _checked_tokenizer(spec) -> tuple[str, dict]:
    """(what workers load: a local file, or the hub id; the manifest's tokenizer record), after checking its ids."""
    path = resolve_tokenizer_file(spec)
    load_spec = str(path.resolve()) if path is not None else str(spec)
    # Checked before packing adds the special tokens it reads as text, which would give them made-up ids.
    raw = load_tokenizer(load_spec)
    if problems := check_special_ids(raw):
        raise UsageError(f"tokenizer {spec!r} does not use the encoder's special ids: " + "; ".join(problems))
    packing = packing_tokenizer(load_spec)
    # Text such as "<eos>" must stay text. Added tokens are handled (packing_tokenizer), but a converted SentencePiece
    # model can still produce the ids itself (a unigram control piece, a pre-tokenizer rule for <mask>).
    leaked = set(packing.encode(" ".join(SPECIAL_TOKENS), add_special_tokens=False).ids) & set(SPECIAL_TOKENS.values())
    if leaked:
        raise UsageError(f"tokenizer {spec!r} turns the text of special tokens into special ids {sorted(leaked)}: "
                         "a web page mentioning <eos> would get a real [SEP]; convert it to a tokenizer.json whose "
                         "model cannot produce them (e.g. with `mmbert tokenizer train`)")
    # vocab_sha256: which token every id is, so eval can refuse a model whose vocabulary differs at the same size.
    return load_spec, {**describe_tokenizer(spec, packing), "vocab_sha256": vocab_digest(raw)}


def _run_pipeline(plan, tokenizer_file, tmp: Path, seq_len, heldout_fraction, seed, max_chars, num_workers,
                  pipeline_args) -> dict:
    from mmbert.beam import new_pipeline

    # The local DirectRunner by default; flags in `pipeline_args` win. An unknown --runner fails here, and the
    # caller's atomic directory then leaves nothing behind.
    pipeline = new_pipeline(pipeline_args, num_workers)
    stats_path = tmp / "_stats.json"
    shards = plan["shards"]
    with pipeline:
        tokenized = (
            pipeline
            | "RowGroups" >> beam.Create(plan["items"], reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "Tokenize" >> beam.ParDo(TokenizeRowGroup(tokenizer_file, seed, max_chars))
            .with_outputs("stats", main="documents")
        )
        documents = tokenized.documents
        ranges = (documents
                  | "Hashes" >> beam.Map(batch_hash_range)
                  | "HashRange" >> beam.CombinePerKey(HashRangeFn()))
        shard_stats = (
            documents
            | "KeyByShard" >> beam.FlatMap(key_by_shard, ranges=pvalue.AsDict(ranges), shards=shards,
                                       heldout_fraction=heldout_fraction)
            | "GroupShards" >> beam.GroupByKey()
            | "PackShards" >> beam.FlatMap(pack_shard, output_dir=str(tmp), seq_len=seq_len)
        )
        _ = (
            (tokenized.stats, shard_stats)
            | "AllStats" >> beam.Flatten()
            | "SumStats" >> beam.CombinePerKey(sum)
            | "OneList" >> beam.combiners.ToList()
            | "WriteStats" >> beam.Map(_write_stats, path=str(stats_path))
        )
    stats: dict = {}
    for (label, name), value in json.loads(stats_path.read_text()):
        stats.setdefault(label, {})[name] = value
    stats_path.unlink()
    return stats


def _write_stats(pairs, path: str) -> None:
    write_text_atomic(path, json.dumps(sorted([list(key), value] for key, value in pairs)))


def _manifest(plan, stats, description, seq_len, heldout_fraction, seed, shard_text_bytes) -> dict:
    languages, skipped = {}, dict(plan["skipped_languages"])
    for label in sorted(plan["shards"]):
        counts = stats.get(label, {})
        documents = counts.get("documents_in", 0) - sum(v for k, v in counts.items() if k.startswith("dropped_"))
        entry = {
            "documents": documents,
            **{f"{split}_{name}": counts.get(f"{split}_{name}", 0)
               for split in SPLITS for name in ("rows", "tokens", "documents", "padding", "shards")},
            "documents_in": counts.get("documents_in", 0),
            "unreadable_row_groups": counts.get("unreadable_row_groups", 0),
            "dropped": {name[len("dropped_"):]: value for name, value in sorted(counts.items())
                        if name.startswith("dropped_")},
            "modified": {name: counts[name] for name in ("control_characters_removed", "truncated", "missing_id")
                         if counts.get(name)},
            # One document, split: its head is train, its tail the held-out set (SINGLE_DOCUMENT_HELDOUT).
            "heldout_is_document_tail": documents == 1 and counts.get("train_documents", 0) == 1
                                        and counts.get("heldout_documents", 0) == 1,
        }
        if documents:
            languages[label] = entry
        else:
            why = {"documents read": entry["documents_in"], "unreadable row groups": entry["unreadable_row_groups"],
                   **entry["dropped"]}
            skipped[label] = "no usable documents (" + ", ".join(f"{k}: {v}" for k, v in why.items() if v) + ")"
    totals = {name: sum(entry[name] for entry in languages.values())
              for name in ("documents", "documents_in", "train_rows", "heldout_rows", "train_tokens",
                           "heldout_tokens")}
    return {
        "seq_len": seq_len,
        "tokenizer": description,
        "special_ids": dict(SPECIAL_TOKENS),
        "heldout_fraction": heldout_fraction,
        "seed": seed,
        "shard_text_bytes": shard_text_bytes,
        "languages": languages,
        "skipped_languages": skipped,
        "skipped_files": plan["skipped_files"],
        "totals": totals,
    }


def _counts_csv(manifest) -> str:
    from languages.sampling import format_counts_csv

    return format_counts_csv({label: entry["train_tokens"] for label, entry in manifest["languages"].items()})
