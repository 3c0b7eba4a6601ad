"""The training loader: packed rows for each step, phase by phase, the same for any number of processes.

In: the recipe's phases and the packed-shards artefact (`SHARDS/<lang>/train/part-*.parquet`, `manifest.json`,
`token_counts.csv`, `_SUCCESS`), or per phase a materialised mixture (`MIX/train/part-*.parquet` with a `language`
column, already shuffled). Out: per step, this process's slice of the global batch (`StepBatch`: rows, document
lengths, languages, a seed per row for masking) and the phase it belongs to.

How rows are chosen (on-the-fly sampling):
  * each row of a step draws its language from the phase's temperature weights (`languages.sampling`) with a
    generator seeded by (seed, phase, step) — every process draws the whole global batch, then reads only its slice;
  * a language's rows are read without replacement in a seeded shuffled order (row groups shuffled, then rows within
    each), and recycled in a new order when exhausted (the epoch count is kept and logged);
  * a phase ends when it has seen its token budget (rows × seq_len).
A mixture phase reads its rows in order, cycling when it runs out. The loader's position (phase, step, each language's
epoch and cursor) is a small dict of ints saved in every checkpoint, so a resumed run sees exactly the same rows.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from languages.sampling import temperature_weights, token_budgets
from languages.schedule import parse_phase
from mmbert.errors import UsageError
from tokenizer.shards import PackedShards, check_row_width, read_footer
from training.config import PhaseConfig, Recipe

log = logging.getLogger(__name__)
HELD_ROW_GROUPS_WARNING_BYTES = 4 * 10**9


# --------------------------------------------------------------------------------------------------------------------
# Reading packed rows


@dataclass
class RowTable:
    """Rows of one language (or one mixture) across its Parquet files, addressed by a single row index."""

    files: list[Path]
    groups: list[tuple[int, int, int]]  # (file index, row group index, rows), in file order
    starts: list[int]  # first row index of each group

    @classmethod
    def scan(cls, files: list[Path], seq_len: int) -> "RowTable":
        """The tables' row groups, each checked to hold rows of seq_len tokens (from the Parquet footers)."""
        groups, starts, total = [], [], 0
        for file_index, path in enumerate(files):
            metadata = read_footer(path)
            for group in range(metadata.num_row_groups):
                check_row_width(path, metadata, group, seq_len)
                rows = metadata.row_group(group).num_rows
                if rows:
                    groups.append((file_index, group, rows))
                    starts.append(total)
                    total += rows
        return cls(files, groups, starts)

    @property
    def num_rows(self) -> int:
        return self.starts[-1] + self.groups[-1][2] if self.groups else 0

    def locate(self, row: int) -> tuple[int, int]:
        """Row index → (group index, offset inside the group)."""
        group = bisect.bisect_right(self.starts, row) - 1
        return group, row - self.starts[group]


class RowGroupCache:
    """The row group each table (a language's rows, or a mixture's) was last read from, decoded: input_ids as a
    (rows, seq_len) int32 array, document lengths as lists.

    A language stream reads its rows group by group, so holding each table's current group decodes every group once
    per epoch. A least-recently-used cache of a few groups did not: with the 60 to 1,870 languages of mmBERT's phases
    drawn 32 rows a step, each language's group was evicted before its next row came (5 to 28 decodes a step, 0.3 to
    1.1 s of host time on FineWeb-2's sizes against an 84 ms GPU step; bench/loader_throughput.py). Memory: one group
    per language read, ~1 MB each with `tokenizer pack`'s row groups (ROW_GROUP_TOKENS).
    """

    def __init__(self):
        self.current: dict[int, tuple] = {}  # id(table) → (table, group index, ids, document lengths)
        self.decodes = 0

    def row(self, table: RowTable, row: int) -> tuple[np.ndarray, list[int]]:
        group, offset = table.locate(row)
        held = self.current.get(id(table))
        if held is None or held[1] != group:
            held = (table, group, *self.decode(table, group))
            self.current[id(table)] = held  # the table is kept in the value, so its id is not reused meanwhile
            self.decodes += 1
        return held[2][offset], held[3][offset]

    @staticmethod
    def decode(table: RowTable, group: int) -> tuple[np.ndarray, list]:
        file_index, group_index, _ = table.groups[group]
        data = pq.ParquetFile(table.files[file_index]).read_row_group(group_index,
                                                                      columns=["input_ids", "document_lengths"])
        ids = data.column("input_ids").combine_chunks()
        values = ids.flatten().to_numpy().astype(np.int32, copy=False)
        return values.reshape(len(ids), -1), data.column("document_lengths").to_pylist()


