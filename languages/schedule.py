"""Training phases: which languages each phase trains on, at which sampling temperature, with which token budget.

The default is mmBERT's staged introduction (languages/data/mmbert_phase_languages.csv, from JHU-CLSP/mmBERT, MIT):

    pretrain      60 languages + source code   τ 0.7   2.3T tokens
    mid_training 109 languages + source code   τ 0.5   600B tokens
    decay       1833 languages + source code   τ 0.3   100B tokens

mmBERT's sets are ISO 639-3 codes; each becomes every registry label of that language, in all the scripts FineWeb-2
has it in (Serbian: srp_Cyrl and srp_Latn; Hindi: hin_Deva and romanised hin_Latn), since LID labels text by the
script it is written in: 74, 133 and 1,891 labels. A YAML schedule can name other labels. A schedule file looks like
this:

    phases:
      - name: pretrain
        temperature: 0.7
        languages: [eng_Latn, fra_Latn, cmn_Hani]   # a list of labels (any style `normalize` accepts), or
      - name: mid_training                           #   languages_file: langs.txt   (one label per line), or
        temperature: 0.5                             #   top: 110                    (top N by data size), or
        top: 110                                     #   mmbert: decay               (one of mmBERT's sets)
        budget: 600B                                 # optional: phase token budget (600_000_000_000, 6e11)
        max_epochs: 8                                # optional: cap on epochs of one language's data
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


from mmbert.errors import UsageError, read_yaml_mapping
from languages.registry import SOURCE_CODE_LABEL, UnknownLanguage, all_languages, normalize
from languages.sampling import parse_token_count

MMBERT_PHASES_FILE = Path(__file__).parent / "data" / "mmbert_phase_languages.csv"
MMBERT_PHASES = (  # (name, column in the CSV, temperature, token budget) from the mmBERT paper
    ("pretrain", "pretrain", 0.7, 2_300_000_000_000),
    ("mid_training", "mid_training", 0.5, 600_000_000_000),
    ("decay", "decay", 0.3, 100_000_000_000),
)
PHASE_KEYS = {"name", "temperature", "languages", "languages_file", "top", "mmbert", "budget", "max_epochs",
              "description"}
LANGUAGE_SOURCES = ("languages", "languages_file", "top", "mmbert")


@dataclass(frozen=True)
class Phase:
    name: str
    languages: tuple[str, ...]  # registry labels, sorted
    temperature: float
    budget: int | None = None  # tokens
    max_epochs: float | None = None


def mmbert_phase_languages(column: str) -> tuple[str, ...]:
    """mmBERT's language set for one phase column (pretrain, mid_training, decay) as registry labels, every script."""
    with MMBERT_PHASES_FILE.open(encoding="utf-8") as handle:
        codes = [row["language"] for row in csv.DictReader(handle) if row[column] == "1"]
    labels = {normalize(code) for code in codes}
    isos = {label.split("_")[0] for label in labels if label != SOURCE_CODE_LABEL}
    return tuple(sorted(labels | {language.code for language in all_languages() if language.iso639_3 in isos}))


def default_schedule() -> list[Phase]:
    return [Phase(name, mmbert_phase_languages(column), temperature, budget)
            for name, column, temperature, budget in MMBERT_PHASES]


def top_languages(n: int, counts: Mapping[str, float] | None = None) -> tuple[str, ...]:
    """The n labels with the most data: `counts` if given, else FineWeb-2's words per label."""
    if counts is None:
        counts = {language.code: language.words for language in all_languages()}
    ranked = sorted(counts, key=lambda label: (-counts[label], label))
    return tuple(sorted(ranked[:n]))


