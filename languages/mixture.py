"""Phase mixtures: materialise each training phase's temperature-sampled language mix as packed shards.

In:  per-language packed shards (`SHARDS/<lang>/train/part-*.parquet`, `SHARDS/manifest.json`,
     `SHARDS/token_counts.csv`) and a schedule (phases: languages, τ, token budget, epoch cap).
Out: `OUTPUT/<phase>/train/part-*.parquet` (input_ids, document_lengths, language), `OUTPUT/<phase>/manifest.json`,
     `OUTPUT/_SUCCESS` — the whole directory appears at once, or not at all.

How a phase is planned (pure functions, no Beam):
  1. budget tokens per language = `languages.sampling.token_budgets(counts, τ, budget, max_epochs)`;
  2. rows per language = budget / the language's own tokens per row, to the nearest row, never more than max_epochs ×
     the rows there are (a shard's last row is partly padding: seq_len per row would undercount small languages);
  3. a language's rows are taken in a seeded order without replacement; once it runs out a new epoch starts with a
     new seeded order, so epoch e holds N rows (the last one fewer) and no row is used more than ⌈max_epochs⌉ times.

How it runs (Beam): every row computes, alone, whether it is taken in epoch e (its position in that epoch's seeded
permutation is below the epoch's quota) and its 64-bit sort key, a hash of (seed, phase, language, epoch, row). The
key space is cut into equal ranges, one per output file; a GroupByKey on the range index gathers one file's rows,
which are sorted by key and written. Concatenating the files in name order gives the global shuffled order, which
depends only on the seed — never on the number of workers — and no step holds more than one input row group or one
output file's rows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import xxhash

from languages.sampling import temperature_weights, token_budgets
from mmbert.errors import RunFailed, UsageError
from tokenizer.shards import PackedShards, check_row_width, read_footer, write_rows

if TYPE_CHECKING:
    from languages.schedule import Phase

DEFAULT_ROWS_PER_FILE = 16_384  # 16k rows × 1,024 tokens × 4 bytes ≈ 64 MiB of input_ids per file
READ_TOKENS = 16 * 2**20  # rows read per Beam element: consecutive row groups of one packed file
_FEISTEL_ROUNDS = 6


# --------------------------------------------------------------------------------------------------------------------
# Plan: how many rows of each language a phase takes.


@dataclass(frozen=True)
class LanguageBudget:
    """One language's share of a phase, in tokens and in rows."""

    language: str
    available_tokens: int  # train tokens in the shards (token_counts.csv)
    available_rows: int  # train rows in the shards
    weight: float  # temperature weight p_i
    target_tokens: int  # p_i × the phase budget, before any epoch cap
    budget_tokens: int  # from token_budgets: capped at max_epochs × data, excess given to the others
    rows: int  # rows taken: budget_tokens / (tokens per row), to the nearest row, within the epoch cap

    @property
    def epochs_used(self) -> float:
        return self.rows / self.available_rows

    @property
    def shortfall_tokens(self) -> int:
        """What the epoch cap cut from this language's temperature share."""
        return max(0, self.target_tokens - self.budget_tokens)

    def epoch_quotas(self) -> list[int]:
        """Rows taken in each epoch: all of them until the last, which takes what is left."""
        full, rest = divmod(self.rows, self.available_rows)
        return [self.available_rows] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class PhasePlan:
    """Everything the Beam job needs to materialise one phase, and everything its manifest reports."""

    phase: str
    temperature: float
    requested_tokens: int
    max_epochs: float | None
    seed: int
    seq_len: int
    rows_per_file: int
    languages: tuple[LanguageBudget, ...]
    missing: tuple[str, ...]  # languages of the phase with no packed rows

    @property
    def total_rows(self) -> int:
        return sum(language.rows for language in self.languages)

    @property
    def planned_tokens(self) -> int:
        return sum(language.budget_tokens for language in self.languages)

    @property
    def shortfall_tokens(self) -> int:
        """Tokens of the requested budget that the epoch caps left unfilled."""
        return max(0, self.requested_tokens - self.planned_tokens)

    @property
    def num_files(self) -> int:
        return max(1, math.ceil(self.total_rows / self.rows_per_file))