def _parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.parquet"))


@dataclass
class LoaderShards(PackedShards):
    """Packed shards as the loader reads them: each language's row table, scanned from the footers on first use."""

    _tables: dict[str, RowTable] = field(default_factory=dict, repr=False)

    def table(self, language: str) -> RowTable:
        if language not in self._tables:
            self._tables[language] = RowTable.scan(self.files(language, "train"), self.seq_len)
        return self._tables[language]


# --------------------------------------------------------------------------------------------------------------------
# Phase sources


def position_key(path: Path | str, language: str | None = None) -> str:
    """Where a checkpoint keeps a stream's (or a mixture's) position: the directory however the recipe spells it
    (relative, through a symlink), so that a resumed run finds it."""
    where = str(Path(path).resolve())
    return where if language is None else f"{where}:{language}"


def manifest_sha256(directory: str) -> str | None:
    """sha256 of a shards or mixture directory's manifest.json (None without one): what the directory holds."""
    manifest = Path(directory) / "manifest.json"
    return hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class LanguageStream:
    """One language's rows in a seeded shuffled order per epoch, read without replacement, recycled when exhausted."""

    def __init__(self, key: str, table: RowTable, seed: int):
        self.key, self.table, self.seed = key, table, seed
        self.epoch, self.position = 0, 0
        self._order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """Row groups in a shuffled order, rows shuffled within each: a full permutation that reads group by group."""
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _stable_hash(self.key), epoch]))
            pieces = []
            for group in rng.permutation(len(self.table.groups)):
                start, rows = self.table.starts[group], self.table.groups[group][2]
                pieces.append(start + rng.permutation(rows))
            self._order = (epoch, np.concatenate(pieces))
        return self._order[1]

    def take(self) -> int:
        row = int(self.order(self.epoch)[self.position])
        self.position += 1
        if self.position == self.table.num_rows:
            self.epoch, self.position = self.epoch + 1, 0
        return row


class SampledPhase:
    """On-the-fly temperature sampling over a phase's languages from per-language shards."""

    def __init__(self, index: int, phase: PhaseConfig, shards: LoaderShards, languages: list[str], seed: int,
                 max_epochs: float | None, streams: dict[str, LanguageStream]):
        self.index, self.phase, self.shards, self.seed = index, phase, shards, seed
        self.languages = languages
        counts = {language: shards.counts[language] for language in languages}
        if max_epochs is None:
            weights = temperature_weights(counts, phase.temperature)
        else:  # with an epoch cap, the sampler's capped budgets (the same numbers a materialised mixture uses)
            budgets = token_budgets(counts, phase.temperature, phase.budget, max_epochs)
            total = sum(budgets.values()) or 1
            weights = {language: budget / total for language, budget in budgets.items()}
        self.weights = np.array([weights[language] for language in languages], dtype=np.float64)
        self.weights /= self.weights.sum()
        # Streams are keyed by shards directory and language: a later phase on the same shards continues the order.
        self.streams = [streams.setdefault(position_key(shards.path, language),
                                           LanguageStream(f"{language}@{shards.seq_len}", shards.table(language), seed))
                        for language in languages]

    def plan(self, step_in_phase: int, rows: int) -> list[tuple[str, RowTable, int]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.index, step_in_phase]))
        choices = rng.choice(len(self.languages), size=rows, p=self.weights)
        return [(self.languages[c], self.streams[c].table, self.streams[c].take()) for c in choices]


