"""Per-language LID thresholds from a corpus's own language scores (FineWeb-2's rule).

In: a finished corpus OUT (its `<label>/part-*.parquet` and, when built with `--write-removed`,
`_removed/lid_low_confidence/`). Out: rows `(language, threshold, documents, median, std)` with
threshold = clip(median − std, 0.3, 0.9) over every document LID assigned to that language.
Build the first corpus with `--min-language-score 0 --write-removed` so that no score is cut off before measuring.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from corpus.lid import threshold_rule
from mmbert.errors import UsageError


def corpus_thresholds(root: str, min_documents: int = 10) -> list[tuple]:
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    from corpus.stats import load

    load(root)  # UsageError unless the corpus is finished
    patterns = [FileSystems.join(root, "*", "part-*.parquet"),
                FileSystems.join(root, "_removed", "lid_low_confidence", "*.parquet")]
    scores: dict[str, list[float]] = defaultdict(list)
    for pattern in patterns:
        for match in FileSystems.match([pattern])[0].metadata_list:
            try:
                with FileSystems.open(match.path) as handle:
                    table = pq.read_table(handle, columns=["language", "language_score"])
            except (OSError, ValueError, KeyError) as error:  # ArrowInvalid is a ValueError
                raise UsageError(f"{match.path}: not a readable corpus part ({str(error)[:200]})") from None
            for language, score in zip(table.column("language").to_pylist(), table.column("language_score").to_pylist()):
                scores[language].append(float(score))
    rows = []
    for language in sorted(scores):
        values = scores[language]
        if len(values) < min_documents:
            continue
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        rows.append((language, round(threshold_rule(values), 4), len(values), round(statistics.median(values), 4),
                     round(spread, 4)))
    return rows
