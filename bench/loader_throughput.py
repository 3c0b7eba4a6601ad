"""Host time per training step: what the trainer's CPU side does for each batch, against the GPU step it overlaps.

The training step never waits on the device (training/step.py), so the host prepares batch n + 1 while the GPU runs
batch n; the GPU starves only if this work takes longer than a GPU step. Measured on real packed shards (the shipped
UDHR text of every language, packed with the Gemma 2 tokenizer), one process, the trainer's own calls in its order:

    next_batch   TrainLoader.next_batch: plan the global batch (temperature sampling over every language), read rows
    mask         mask_batch: 30 % MLM masking, 80/10/10, one seeded stream per row
    document_ids document_ids_from_lengths: the packing boundaries the attention masks are built from
    capacity     prediction_rows + the masked count the loss is normalised by

    .venv/bin/python bench/loader_throughput.py                     # 1024 x 32 and 8192 x 4, 50 steps each
    .venv/bin/python bench/loader_throughput.py --markdown bench/results/loader_throughput.md

Second table: the row-group cache at FineWeb-2's scale, which this machine cannot hold on disk. The real cache
classes and language streams run mmBERT's three phases (top 60 at τ 0.7, top 110 at τ 0.5, all 1,870 at τ 0.3;
FineWeb-2's sizes from languages/data/languages.csv at ~4 bytes a token) over row tables without files, counting the
groups each would decode; a decode's cost is measured on real packed rows tiled into Parquet groups of each size.
Side by side: the loader's cache (each language's current group) on 256K-token groups, and the cache it replaced
(the 32 most recently used groups) on the 16M-token groups `tokenizer pack` wrote before.

Not measured here (needs a GPU): the pinned host-to-device copy and kernel launches, which the GPU benchmark's
profile shows as the difference between device-busy time and wall time (bench/step_profile.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mmbert.atomic import write_text_atomic  # noqa: E402

GOAL_TOKENS_PER_SECOND = 390_000  # issue 6's goal for mmbert-base on one H100 at 1024 x 32
PARTS = ("next_batch", "mask", "document_ids", "capacity")


def measure_shape(corpus: Path, work: Path, seq_len: int, rows: int, steps: int, tokenizer: str) -> dict:
    from tokenizer.pack import run_pack
    from training.batches import document_ids_from_lengths
    from training.config import load_recipe
    from training.data import TrainLoader
    from training.loss import IGNORE_INDEX
    from training.masking import mask_batch
    from training.step import prediction_rows

    shards = work / f"shards-{seq_len}"
    run_pack(corpus, tokenizer, seq_len, shards, heldout_fraction=0.01, num_workers=1)
    overrides = [f"data.shards={shards}", f"batch.global_size={rows}", f"batch.micro_size={rows}",
                 "phases.0.top=100000", "phases.0.temperature=0.3"]  # every language, as mmBERT's decay phase
    for index in range(3):  # the tiny recipe's three phases, at this length
        overrides += [f"phases.{index}.seq_len={seq_len}", f"phases.{index}.budget=1T"]
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny-cpu.yaml", overrides)
    loader = TrainLoader(recipe)
    mask_rate, vocab_size = 0.3, 256_000
    seconds = dict.fromkeys(PARTS, 0.0)
    for step in range(steps + 5):  # 5 untimed steps: first row-group reads, numpy's first calls
        if step == 5:
            seconds = dict.fromkeys(PARTS, 0.0)
        start = time.perf_counter()
        batch = loader.next_batch(rows)
        after_batch = time.perf_counter()
        _, labels = mask_batch(batch.input_ids, mask_rate, batch.row_seeds, vocab_size)
        after_mask = time.perf_counter()
        document_ids_from_lengths(batch.document_lengths, seq_len)
        after_documents = time.perf_counter()
        prediction_rows(labels, mask_rate)
        float((labels != IGNORE_INDEX).sum())
        end = time.perf_counter()
        for part, spent in zip(PARTS, (after_batch - start, after_mask - after_batch, after_documents - after_mask,
                                       end - after_documents)):
            seconds[part] += spent
    per_step_ms = {part: 1000 * spent / steps for part, spent in seconds.items()}
    gpu_step_ms = 1000 * seq_len * rows / GOAL_TOKENS_PER_SECOND
    return {"seq_len": seq_len, "rows": rows, "languages": len(set(batch.global_languages)),
            **per_step_ms, "total": sum(per_step_ms.values()), "gpu_step_ms": gpu_step_ms}


MMBERT_PHASES = (("pretrain", 60, 0.7), ("mid_training", 110, 0.5), ("decay", None, 0.3))
BYTES_PER_TOKEN = 4  # a rough Gemma 2 average, to turn FineWeb-2's bytes into tokens


def least_recently_used(size: int = 32):
    """The cache the loader had before: the `size` most recently used row groups, whatever their table."""
    from training.data import RowGroupCache

    class LeastRecentlyUsed(RowGroupCache):
        def __init__(self):
            super().__init__()
            self.entries = OrderedDict()

        def row(self, table, row):
            group, offset = table.locate(row)
            key = (id(table), group)
            if key not in self.entries:
                self.entries[key] = (table, *self.decode(table, group))
                self.decodes += 1
                if len(self.entries) > size:
                    self.entries.popitem(last=False)
            self.entries.move_to_end(key)
            _, ids, lengths = self.entries[key]
            return ids[offset], lengths[offset]

    return LeastRecentlyUsed


def counting(cache_class, seq_len: int):
    """`cache_class` with decodes counted (and their tokens summed) instead of read: tables without files."""

    class Nothing:
        def __getitem__(self, index):
            return None

    class Counting(cache_class):
        tokens = 0

        def decode(self, table, group):
            Counting.tokens += table.groups[group][2] * seq_len
            return Nothing(), Nothing()

    return Counting


def decode_cost(shards: Path, work: Path, group_tokens: int, seq_len: int) -> float:
    """Seconds to decode one row group of `group_tokens` real packed tokens (best of 3), through the loader's decode."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import RowGroupCache, RowTable

    real = pa.concat_tables(pq.read_table(path, columns=["input_ids", "document_lengths"])
                            for path in sorted(shards.glob("*/train/part-*.parquet")))
    rows = max(1, group_tokens // seq_len)
    tiled = pa.concat_tables([real] * (rows // real.num_rows + 1)).slice(0, rows)
    path = work / f"group-{group_tokens}.parquet"
    pq.write_table(tiled, path, row_group_size=rows, compression="zstd", use_dictionary=False)  # as pack writes
    table = RowTable.scan([path], seq_len)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        RowGroupCache.decode(table, 0)
        best = min(best, time.perf_counter() - start)
    return best


def fineweb2_scale(shards: Path, work: Path, seq_len: int = 1024, rows: int = 32, steps: int = 200) -> list[dict]:
    import numpy as np

    from languages.registry import all_languages
    from languages.sampling import temperature_weights
    from training.data import LanguageStream, RowGroupCache, RowTable

    counts = {language.code: language.bytes // BYTES_PER_TOKEN for language in all_languages() if language.bytes}
    # (name, cache, tokens per row group, bytes per decoded token: the old cache held int64)
    sides = (("before: 32 most recent groups, 16M-token groups", least_recently_used(), 16 * 2**20, 8),
             ("now: each language's current group, 256K-token groups", RowGroupCache, 2**18, 4))
    seconds = {group_tokens: decode_cost(shards, work, group_tokens, seq_len) for _, _, group_tokens, _ in sides}
    results = []
    for phase, top, temperature in MMBERT_PHASES:
        languages = sorted(counts, key=lambda code: (-counts[code], code))[:top]
        weights = temperature_weights({code: counts[code] for code in languages}, temperature)
        probabilities = np.array([weights[code] for code in languages])
        for side, cache_class, group_tokens, token_bytes in sides:
            group_rows = max(1, group_tokens // seq_len)
            streams = []
            for code in languages:  # four groups at most: a stream only ever needs its current one
                total = min(max(1, counts[code] // seq_len), 4 * group_rows)
                groups = [(0, g, min(group_rows, total - g * group_rows)) for g in range(-(-total // group_rows))]
                streams.append(LanguageStream(code, RowTable([], groups, [g * group_rows for g in range(len(groups))]),
                                              seed=0))
            cache = counting(cache_class, seq_len)()
            draws = np.random.default_rng(0).choice(len(languages), size=(steps, rows),
                                                    p=probabilities / probabilities.sum())
            for step_draws in draws:
                for choice in step_draws:
                    cache.row(streams[choice].table, streams[choice].take())
            # A decode costs what one of its size costs: a fixed part plus a part per token (two measured sizes).
            small, large = 2**18, 16 * 2**20
            per_token = (seconds[large] - seconds[small]) / (large - small)
            fixed = max(0.0, seconds[small] - per_token * small)
            host_ms = 1000 * (cache.decodes * fixed + cache.tokens * per_token) / steps
            held = ([(table, group) for table, group, *_ in cache.current.values()] if not hasattr(cache, "entries")
                    else [(table, group) for (_, group), (table, *_) in cache.entries.items()])
            held_mb = sum(table.groups[group][2] for table, group in held) * seq_len * token_bytes / 2**20
            results.append({"phase": phase, "languages": len(languages), "side": side,
                            "decodes": cache.decodes / steps, "host_ms": host_ms, "held_mb": held_mb,
                            "decode_ms": 1000 * seconds[group_tokens]})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="1024x32,8192x4", help="seq_len x rows, comma-separated")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=4, help="copies of the UDHR corpus to pack")
    parser.add_argument("--tokenizer", default="gemma2")
    parser.add_argument("--markdown", help="also write the result table to this file")
    args = parser.parse_args(argv)
    from pack_throughput import write_corpus

    work = Path(tempfile.mkdtemp(prefix="loader-bench-"))
    try:
        write_corpus(work / "corpus", args.repeat)
        results = [measure_shape(work / "corpus", work, int(length), int(rows), args.steps, args.tokenizer)
                   for length, rows in (shape.split("x") for shape in args.shapes.split(","))]
        scale = fineweb2_scale(work / "shards-1024", work) if (work / "shards-1024").is_dir() else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [f"Host milliseconds per training step, mean of {args.steps} steps after 5 untimed; one process; "
             f"UDHR x {args.repeat} packed with {args.tokenizer}; {platform.machine()}, {os.cpu_count()} CPUs "
             "(shared). The GPU step is a step at issue 6's goal of "
             f"{GOAL_TOKENS_PER_SECOND:,} tokens/s: the host has that long to prepare the next batch.", "",
             f"| seq_len x rows | languages in the batch | {' | '.join(PARTS)} | host total | GPU step at goal "
             "| host / GPU |", "|---" * (len(PARTS) + 5) + "|"]
    for r in results:
        lines.append(f"| {r['seq_len']} x {r['rows']} | {r['languages']} | "
                     + " | ".join(f"{r[part]:.2f}" for part in PARTS)
                     + f" | {r['total']:.2f} | {r['gpu_step_ms']:.0f} | {r['total'] / r['gpu_step_ms']:.1%} |")
    if scale:
        gpu_step_ms = 1000 * 1024 * 32 / GOAL_TOKENS_PER_SECOND
        lines += ["", "Row-group decodes at FineWeb-2's scale, 1024 x 32, 200 steps per phase (decodes counted by the "
                  "real caches over file-less row tables; decode cost measured on real packed rows, this machine):",
                  "", "| phase | languages | cache, row groups | decodes / step | one decode, ms | host decode ms "
                  "/ step | / GPU step at goal | decoded groups held, MB |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['phase']} | {r['languages']:,} | {r['side']} | {r['decodes']:.2f} | {r['decode_ms']:.1f} | "
                  f"{r['host_ms']:.1f} | {r['host_ms'] / gpu_step_ms:.1%} | {r['held_mb']:,.0f} |" for r in scale]
    print("\n".join(lines))
    if args.markdown:
        write_text_atomic(args.markdown, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