class MixturePhase:
    """A materialised phase mixture, read in order and cycled (its rows are already shuffled and balanced)."""

    def __init__(self, index: int, phase: PhaseConfig, path: Path, seq_len: int, mixture_positions: dict[str, int]):
        self.index, self.phase, self.path = index, phase, path
        self.table = RowTable.scan(_parquet_files(path / "train"), seq_len)
        if not self.table.num_rows:
            raise UsageError(f"mixture {path}: no rows under train/")
        if phase.budget > self.table.num_rows * seq_len:  # its rows come round again, past the mixture's epoch caps
            log.warning("phase %s trains on %s tokens but its mixture %s holds %s: its rows repeat %.2f times",
                        phase.name, f"{phase.budget:,}", path, f"{self.table.num_rows * seq_len:,}",
                        phase.budget / (self.table.num_rows * seq_len))
        self.key, self.positions = position_key(path), mixture_positions
        self.positions.setdefault(self.key, 0)
        self._languages = None

    def language_of(self, row: int) -> str:
        if self._languages is None:  # small: one string per row
            self._languages = [value for f in self.table.files
                               for value in pq.read_table(f, columns=["language"]).column("language").to_pylist()]
        return self._languages[row]

    def plan(self, step_in_phase: int, rows: int) -> list[tuple[str, RowTable, int]]:
        start = self.positions[self.key]
        self.positions[self.key] = start + rows
        indices = [(start + i) % self.table.num_rows for i in range(rows)]
        return [(self.language_of(i), self.table, i) for i in indices]


def _mixture_seq_len(path: Path) -> int:
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            return int(json.loads(manifest.read_text(encoding="utf-8"))["seq_len"])
        except (ValueError, KeyError, TypeError):
            pass
    files = _parquet_files(path / "train")
    first = pq.ParquetFile(files[0]).read_row_group(0, columns=["input_ids"]).column("input_ids")
    return len(first[0])


# --------------------------------------------------------------------------------------------------------------------
# The loader


@dataclass
class StepBatch:
    phase_index: int
    step_in_phase: int
    input_ids: np.ndarray  # (rows of this process, seq_len) int64
    document_lengths: list[list[int]]
    languages: list[str]  # this process's rows
    row_seeds: list[tuple[int, ...]]  # one per row of this process, for masking
    global_languages: list[str]  # every row of the global batch (for per-language token counts)


