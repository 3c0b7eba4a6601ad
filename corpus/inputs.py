"""Input files → records: WARC/WARC.gz (fastwarc), WET, JSONL(.gz) and Parquet text, on any Beam filesystem.

In: paths, globs, or manifests listing paths (like Common Crawl's `warc.paths.gz`); `resolve_inputs` expands them
on the submitting machine and fails with a UsageError when one matches nothing. Out, per file (`read_records`):
record dicts (`id`, `url`, `date`, `payload`, `content_type`, `charset`, `kind` "html"/"text", or `text` directly for
JSONL/Parquet) and `Removed` entries for what cannot be used (non-response records, HTTP errors, truncated records,
oversized pages, unreadable files). A file that breaks midway yields what it had, then one removal; never an error.
"""

from __future__ import annotations

import gzip
import json
import os
import unicodedata
from datetime import datetime
from typing import Iterable, Iterator

import xxhash

from corpus.records import Removed
from mmbert.errors import UsageError
from mmbert.paths import is_remote

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")  # (ARC, pre-2013 crawls: fastwarc does not read it)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
DEFAULT_MAX_PAGE_BYTES = 4 * 1024 * 1024


def input_format(path: str) -> str:
    name = path.lower()
    for fmt, suffixes in (("warc", WARC_SUFFIXES), ("jsonl", JSONL_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    raise UsageError(f"{path}: unknown input format (expected one of "
                     f"{', '.join(WARC_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)})")


def _open(path: str):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_manifest(path: str) -> list[str]:
    """Non-empty, non-comment lines of a (possibly gzipped) manifest file."""
    with _open(path) as handle:
        data = handle.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    lines = (line.strip() for line in data.decode("utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def resolve_inputs(patterns: Iterable[str], manifests: Iterable[str] = ()) -> list[str]:
    """Every file named by the patterns and manifests, sorted and de-duplicated; UsageError for an empty match."""
    from apache_beam.io.filesystems import FileSystems

    patterns = list(patterns)
    for manifest in manifests:
        try:
            patterns.extend(read_manifest(manifest))
        except Exception as error:  # OSError, UnicodeDecodeError, and Beam's own wrapper of missing files
            raise UsageError(f"cannot read manifest {manifest}: {error}") from None
    if not patterns:
        raise UsageError("no input given: pass --input PATH/GLOB or --manifest FILE")
    paths: dict[str, str] = {}  # the file itself → the path it is read by, as spelled first
    for pattern in patterns:
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception as error:
            raise UsageError(f"cannot list {pattern}: {error}") from None
        files = [m.path for m in matches if not m.path.endswith("/")]
        if not files:
            raise UsageError(f"input {pattern} matches no file")
        for path in files:  # one file however it is spelled (./x, x, a symlink) is read once; by the spelled path,
            paths.setdefault(path if is_remote(path) else os.path.realpath(path), path)  # whose suffix names the format
    for path in paths.values():
        input_format(path)
    return sorted(paths.values())


def iso_date(value) -> str:
    """ISO 8601 for a WARC date or datetime; '' when it cannot be read (ClueWeb writes days like '2008-10-294')."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return ""


def read_warc(path: str, handle, max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES) -> Iterator[dict | Removed]:
    """Response (HTML) and conversion (WET text) records of one WARC file; removals for everything else."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    wanted = WarcRecordType.response | WarcRecordType.conversion | WarcRecordType.resource
    try:
        for record in ArchiveIterator(handle, parse_http=False, record_types=WarcRecordType.any_type):
            if not record.record_type & wanted:
                yield Removed("not_response", "read", record.content_length)
                continue
            if record.headers.get("Content-Length") is None:  # the file was cut inside this record's header
                yield Removed("truncated_record", "read")
                continue
            record_id = record.record_id or ""
            url = record.headers.get("WARC-Target-URI", "")
            date = iso_date(record.headers.get("WARC-Date"))
            if record.record_type == WarcRecordType.conversion:
                kind, content_type, charset = "text", "text/plain", "utf-8"
            elif record.record_type == WarcRecordType.resource:  # a file as fetched (wget, FTP): no HTTP header
                content_type = record.headers.get("Content-Type", "")
                kind, charset = "html", _charset_of(content_type)
            else:
                record.parse_http()
                if not record.is_http or record.http_headers is None:
                    yield Removed("not_http", "read", record.content_length)
                    continue
                status = record.http_headers.status_code
                if status is None or not 200 <= status < 300:
                    yield Removed("http_status", "read", record.content_length)
                    continue
                kind, content_type, charset = "html", record.http_content_type, record.http_charset
            expected = record.content_length  # after parse_http: the payload's length
            if expected > max_page_bytes:
                record.reader.consume()
                yield Removed("too_large", "read", expected)
                continue
            payload = record.reader.read(max_page_bytes + 1)
            if len(payload) < expected:
                yield Removed("truncated_record", "read", len(payload))
                continue
            encoding = record.http_headers.get("Content-Encoding") if record.http_headers is not None else None
            if encoding:  # stored as sent (our crawler, and others, keep gzip/deflate/br bodies as they came)
                payload = decode_content(payload, encoding, max_page_bytes)
                if isinstance(payload, Removed):
                    yield payload
                    continue
            yield {"id": record_id, "url": url, "date": date, "payload": payload, "content_type": content_type,
                   "charset": charset, "kind": kind, "source": path}
    except Exception:  # corrupt compression or framing: keep what was read, count the rest of the file once
        yield Removed("corrupt_file", "read")


def decode_content(payload: bytes, content_encoding: str, limit: int) -> bytes | Removed:
    """The payload without its HTTP Content-Encoding (gzip, deflate, br, in the order applied), never more than
    `limit` bytes of it (a small compressed body can inflate a thousandfold); a removal when it cannot be had."""
    import zlib

    import brotli

    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed([c for c in codings if c and c != "identity"]):
        try:
            if coding in ("gzip", "x-gzip", "deflate"):
                # gzip or zlib framing by their headers; some servers send deflate raw, without either
                raw = coding == "deflate" and payload[:1] not in (b"\x78", b"\x58", b"\x68", b"\x08")
                decoded = zlib.decompressobj(-15 if raw else 47).decompress(payload, limit + 1)
            elif coding == "br":
                # the limit holds per output block: at most ~2x `limit` is ever held
                decoded = brotli.Decompressor().process(payload, output_buffer_limit=limit + 1)
            else:
                return Removed("bad_content_encoding", "read", len(payload))
        except (zlib.error, brotli.error):
            return Removed("bad_content_encoding", "read", len(payload))
        if len(decoded) > limit:
            return Removed("too_large", "read", len(payload))
        payload = decoded
    return payload


def _charset_of(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip(' "'):
            return value.strip(' "')
    return None


def _document(obj: dict, path: str, index: int, text_field: str) -> dict | Removed:
    text = obj.get(text_field)
    if not isinstance(text, str):  # absent (a misspelt --text-field shows here, not as empty documents) or not text
        return Removed("no_text_field", "read")
    if not text.strip():
        return Removed("empty_text", "read")
    text = unicodedata.normalize("NFC", text)  # as extracted pages are (corpus/extract.py); the id below hashes it
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    date = obj.get("date") or metadata.get("date")
    given_id = obj.get("id")
    # Without an id, one from the text: not from the path as spelled (./x, /abs/x) or where the file lies, which
    # decided the surviving duplicate and the held-out split. Equal texts get equal ids; exact dedup merges them.
    if given_id is None or given_id == "":
        given_id = "xxh3-" + xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass"))
    document = {"id": str(given_id),
                "url": str(obj.get("url") or metadata.get("url") or ""),
                "date": iso_date(date) if date else "", "text": text, "source": path}
    try:  # JSON may escape half a surrogate pair ("\ud83d"): no UTF-8 writer downstream accepts it
        "".join((document["id"], document["url"], text)).encode("utf-8")
    except UnicodeEncodeError:
        return Removed("bad_utf8", "read", len(text.encode("utf-8", "surrogatepass")))
    return document


def read_jsonl(path: str, handle, text_field: str = "text") -> Iterator[dict | Removed]:
    stream = gzip.GzipFile(fileobj=handle) if path.lower().endswith(".gz") else handle
    index = 0
    try:
        for index, raw in enumerate(stream):  # bytes lines, decoded one by one: a bad line costs only itself
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if index == 0 else "utf-8")  # a byte-order mark costs no record
            except UnicodeDecodeError:
                yield Removed("bad_utf8", "read", len(raw))
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):  # nesting deeper than the parser's stack is a bad line too
                yield Removed("bad_json", "read", len(raw))
                continue
            yield _document(obj, path, index, text_field) if isinstance(obj, dict) else Removed("bad_json", "read")
    except (OSError, EOFError):
        yield Removed("corrupt_file", "read")


def read_parquet(path: str, handle, text_field: str = "text") -> Iterator[dict | Removed]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(handle)
        if text_field not in parquet.schema_arrow.names:
            yield Removed("no_text_column", "read")
            return
        index = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield _document(row, path, index, text_field)
                index += 1
    except Exception:
        yield Removed("corrupt_file", "read")


def read_records(path: str, max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
                 text_field: str = "text") -> Iterator[dict | Removed]:
    """Everything in one input file, as records and removals; never raises for a bad file."""
    fmt = input_format(path)
    try:
        handle = _open(path)
    except Exception:
        yield Removed("unreadable_file", "read")
        return
    with handle:
        if fmt == "warc":
            records = read_warc(path, handle, max_page_bytes)
        elif fmt == "jsonl":
            records = read_jsonl(path, handle, text_field)
        else:
            records = read_parquet(path, handle, text_field)
        empty = True
        for record in records:
            empty = False
            yield record
        if empty:  # a zero-byte or blank file: counted, so that no input goes unmentioned in stats.json
            yield Removed("empty_file", "read")