def load_schedule(path: str | Path | None = None, counts: Mapping[str, float] | None = None) -> list[Phase]:
    """Read a schedule YAML (see the module docstring); None gives mmBERT's default. Errors name the key."""
    if path is None:
        return default_schedule()
    path = Path(path)
    document = read_yaml_mapping(path, "schedule file")
    if not isinstance(document.get("phases"), list) or not document["phases"]:
        raise UsageError(f"{path}: expected a mapping with a non-empty list under 'phases'")
    phases = [parse_phase(entry, f"{path}: phases[{index}]", path.parent, counts)
              for index, entry in enumerate(document["phases"])]
    names = [phase.name for phase in phases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UsageError(f"{path}: phase names must be unique, repeated: {', '.join(duplicates)}")
    return phases


def parse_phase(entry: Any, where: str, base_dir: Path = Path("."),
                counts: Mapping[str, float] | None = None) -> Phase:
    """One phase mapping → Phase. Also used by training recipes, which embed phases the same way."""
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown_keys = sorted(set(entry) - PHASE_KEYS)
    if unknown_keys:
        raise UsageError(f"{where}: unknown keys {unknown_keys}; allowed: {sorted(PHASE_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}.name: a non-empty string is required")
    temperature = _number(entry, "temperature", where, required=True)
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"{where}.temperature: must be > 0, got {temperature}")
    budget = None
    if entry.get("budget") is not None:
        try:
            budget = parse_token_count(entry["budget"])  # 600_000_000_000, 6e11, "600B"
        except ValueError as error:
            raise UsageError(f"{where}.budget: {error}") from None
    max_epochs = _number(entry, "max_epochs", where)
    if max_epochs is not None and not (math.isfinite(max_epochs) and max_epochs > 0):
        raise UsageError(f"{where}.max_epochs: must be > 0, got {max_epochs}")
    languages = _phase_languages(entry, where, base_dir, counts)
    if not languages:
        raise UsageError(f"{where}: phase {name!r} has no languages")
    return Phase(name, languages, float(temperature), None if budget is None else int(budget), max_epochs)


def _number(entry: dict, key: str, where: str, required: bool = False) -> float | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise UsageError(f"{where}.{key}: required")
        return None
    if isinstance(value, str):
        try:
            value = float(value.replace("_", ""))
        except ValueError:
            raise UsageError(f"{where}.{key}: must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}.{key}: must be a number, got {value!r}")
    return value


def _phase_languages(entry: dict, where: str, base_dir: Path,
                     counts: Mapping[str, float] | None) -> tuple[str, ...]:
    sources = [key for key in LANGUAGE_SOURCES if key in entry]
    if len(sources) != 1:
        raise UsageError(f"{where}: give exactly one of {', '.join(LANGUAGE_SOURCES)} (got {sources or 'none'})")
    source = sources[0]
    value = entry[source]
    if source == "top":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UsageError(f"{where}.top: must be a positive integer, got {value!r}")
        return top_languages(value, counts)
    if source == "mmbert":
        columns = {column for _, column, _, _ in MMBERT_PHASES}
        if value not in columns:
            raise UsageError(f"{where}.mmbert: must be one of {sorted(columns)}, got {value!r}")
        return mmbert_phase_languages(value)
    if source == "languages_file":
        file = (base_dir / str(value)) if not Path(str(value)).is_absolute() else Path(str(value))
        if not file.is_file():
            raise UsageError(f"{where}.languages_file: file not found: {file}")
        labels = [line.split("#")[0].strip() for line in file.read_text(encoding="utf-8").splitlines()]
        labels = [label for label in labels if label]
    else:
        if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
            raise UsageError(f"{where}.languages: must be a list of language labels")
        labels = value
    normalised, unknown = set(), []
    for label in labels:
        try:
            normalised.add(normalize(label))
        except UnknownLanguage:
            unknown.append(label)
    if unknown:
        raise UsageError(f"{where}.{source}: unknown languages: {', '.join(unknown)}")
    return tuple(sorted(normalised))


def find_phase(phases: list[Phase], name: str) -> Phase:
    for phase in phases:
        if phase.name == name:
            return phase
    raise UsageError(f"no phase named {name!r}; phases: {', '.join(phase.name for phase in phases)}")


__all__ = ["Phase", "SOURCE_CODE_LABEL", "default_schedule", "find_phase", "load_schedule", "mmbert_phase_languages",
           "parse_phase", "top_languages"]
