"""Reading the corpus artefact for the tokenizer tools: which languages it has, how much text, the texts themselves.

In: `CORPUS/<label>/part-*.parquet` (columns `id`, `text`) and `CORPUS/_SUCCESS`. Out: label → Parquet files, text
bytes per language (from Parquet metadata, without reading the text), and cleaned (id, text) pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmbert.errors import UsageError
from tokenizer.documents import CONTROL_CHARACTERS, MAX_DOCUMENT_CHARS, clean_text


def corpus_languages(corpus_dir: str | Path, languages: list[str] | None = None) -> dict[str, list[Path]]:
    """Label → its sorted part-*.parquet files (possibly none), for the requested languages or all of them."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise UsageError(f"--corpus {corpus_dir} is not a directory")
    if not (corpus_dir / "_SUCCESS").exists():
        raise UsageError(f"--corpus {corpus_dir} has no _SUCCESS: the corpus build did not finish")
    present = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not present:
        raise UsageError(f"--corpus {corpus_dir} has no language directories (<label>/part-*.parquet)")
    if languages:
        missing = [label for label in languages if label not in present]
        if missing:
            shown = ", ".join(present[:20]) + (" …" if len(present) > 20 else "")
            raise UsageError(f"languages not in {corpus_dir}: {', '.join(missing)} (present: {shown})")
        present = [label for label in present if label in languages]
    return {label: sorted((corpus_dir / label).glob("part-*.parquet")) for label in present}


def text_bytes(paths: list[Path]) -> int:
    """Uncompressed bytes of the `text` column, from Parquet footers only (unreadable files count 0)."""
    total = 0
    for path in paths:
        try:
            metadata = pq.ParquetFile(path).metadata
        except Exception:  # corrupt files are skipped (and reported) by whoever reads them
            continue
        if "text" not in metadata.schema.names:
            continue
        column = metadata.schema.names.index("text")
        total += sum(metadata.row_group(g).column(column).total_uncompressed_size
                     for g in range(metadata.num_row_groups))
    return total


def iter_texts(paths: list[Path], max_chars: int = MAX_DOCUMENT_CHARS) -> Iterator[tuple[str, str]]:
    """(id, clean text) of every usable document, in file order; unreadable files and bad documents are skipped."""
    for path in paths:
        try:
            parquet = pq.ParquetFile(path)
        except Exception:
            continue
        if "text" not in parquet.schema_arrow.names:
            continue
        for group in range(parquet.num_row_groups):
            try:
                ids, texts = read_texts(str(path), group)
            except Exception:  # a damaged page behind a valid footer: skip the row group, as `pack` does
                continue
            for index, (doc_id, raw) in enumerate(zip(ids, texts)):
                text, reason, _ = clean_text(raw, max_chars)
                if text is not None:
                    yield (str(doc_id) if doc_id is not None else f"{path.name}#{group}:{index}"), text


_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)


def read_texts(path: str, row_group: int, flag_control_characters: bool = False) -> tuple:
    """(ids, texts) of one row group; texts are str, or bytes where the column holds invalid UTF-8, or None.

    With `flag_control_characters`, also a list of booleans: True where the text may hold control characters (or
    is not plain valid text) and so needs `clean_text`; the check runs on Arrow buffers, not Python strings.
    """
    parquet = pq.ParquetFile(path)
    columns = [name for name in ("id", "text") if name in parquet.schema_arrow.names]
    table = parquet.read_row_group(row_group, columns=columns)
    ids = table.column("id").to_pylist() if "id" in columns else [None] * table.num_rows
    column = table.column("text")
    if not any(test(column.type) for test in _TEXT_TYPES):  # readers skip (and pack counts) such a row group
        raise ValueError(f"{path}: the text column holds {column.type}, not text")
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        texts = column.to_pylist()  # bytes: decoded (or dropped as invalid) one by one
        return (ids, texts, [True] * len(texts)) if flag_control_characters else (ids, texts)
    try:
        texts = column.to_pylist()
    except UnicodeDecodeError:  # a string column with invalid bytes: find the bad rows one by one
        texts = column.cast(pa.large_binary()).to_pylist()
        return (ids, texts, [True] * len(texts)) if flag_control_characters else (ids, texts)
    if not flag_control_characters:
        return ids, texts
    flags = pc.fill_null(pc.match_substring_regex(column, CONTROL_CHARACTERS.pattern), True)
    return ids, texts, flags.to_pylist()
