"""The packed-shards format `tokenizer pack` writes, as its readers check it (mixtures, the training loader).

Rows are `input_ids` of exactly the manifest's `seq_len` tokens; what a footer can tell about that is checked here
without reading row data. Kept free of Beam and tokenizers: the training image imports it.
"""

from __future__ import annotations

from mmbert.errors import UsageError


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