def rows_for_budget(budget_tokens: int, available_tokens: int, available_rows: int, max_epochs: float | None) -> int:
    """Budget tokens → whole rows at the language's own tokens per row (nearest row), never above max_epochs × rows.

    Not seq_len per row: each shard's last row is partly padding, so a small language capped at its data would get
    fewer rows than it has (one of 1,545 tokens at seq_len 4,096 rounded to none)."""
    rows = math.floor(budget_tokens * available_rows / available_tokens + 0.5)
    if max_epochs is not None:
        rows = min(rows, math.floor(max_epochs * available_rows + 1e-9))  # 1e-9: 0.29 × 100 is 28.999…
    return rows


def validate_phase(phase: Phase) -> None:
    """Fail with the phase's name on the schedule errors the sampler cannot work with."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", phase.name):
        raise UsageError(f"phase name {phase.name!r} cannot name a directory: use letters, digits, '_', '-', '.'")
    if not phase.languages:
        raise UsageError(f"phase {phase.name!r} has no languages")
    if not (isinstance(phase.temperature, (int, float)) and math.isfinite(phase.temperature) and phase.temperature > 0):
        raise UsageError(f"phase {phase.name!r}: temperature must be a number > 0, got {phase.temperature!r}")


def plan_phase(phase: Phase, counts: Mapping[str, int], available_rows: Mapping[str, int], seq_len: int, seed: int,
               budget: int | None = None, max_epochs: float | None = None,
               rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> PhasePlan:
    """Plan one phase. `budget`/`max_epochs` override the phase's own (`Phase.budget`, `Phase.max_epochs`)."""
    validate_phase(phase)
    budget = budget if budget is not None else phase.budget
    max_epochs = max_epochs if max_epochs is not None else phase.max_epochs
    if budget is None:
        raise UsageError(f"phase {phase.name!r} has no token budget: give --budget or `budget:` in the schedule")
    if not budget > 0:
        raise UsageError(f"phase {phase.name!r}: the token budget must be > 0, got {budget}")
    if max_epochs is not None and not max_epochs > 0:
        raise UsageError(f"phase {phase.name!r}: max epochs must be > 0, got {max_epochs}")
    present = [language for language in phase.languages
               if counts.get(language, 0) > 0 and available_rows.get(language, 0) > 0]
    missing = tuple(language for language in phase.languages if language not in present)
    if not present:
        raise UsageError(f"phase {phase.name!r}: none of its {len(phase.languages)} languages have packed train "
                         f"rows in the shards (first few: {', '.join(phase.languages[:5])})")
    phase_counts = {language: counts[language] for language in present}
    weights = temperature_weights(phase_counts, phase.temperature)
    budgets = token_budgets(phase_counts, phase.temperature, int(budget), max_epochs)
    languages = tuple(
        LanguageBudget(language=language, available_tokens=phase_counts[language],
                       available_rows=available_rows[language], weight=weights[language],
                       target_tokens=round(weights[language] * budget), budget_tokens=budgets[language],
                       rows=rows_for_budget(budgets[language], phase_counts[language], available_rows[language],
                                            max_epochs))
        for language in sorted(present))
    if not any(language.rows for language in languages):
        raise UsageError(f"phase {phase.name!r}: a budget of {budget:,} tokens is not even one row of {seq_len} tokens "
                         "for any language")
    return PhasePlan(phase=phase.name, temperature=float(phase.temperature), requested_tokens=int(budget),
                     max_epochs=max_epochs, seed=seed, seq_len=seq_len, rows_per_file=rows_per_file,
                     languages=languages, missing=missing)


# --------------------------------------------------------------------------------------------------------------------
# Seeded orders, computed row by row so that no worker needs to see a whole language.