class TrainLoader:
    """Phases in order; each step's global batch planned identically on every process, read in slices."""

    def __init__(self, recipe: Recipe, rank: int = 0, world_size: int = 1):
        self.recipe, self.rank, self.world_size, self.seed = recipe, rank, world_size, recipe.seed
        self.streams: dict[str, LanguageStream] = {}
        self.mixture_positions: dict[str, int] = {}
        self.cache = RowGroupCache()
        self._shards: dict[str, LoaderShards] = {}
        self.phase_index, self.step_in_phase, self.tokens_in_phase = 0, 0, 0
        self.sources = [self._build_source(index, phase) for index, phase in enumerate(recipe.phases)]
        self._warn_about_large_row_groups()

    # Building (all checks happen here, before any training)

    def _build_source(self, index: int, phase: PhaseConfig):
        where = f"phases[{index}] ({phase.name})"
        if phase.mixture:
            path = Path(phase.mixture)
            if not path.is_dir() or not _parquet_files(path / "train"):
                raise UsageError(f"{where}.mixture: {path} holds no train/part-*.parquet "
                                 "(make it with `mmbert languages mix`)")
            seq_len = _mixture_seq_len(path)
            self._check_seq_len(where, phase, seq_len, path, "mixture")
            drawn_from = phase.shards or self.recipe.data.shards
            if drawn_from and (Path(drawn_from) / "_SUCCESS").is_file():
                self.shards(phase)  # the shards it was drawn from: their tokenizer goes into every checkpoint
            return MixturePhase(index, phase, path, seq_len, self.mixture_positions)
        shards = self.shards(phase)
        self._check_seq_len(where, phase, shards.seq_len, shards.path, "shards")
        available = {language for language, count in shards.counts.items() if count > 0}
        resolved = parse_phase(phase.language_spec, f"recipe {where}", counts=shards.counts)
        missing = [language for language in resolved.languages if language not in available
                   or not shards.table(language).num_rows]
        present = [language for language in resolved.languages if language not in missing]
        if missing:
            shown = ", ".join(missing[:20]) + (f" … ({len(missing)} in all)" if len(missing) > 20 else "")
            if not self.recipe.data.skip_missing_languages:
                raise UsageError(f"{where}: no packed shards in {shards.path} for: {shown}. Pack them, or set "
                                 "data.skip_missing_languages: true to train on the languages that have shards")
            log.warning("%s: skipping %d languages without shards in %s: %s", where, len(missing), shards.path, shown)
        if not present:
            raise UsageError(f"{where}: none of the phase's languages has packed shards in {shards.path}")
        return SampledPhase(index, phase, shards, present, self.seed, resolved.max_epochs, self.streams)

    def _warn_about_large_row_groups(self) -> None:
        """The cache holds one decoded group per language a phase reads: say so when that is a lot of memory (shards
        packed with the 16M-token row groups of earlier versions: up to 17 GB for mmBERT's last phase)."""
        for source in self.sources:
            if not isinstance(source, SampledPhase):
                continue
            largest = sum(max(rows for _, _, rows in stream.table.groups) for stream in source.streams)
            held = largest * source.shards.seq_len * 4  # int32 tokens
            if held > HELD_ROW_GROUPS_WARNING_BYTES:
                log.warning("phase %s: the loader will hold up to %.1f GB of decoded row groups per process (one "
                            "per language; the row groups of %s are large): repack with `mmbert tokenizer pack`, "
                            "which writes 256K-token groups", source.phase.name, held / 1e9, source.shards.path)

    def shards(self, phase: PhaseConfig) -> LoaderShards:
        path = str(phase.shards or self.recipe.data.shards)
        if path not in self._shards:
            self._shards[path] = LoaderShards.open(path)
        return self._shards[path]

    @staticmethod
    def _check_seq_len(where: str, phase: PhaseConfig, seq_len: int, path: Path, what: str) -> None:
        if seq_len != phase.seq_len:
            raise UsageError(
                f"{where}.seq_len: the phase trains at {phase.seq_len} tokens per row but the {what} in {path} "
                f"are packed at {seq_len}; pack shards at {phase.seq_len} (`mmbert tokenizer pack --seq-len "
                f"{phase.seq_len}`) and name them in the phase's `shards:`")

    @property
    def vocab_size(self) -> int | None:
        sizes = {s.vocab_size for s in self._shards.values() if s.vocab_size}
        return max(sizes) if sizes else None

    @property
    def tokenizer(self) -> dict | None:
        """The shards' tokenizer entry ({spec, sha256, vocab_size, path}), recorded in every checkpoint."""
        return next((s.manifest.get("tokenizer") for s in self._shards.values()), None)

    # Iteration

    @property
    def finished(self) -> bool:
        return self.phase_index >= len(self.sources)

    @property
    def phase(self) -> PhaseConfig:
        return self.recipe.phases[self.phase_index]

    @property
    def schedule_tokens(self) -> int:
        """Where the run stands on the recipe's token line: the budgets of the finished phases + this phase's tokens.
        A phase ends at the first whole step past its budget; counting from the budgets, not from tokens seen, keeps
        those overshoots from moving the schedule (the decay phase's first step is at the decay's start)."""
        return sum(phase.budget for phase in self.recipe.phases[:self.phase_index]) + self.tokens_in_phase

    def next_batch(self, global_rows: int) -> StepBatch:
        """Plan `global_rows` rows (all processes alike), read this process's slice, advance the phase's budget."""
        if self.finished:
            raise StopIteration("all phases are done")
        if global_rows % self.world_size:
            raise ValueError(f"global batch {global_rows} does not split over {self.world_size} processes")
        source, phase = self.sources[self.phase_index], self.phase
        planned = source.plan(self.step_in_phase, global_rows)
        per_rank = global_rows // self.world_size
        mine = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        rows = [self.cache.row(planned[i][1], planned[i][2]) for i in mine]
        batch = StepBatch(
            phase_index=self.phase_index,
            step_in_phase=self.step_in_phase,
            input_ids=np.stack([row[0] for row in rows]).astype(np.int64),
            document_lengths=[list(row[1]) for row in rows],
            languages=[planned[i][0] for i in mine],
            row_seeds=[(self.seed, self.phase_index, self.step_in_phase, i) for i in mine],
            global_languages=[language for language, _, _ in planned],
        )
        self.step_in_phase += 1
        self.tokens_in_phase += global_rows * phase.seq_len
        if self.tokens_in_phase >= phase.budget:
            self.phase_index, self.step_in_phase, self.tokens_in_phase = self.phase_index + 1, 0, 0
            self.cache = RowGroupCache()  # the next phase reads other languages, or other shards
        return batch

    def epochs(self) -> dict[str, float]:
        """Epochs read so far per language stream (fractional), for the metrics: `language@seq_len`, or the stream's
        full key (shards directory:language) where two shards directories of one length hold the language."""
        names = collections.Counter(stream.key for stream in self.streams.values())
        return {(stream.key if names[stream.key] == 1 else key):
                stream.epoch + stream.position / stream.table.num_rows for key, stream in self.streams.items()}

    # Checkpointing: plain ints and strings only (trainer_state.pt is loaded with weights_only=True)

    def state_dict(self) -> dict:
        return {
            "phase_index": self.phase_index,
            "step_in_phase": self.step_in_phase,
            "tokens_in_phase": self.tokens_in_phase,
            "streams": {key: [stream.epoch, stream.position] for key, stream in self.streams.items()},
            "mixtures": dict(self.mixture_positions),
            # what each directory holds, so a resumed run finds it moved or copied (node-local disk, a new mount)
            "manifests": {where: manifest_sha256(where) for where in self._directories()},
        }

    def _directories(self) -> list[str]:
        return sorted({*(key.rsplit(":", 1)[0] for key in self.streams), *self.mixture_positions})

    def _moved_directories(self, saved: dict[str, str | None]) -> dict[str, str]:
        """Checkpointed directory → this run's directory with the same manifest, where the old one is not read now
        and exactly one is."""
        read_now = self._directories()
        new = {where: manifest_sha256(where) for where in read_now if where not in saved}
        moved = {}
        for where, digest in saved.items():
            found = [now for now, now_digest in new.items() if digest and now_digest == digest]
            if where not in read_now and len(found) == 1 and found[0] not in moved.values():
                log.info("positions for %s continue in %s (the same manifest.json)", where, found[0])
                moved[where] = found[0]
        return moved

    def load_state_dict(self, state: dict) -> None:
        self.phase_index = int(state["phase_index"])
        self.step_in_phase, self.tokens_in_phase = int(state["step_in_phase"]), int(state["tokens_in_phase"])
        moved = self._moved_directories(state.get("manifests", {}))
        for key, (epoch, position) in state["streams"].items():
            key = position_key(*key.rsplit(":", 1))  # checkpoints before keys were resolved paths
            where, _, language = key.rpartition(":")
            key = f"{moved.get(where, where)}:{language}"
            if key not in self.streams:
                log.warning("checkpoint has a position for %s, which this recipe does not read: that stream "
                            "starts over", key)
                continue
            self.streams[key].epoch, self.streams[key].position = int(epoch), int(position)
        for key, position in state["mixtures"].items():
            key = position_key(key)
            key = moved.get(key, key)
            if key not in self.mixture_positions:
                log.warning("checkpoint has a position in mixture %s, which this recipe does not read", key)
            self.mixture_positions[key] = int(position)
