"""The two things that flow between the corpus steps: documents (plain dicts) and removals (with a reason).

A document is a dict with at least `id`, `url`, `date` and, once extracted, `text`; language ID adds `language`,
`language_score` and `script`; filters add the quality signals; dedup adds `cluster_size`. Plain dicts keep Beam's
pickling cheap and let every step add its own fields.

A `Removed` names why a record or document was dropped; the reasons become `stats.json` entries and Beam counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Columns of OUT/<language>/part-*.parquet, in order (the corpus artefact of docs/corpus.md).
OUTPUT_COLUMNS = ("id", "text", "url", "date", "language", "language_score", "cluster_size", "script", "words",
                  "avg_word_length", "alpha_words_ratio", "stop_words", "dup_line_frac", "line_punct_ratio",
                  "new_line_ratio")


@dataclass
class Removed:
    """A dropped record or document: why, at which step, its size, and (when known) its language and the document."""

    reason: str
    step: str
    bytes: int = 0
    words: int = 0
    language: str | None = None
    document: dict | None = field(default=None, repr=False)


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))