_U64 = np.uint64


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on uint64 that scatters nearby inputs over the whole range."""
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def stream_seed(seed: int, phase: str, language: str, epoch: int, purpose: str) -> int:
    """A 64-bit seed for one (seed, phase, language, epoch): the same on every worker, different for each."""
    return xxhash.xxh64_intdigest(f"{purpose}\x1f{seed}\x1f{phase}\x1f{language}\x1f{epoch}".encode())


def order_positions(rows: np.ndarray, n: int, stream: int) -> np.ndarray:
    """Position of each of `rows` (indices in [0, n)) in a seeded permutation of range(n).

    A keyed Feistel network over the smallest even-bit domain ≥ n, with cycle walking back into [0, n): a true
    permutation evaluated one row at a time, so a worker reading any slice of a language knows which rows an epoch
    takes without materialising the language's order (numpy's permutation would need all n indices in memory).
    """
    half_bits = max(1, math.ceil(max(n - 1, 1).bit_length() / 2))
    mask = _U64((1 << half_bits) - 1)
    round_keys = [_U64(xxhash.xxh64_intdigest(stream.to_bytes(8, "little"), seed=r)) for r in range(_FEISTEL_ROUNDS)]

    def permute(x: np.ndarray) -> np.ndarray:
        left, right = x >> _U64(half_bits), x & mask
        for key in round_keys:
            left, right = right, left ^ (_mix64(right ^ key) & mask)
        return (left << _U64(half_bits)) | right

    with np.errstate(over="ignore"):
        positions = permute(np.asarray(rows, dtype=np.uint64))
        outside = positions >= _U64(n)
        while outside.any():  # cycle walking: ~2 extra rounds at most on average (domain < 4n)
            positions[outside] = permute(positions[outside])
            outside = positions >= _U64(n)
    return positions.astype(np.int64)


def sort_keys(rows: np.ndarray, stream: int) -> np.ndarray:
    """The global shuffle key of each row of one (phase, language, epoch): uniform over uint64."""
    with np.errstate(over="ignore"):
        return _mix64(_mix64(np.asarray(rows, dtype=np.uint64) ^ _U64(stream)))


def file_of_keys(keys: np.ndarray, num_files: int) -> np.ndarray:
    """Output file of each key: the key space cut into `num_files` equal ranges, in key order."""
    return ((keys >> _U64(32)) * _U64(num_files)) >> _U64(32)


def selected_rows(rows: np.ndarray, budget: LanguageBudget, plan: PhasePlan) -> Iterable[tuple[int, np.ndarray]]:
    """For each epoch: the positions (within `rows`) of the rows that epoch takes."""
    for epoch, quota in enumerate(budget.epoch_quotas()):
        if quota == budget.available_rows:
            yield epoch, np.arange(len(rows))
        else:
            stream = stream_seed(plan.seed, plan.phase, budget.language, epoch, "order")
            yield epoch, np.flatnonzero(order_positions(rows, budget.available_rows, stream) < quota)


# --------------------------------------------------------------------------------------------------------------------
# The packed shards this job reads.


@dataclass(frozen=True)
class RowGroup:
    """Consecutive Parquet row groups of one file of a language's train split, read together: the unit of reading
    (one Beam element). Packed shards have small row groups (the training loader's unit); a job over FineWeb-2's
    sizes reads them ~16M tokens at a time rather than as tens of millions of elements."""

    language: str
    path: str
    indices: tuple[int, ...]
    first_row: int  # index of its first row among all the language's train rows (files in name order)
    num_rows: int


@dataclass
class ShardRowGroups(PackedShards):
    """Packed shards with each language's train row groups from the Parquet footers (no row data)."""

    row_groups: dict[str, tuple[RowGroup, ...]] = field(default_factory=dict)  # language → its row groups, in order

    def available_rows(self) -> dict[str, int]:
        return {language: sum(group.num_rows for group in groups) for language, groups in self.row_groups.items()}


def read_packed_shards(path: str | Path) -> ShardRowGroups:
    """Open the shards (`PackedShards.open`: UsageError if incomplete) and read their row groups' footers."""
    shards = ShardRowGroups.open(path)
    seq_len = shards.seq_len
    for language in sorted(shards.counts):
        groups, first_row = [], 0
        for file in shards.files(language, "train"):
            metadata = read_footer(file)
            indices, unit_first_row, unit_rows = [], first_row, 0
            for index in range(metadata.num_row_groups):
                num_rows = metadata.row_group(index).num_rows
                check_row_width(file, metadata, index, seq_len)
                if num_rows:
                    indices.append(index)
                    unit_rows += num_rows
                first_row += num_rows
                if indices and (unit_rows * seq_len >= READ_TOKENS or index == metadata.num_row_groups - 1):
                    groups.append(RowGroup(language, str(file), tuple(indices), unit_first_row, unit_rows))
                    indices, unit_first_row, unit_rows = [], first_row, 0
        shards.row_groups[language] = tuple(groups)
    return shards


# --------------------------------------------------------------------------------------------------------------------
# Reports: the budget table (--dry-run), the plot and the manifest.


def budget_table(plan: PhasePlan) -> str:
    """A plain-text table of one phase's plan, one line per language, largest budget first."""
    cap = f"{plan.max_epochs:g}" if plan.max_epochs is not None else "none"
    lines = [f"phase {plan.phase}: τ {plan.temperature:g}, budget {plan.requested_tokens:,} tokens, max epochs {cap}, "
             f"seq_len {plan.seq_len}, {len(plan.languages)} languages"
             + (f" ({len(plan.missing)} without shards: {', '.join(plan.missing[:8])}"
                f"{', …' if len(plan.missing) > 8 else ''})" if plan.missing else "")]
    header = ("language", "data tokens", "data rows", "weight", "budget tokens", "rows", "epochs", "shortfall")
    rows = [(b.language, f"{b.available_tokens:,}", f"{b.available_rows:,}", f"{b.weight:.4f}",
             f"{b.budget_tokens:,}", f"{b.rows:,}", f"{b.epochs_used:.2f}", f"{b.shortfall_tokens:,}")
            for b in sorted(plan.languages, key=lambda b: (-b.budget_tokens, b.language))]
    rows.append(("total", f"{sum(b.available_tokens for b in plan.languages):,}",
                 f"{sum(b.available_rows for b in plan.languages):,}", "1.0000", f"{plan.planned_tokens:,}",
                 f"{plan.total_rows:,}", "", f"{plan.shortfall_tokens:,}"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def phase_manifest(plan: PhasePlan, schedule: Phase, taken: Mapping[str, Mapping[str, int]],
                   shards: str) -> dict:
    """The manifest of a materialised phase; `taken` is what the job actually wrote, per language."""
    return {
        "phase": plan.phase,
        "seed": plan.seed,
        "schedule": {"name": schedule.name, "languages": list(schedule.languages), "temperature": plan.temperature,
                     "budget": plan.requested_tokens, "max_epochs": plan.max_epochs},
        "shards": shards,
        "seq_len": plan.seq_len,
        "files": plan.num_files,
        "rows": plan.total_rows,
        "tokens": sum(counts["tokens"] for counts in taken.values()),  # non-padding tokens written
        "requested_tokens": plan.requested_tokens,
        "planned_tokens": plan.planned_tokens,
        "shortfall_tokens": plan.shortfall_tokens,
        "missing_languages": list(plan.missing),
        "languages": {
            b.language: {"available_tokens": b.available_tokens, "available_rows": b.available_rows,
                         "weight": b.weight, "target_tokens": b.target_tokens, "budget_tokens": b.budget_tokens,
                         "budget_rows": b.rows, "rows_taken": taken.get(b.language, {}).get("rows", 0),
                         "tokens_taken": taken.get(b.language, {}).get("tokens", 0),
                         "epochs_used": round(b.epochs_used, 6), "shortfall_tokens": b.shortfall_tokens}
            for b in plan.languages},
    }


# --------------------------------------------------------------------------------------------------------------------
# The Beam job.

_STATS_FILE = ".rows_taken.json"  # per phase, written by the job, checked against the plan, then removed
_SORT_ORDER = [("key", "ascending"), ("language", "ascending"), ("epoch", "ascending"), ("row", "ascending")]


def select_rows(group: RowGroup, plans: Sequence[PhasePlan]):
    """Read one row group; for each phase, yield ((phase, file index), batch): an Arrow table of the rows (with key,
    epoch, row index and token count) that each epoch takes and that fall in that file's key range. Batches rather
    than single rows keep Beam's per-element cost off the hot path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.ParquetFile(group.path).read_row_groups(list(group.indices), columns=["input_ids", "document_lengths"])
    lengths = table.column("document_lengths").combine_chunks()
    cumulative = np.concatenate([[0], np.cumsum(lengths.values.to_numpy(zero_copy_only=False), dtype=np.int64)])
    offsets = lengths.offsets.to_numpy()
    table = table.append_column("tokens", pa.array(cumulative[offsets[1:]] - cumulative[offsets[:-1]]))
    rows = np.arange(group.first_row, group.first_row + group.num_rows, dtype=np.int64)
    for plan in plans:
        budget = next((b for b in plan.languages if b.language == group.language), None)
        if budget is None or budget.rows == 0:
            continue
        parts = []
        for epoch, positions in selected_rows(rows, budget, plan):
            keys = sort_keys(rows[positions], stream_seed(plan.seed, plan.phase, group.language, epoch, "key"))
            parts.append(table.take(positions)
                         .append_column("key", pa.array(keys, type=pa.uint64()))
                         .append_column("file", pa.array(file_of_keys(keys, plan.num_files).astype(np.int64)))
                         .append_column("epoch", pa.array(np.full(len(positions), epoch, dtype=np.int32)))
                         .append_column("row", pa.array(rows[positions])))
        taken = pa.concat_tables(parts).sort_by("file")
        files = taken.column("file").to_numpy()
        starts = np.flatnonzero(np.diff(files, prepend=-1))
        for start, stop in zip(starts, [*starts[1:], len(files)]):
            batch = taken.slice(start, stop - start).drop_columns(["file"])
            yield (plan.phase, int(files[start])), batch.append_column(
                "language", pa.array([group.language] * batch.num_rows, type=pa.string()))


def _part_path(output: str, phase: str, index: int) -> Path:
    return Path(output) / phase / "train" / f"part-{index:05d}.parquet"


def write_mixture_file(element, output: str, seq_len: int):
    """Sort one key range's rows by key and write them as one part file; yield (phase, per-language counts)."""
    import pyarrow as pa

    (phase, index), batches = element
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("document_lengths", pa.list_(pa.int32())),
                        ("language", pa.string())])
    batches = list(batches)
    if batches:
        # Ties between 64-bit keys are all but impossible; language, epoch and row make the order total anyway.
        table = pa.concat_tables(batches).sort_by(_SORT_ORDER)
    else:
        table = schema.empty_table().append_column("tokens", pa.array([], pa.int64()))
    path = _part_path(output, phase, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One schema for every file (list field names differ between writers); the whole output directory is renamed
    # into place at the end, so a plain write is safe here.
    write_rows(table.select(schema.names).cast(schema), path, seq_len)
    counts = table.group_by("language").aggregate([("tokens", "sum"), ("tokens", "count")]).to_pylist()
    yield phase, {entry["language"]: {"rows": entry["tokens_count"], "tokens": entry["tokens_sum"]} for entry in counts}


def write_empty_files(plans: Sequence[PhasePlan], output: str, seq_len: int) -> None:
    """Every output file exists, also one whose key range drew no row (possible for tiny phases)."""
    for plan in plans:
        for index in range(plan.num_files):
            if not _part_path(output, plan.phase, index).exists():
                list(write_mixture_file(((plan.phase, index), []), output, seq_len))  # writes; its counts are {}


def _merge_counts(parts: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {}
    for part in parts:
        for language, entry in part.items():
            target = merged.setdefault(language, {"rows": 0, "tokens": 0})
            for name, value in entry.items():
                target[name] += value
    return merged


def _write_stats(element, output: str) -> None:
    phase, counts = element
    (Path(output) / phase / _STATS_FILE).write_text(json.dumps(counts, sort_keys=True), encoding="utf-8")


def build_pipeline(pipeline, shards: ShardRowGroups, plans: Sequence[PhasePlan], output: str) -> None:
    """Read each needed row group once (for every phase), select and key rows, group by output file, write."""
    import apache_beam as beam

    needed = {b.language for plan in plans for b in plan.languages if b.rows > 0}
    groups = [group for language in sorted(needed) for group in shards.row_groups[language]]
    # No Flatten with a PCollection of every file's key in front of the GroupByKey: under load, Beam 2.77's
    # multi-process DirectRunner lost whole bundles of rows that way (the plan check caught it; 0 losses in 27 runs
    # without it, 1 in 4 with it). Files no row reached are written by `write_empty_files` after the job.
    _ = (pipeline
         | "RowGroups" >> beam.Create(groups, reshuffle=False)
         | "Spread" >> beam.Reshuffle()
         | "SelectRows" >> beam.FlatMap(select_rows, plans=list(plans))
         | "GroupByFile" >> beam.GroupByKey()
         | "WriteFiles" >> beam.FlatMap(write_mixture_file, output=output, seq_len=shards.seq_len)
         | "CountPerPhase" >> beam.CombinePerKey(_merge_counts)
         | "WriteCounts" >> beam.Map(_write_stats, output=output))


def run_mixture(shards: ShardRowGroups, phases: Sequence[Phase], plans: Sequence[PhasePlan], output: str | Path,
                num_workers: int = 1, overwrite: bool = False,
                pipeline_args: Sequence[str] | None = None) -> dict[str, dict]:
    """Materialise `plans` (made by `plan_phase` for `phases`) into `output`, atomically; returns the manifests.

    `pipeline_args` go to Beam's PipelineOptions after the defaults (the local DirectRunner with `num_workers`
    processes) and win over them. Workers write their files straight into the output's temporary sibling, so with
    another runner `output` must be a path every worker can reach (a shared mount).
    """
    from mmbert.atomic import atomic_directory, check_output_directory, write_text_atomic
    from mmbert.beam import new_pipeline

    output = check_output_directory(output, overwrite, scans=[("--shards", shards.path)])
    pipeline = new_pipeline(pipeline_args, num_workers)  # an unknown --runner fails here, before anything is written
    manifests = {}
    with atomic_directory(output, overwrite=overwrite) as staging:
        with pipeline:
            build_pipeline(pipeline, shards, plans, str(staging))
        write_empty_files(plans, str(staging), shards.seq_len)
        for plan, phase in zip(plans, phases):
            stats_file = staging / plan.phase / _STATS_FILE  # absent when no row reached the phase
            taken = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.exists() else {}
            stats_file.unlink(missing_ok=True)
            wrong = {b.language: (b.rows, taken.get(b.language, {}).get("rows", 0)) for b in plan.languages
                     if taken.get(b.language, {}).get("rows", 0) != b.rows}
            if wrong:  # the plan and the job disagree: a bug, never a user error, and nothing is published
                raise RunFailed(f"phase {plan.phase}: the job wrote other rows than planned (planned, written): "
                                f"{wrong}; nothing was published. Run it again, and report it if it repeats")
            manifests[plan.phase] = phase_manifest(plan, phase, taken, str(shards.path))
            write_text_atomic(staging / plan.phase / "manifest.json",
                              json.dumps(manifests[plan.phase], indent=1, ensure_ascii=False) + "\n")
        write_text_atomic(staging / "_SUCCESS", "")
    return manifests
