"""Throughput of `mmbert languages mix`: packed rows written per second by the Beam job.

Builds synthetic packed shards (random token ids in the packed-shards format, a Zipf-like spread of languages), then
times the planner and the job. Usage:

    .venv/bin/python bench/bench_mixture.py --rows 200000 --seq-len 128 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LANGUAGES = ["eng_Latn", "rus_Cyrl", "cmn_Hani", "fra_Latn", "arb_Arab", "hin_Deva", "swh_Latn", "amh_Ethi"]


def write_shards(root: Path, total_rows: int, seq_len: int, rows_per_file: int = 50_000) -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([1 / (rank + 1) ** 1.5 for rank in range(len(LANGUAGES))])
    sizes = np.maximum(1, (sizes / sizes.sum() * total_rows).astype(int))
    lines = ["language,tokens"]
    for language, rows in zip(LANGUAGES, sizes):
        for part, start in enumerate(range(0, rows, rows_per_file)):
            count = min(rows_per_file, rows - start)
            ids = rng.integers(5, 256_000, size=count * seq_len, dtype=np.int32)
            offsets = pa.array(np.arange(count + 1, dtype=np.int32) * seq_len)
            lengths = pa.ListArray.from_arrays(pa.array(np.arange(count + 1, dtype=np.int32)),
                                               pa.array(np.full(count, seq_len, dtype=np.int32)))
            path = root / language / "train" / f"part-{part:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids)),
                                     "document_lengths": lengths}), path, row_group_size=10_000)
        lines.append(f"{language},{rows * seq_len}")
    (root / "token_counts.csv").write_text("\n".join(lines) + "\n")
    (root / "manifest.json").write_text(json.dumps({"seq_len": seq_len}))
    (root / "_SUCCESS").write_text("")


def main() -> None:
    from languages.mixture import plan_phase, read_packed_shards, run_mixture
    from languages.schedule import Phase

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="packed rows in the synthetic shards")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards_dir = Path(tmp) / "shards"
        write_shards(shards_dir, args.rows, args.seq_len)
        shards = read_packed_shards(shards_dir)
        phase = Phase("bench", tuple(LANGUAGES), 0.3)
        start = time.perf_counter()
        # τ 0.3 and a budget of the whole data: large languages down-sampled, small ones repeated up to 4 epochs.
        plan = plan_phase(phase, shards.counts, shards.available_rows(), shards.seq_len, seed=0,
                          budget=args.rows * args.seq_len, max_epochs=4.0)
        print(f"plan: {time.perf_counter() - start:.3f}s for {plan.total_rows:,} rows")
        for workers in args.workers:
            start = time.perf_counter()
            run_mixture(shards, [phase], [plan], Path(tmp) / f"out-{workers}", num_workers=workers)
            seconds = time.perf_counter() - start
            print(f"{workers} worker(s): {seconds:.1f}s, {plan.total_rows / seconds:,.0f} rows/s, "
                  f"{plan.total_rows * args.seq_len / seconds / 1e6:.1f}M tokens/s")


if __name__ == "__main__":
    main()
