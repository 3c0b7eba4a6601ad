"""The packed-shards format `tokenizer pack` writes, as its readers open and check it (mixtures, the training loader).

A finished directory holds `_SUCCESS`, `manifest.json` (seq_len, tokenizer), `token_counts.csv` (train tokens per
language) and `<label>/{train,heldout}/part-*.parquet`. Rows are `input_ids` of exactly the manifest's `seq_len`
tokens; what a footer can tell about that is checked here without reading row data. Kept free of Beam and tokenizers:
the training image imports it.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from languages.registry import UnknownLanguage, normalize
from languages.sampling import read_counts_csv
from mmbert.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class PackedShards:
    """A finished packed-shards directory: its manifest, train tokens per registry label, and each label's directories.

    Directory names are the labels as `tokenizer pack` normalised them. A label the registry has merged into another
    since (e.g. `pes_Arab` into `fas_Arab`) is read under today's label, from every directory that normalises to it,
    so older shards need no repack; a directory the registry no longer knows is left out with a warning.
    """

    path: Path
    manifest: dict
    counts: dict[str, int]  # registry label → train tokens (token_counts.csv)
    directories: dict[str, tuple[str, ...]]  # registry label → its directory names, in name order

    @classmethod
    def open(cls, path: str | Path):
        """Read and check the directory (no row data). UsageError naming what is missing or malformed."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"packed shards not found: {path} (make them with `mmbert tokenizer pack`)")
        for name in ("_SUCCESS", "manifest.json", "token_counts.csv"):
            if not (path / name).is_file():
                raise UsageError(f"{path} is not a finished packed-shards directory: {name} is missing "
                                 "(rerun `mmbert tokenizer pack`)")
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            int(manifest["seq_len"])
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path / 'manifest.json'}: no usable seq_len ({error})") from None
        counts = read_counts_csv(path / "token_counts.csv", ignore_unknown=True)
        # The languages are the labels pack wrote (in the counts and the manifest), not any directory that happens
        # to be there: a `tmp/train` must not become Tyapi.
        with (path / "token_counts.csv").open(encoding="utf-8", newline="") as handle:
            written = {row[0].strip() for row in list(csv.reader(handle))[1:] if row and row[0].strip()}
        written |= set(manifest.get("languages") or {})
        directories: dict[str, list[str]] = {}
        unknown = []
        for directory in sorted(written):
            if not any((path / directory / split).is_dir() for split in ("train", "heldout")):
                continue
            try:
                directories.setdefault(normalize(directory), []).append(directory)
            except UnknownLanguage:
                unknown.append(directory)
        if unknown:
            log.warning("%s: left out %d language directories the registry does not know: %s", path, len(unknown),
                        ", ".join(unknown))
        return cls(path, manifest, counts, {label: tuple(names) for label, names in directories.items()})

    @property
    def seq_len(self) -> int:
        return int(self.manifest["seq_len"])

    @property
    def vocab_size(self) -> int | None:
        return (self.manifest.get("tokenizer") or {}).get("vocab_size")

    def files(self, language: str, split: str) -> list[Path]:
        """The language's Parquet files of one split (`train`, `heldout`), directory by directory, each in name
        order (none if it has none). UsageError when token_counts.csv counts train tokens that are not there: only
        readers of rows ask, so metadata-only readers (a mixture phase's tokenizer) work on shards without rows."""
        files = [file for directory in self.directories.get(language, ())
                 for file in sorted((self.path / directory / split).glob("part-*.parquet"))]
        if split == "train" and not files and self.counts.get(language):
            where = " or ".join(f"{name}/train/" for name in self.directories.get(language, (language,)))
            raise UsageError(f"{self.path}: token_counts.csv counts train tokens for {language}, but there are no "
                             f"part-*.parquet files in {where} (incomplete shards? rerun `mmbert tokenizer pack`)")
        return files


# Row lengths the format takes. Rows are int32 offsets in Arrow and every shard's last row is padded to full length:
# far beyond any context an encoder trains at (mmBERT: 8,192), a typo must fail before hours of tokenizing.
MIN_SEQ_LEN, MAX_SEQ_LEN = 8, 1 << 20

# Parquet row groups of 256K tokens (1 MB of int32): the training loader holds one decoded group per language it
# reads (training/data.py RowGroupCache), up to 1,870 of them in mmBERT's last phase.
ROW_GROUP_TOKENS = 2**18


def write_rows(table, path: str | Path, seq_len: int) -> None:
    """Packed rows (input_ids, document_lengths[, language]) as every reader expects them: zstd, row groups of
    ROW_GROUP_TOKENS. Token ids get no dictionary (too many distinct values: it only slows writes and reads); a
    language column does. Written in place: callers make their whole output directory atomic."""
    import pyarrow.parquet as pq

    pq.write_table(table, str(path), row_group_size=max(1, ROW_GROUP_TOKENS // seq_len), compression="zstd",
                   use_dictionary=[name for name in table.column_names if name == "language"])


def read_footer(file: Path):
    """A shard's Parquet metadata; UsageError naming the file when it is not readable Parquet (a copy cut short)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file).metadata
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        raise UsageError(f"{file}: not a readable Parquet file ({str(error)[:200]}); repack or recopy the shards") \
            from None


def check_row_width(file, metadata, group: int, seq_len: int) -> None:
    """UsageError unless every row of a row group holds seq_len tokens. From the footer alone: the input_ids column
    counts rows x seq_len values (shards of another --seq-len copied into a language's directory would not)."""
    row_group = metadata.row_group(group)
    column = next((row_group.column(j) for j in range(row_group.num_columns)
                   if row_group.column(j).path_in_schema.startswith("input_ids")), None)
    if column is None:
        raise UsageError(f"{file}: no input_ids column; not packed shards")
    if column.num_values != row_group.num_rows * seq_len:
        raise UsageError(f"{file}: row group {group} holds {column.num_values:,} tokens in {row_group.num_rows:,} "
                         f"rows, not rows of {seq_len} as the shards' manifest says (shards of another --seq-len?)")
