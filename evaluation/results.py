"""Result rows and their files: `results.csv` / `results.json` (one row per task × language × metric).

Columns: model, task, language, metric, value, n, status. `status` is `ok`, or `skipped: <reason>` with an empty value
— a language that could not be scored is never a silent zero.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from mmbert.atomic import write_text_atomic
from mmbert.errors import UsageError

COLUMNS = ("model", "task", "language", "metric", "value", "n", "status")
OK = "ok"


@dataclass(frozen=True)
class Result:
    model: str
    task: str
    language: str
    metric: str
    value: float | None  # None when skipped
    n: int  # examples behind the value (masked tokens, sentence pairs, test rows, words, …): per metric
    status: str = OK

    @property
    def ok(self) -> bool:
        return self.status == OK


def skipped(model: str, task: str, language: str, metric: str, reason: str) -> Result:
    return Result(model, task, language, metric, None, 0, f"skipped: {reason}")


def write_results(results: list[Result], directory: Path, settings: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for result in results:
        value = "" if result.value is None else f"{result.value:.6g}"
        writer.writerow([result.model, result.task, result.language, result.metric, value, result.n, result.status])
    write_text_atomic(directory / "results.csv", buffer.getvalue())
    document = {"settings": settings, "columns": list(COLUMNS), "results": [asdict(r) for r in results]}
    write_text_atomic(directory / "results.json", json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def read_results(directory: str | Path) -> list[Result]:
    """Rows of DIR/results.csv; UsageError naming the file when it is missing or lacks the columns."""
    path = Path(directory) / "results.csv"
    if not path.is_file():
        raise UsageError(f"no results.csv in {directory} (is it an `mmbert eval` output directory?)")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row["value"]) if row["value"] != "" else None
                n = int(row["n"])
            except ValueError:
                raise UsageError(f"{path}:{line}: value {row['value']!r} or n {row['n']!r} is not a number") from None
            if value is not None and math.isnan(value):
                value = None
            rows.append(Result(row["model"], row["task"], row["language"], row["metric"], value, n, row["status"]))
    return rows


def read_settings(directory: str | Path) -> dict | None:
    """The settings DIR/results.json records, or None for a directory without one (only results.csv)."""
    path = Path(directory) / "results.json"
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8")).get("settings")
    except (ValueError, AttributeError) as error:
        raise UsageError(f"{path}: not a results.json written by `mmbert eval` ({error})") from None
    return settings if isinstance(settings, dict) else None
