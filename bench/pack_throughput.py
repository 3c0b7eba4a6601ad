"""Tokens per second per core: `mmbert tokenizer pack` (the whole Beam job) against raw `tokenizers` encode_batch.

Both sides tokenize the same documents with the same tokenizer on one core (RAYON_NUM_THREADS=1, one Beam worker):
    raw:  Tokenizer.encode_batch(texts, add_special_tokens=False) in batches of 512, ids read out as lists, and the
          same with encode_batch_fast (no offsets computed: the stricter baseline, and what pack itself calls)
    pack: run_pack(...) end to end — read Parquet, clean, hash, tokenize, group, sort, pack, write Parquet shards
Throughput is tokens per CPU second of this process (the machine may be shared, so CPU time is the fairer clock;
wall-clock figures are printed too). The corpus is the shipped UDHR text of every language, repeated.

    .venv/bin/python bench/pack_throughput.py                       # Gemma 2, ~140 MB of text, seq_len 1024
    .venv/bin/python bench/pack_throughput.py --repeat 8 --tokenizer path/to/tokenizer.json --markdown out.md
Goal: pack reaches at least 85 % of raw throughput.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool: one core each side

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from mmbert.atomic import write_text_atomic  # noqa: E402


def write_corpus(directory: Path, repeat: int) -> list[str]:
    """A corpus artefact of all shipped UDHR versions, each document repeated `repeat` times under new ids."""
    from mmbert.udhr import udhr_versions

    texts_all = []
    for version in udhr_versions():
        paragraphs = [p for p in version.paragraphs() if p.strip()]
        # Documents of ~3 KB (FineWeb-2's typical page size): consecutive paragraphs joined.
        documents, current = [], []
        for paragraph in paragraphs:
            current.append(paragraph)
            if sum(len(p.encode("utf-8")) for p in current) >= 3000:
                documents.append("\n".join(current))
                current = []
        if current:
            documents.append("\n".join(current))
        texts = [text for _ in range(repeat) for text in documents]
        ids = [f"{version.file}/{copy}/{index}" for copy in range(repeat) for index in range(len(documents))]
        (directory / version.label).mkdir(parents=True, exist_ok=True)
        part = directory / version.label / f"part-{len(list((directory / version.label).glob('*'))):05d}.parquet"
        pq.write_table(pa.table({"id": ids, "text": texts, "language": [version.label] * len(texts)}), part)
        texts_all += texts
    (directory / "_SUCCESS").write_text("")
    return texts_all


def measure(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def raw_encode(tokenizer, texts: list[str], method: str, batch: int = 512) -> int:
    encode = getattr(tokenizer, method)
    tokens = 0
    for start in range(0, len(texts), batch):
        for encoding in encode(texts[start:start + batch], add_special_tokens=False):
            tokens += len(encoding.ids)
    return tokens


SIDES = (("encode_batch", "raw `encode_batch`"), ("encode_batch_fast", "raw `encode_batch_fast`"),
         ("pack", "`pack` (Beam job, end to end)"))


def run_size(work: Path, repeat: int, rounds: int, args) -> dict:
    """Best CPU seconds (and its wall seconds) of each side on one corpus size, sides interleaved per round."""
    from tokenizer.gemma import load_tokenizer
    from tokenizer.pack import packing_tokenizer, run_pack
    from tokenizer.special_tokens import encode_special_tokens_as_text

    corpus = work / f"corpus-{repeat}"
    texts = write_corpus(corpus, repeat)
    tokenizer = encode_special_tokens_as_text(load_tokenizer(args.tokenizer))
    best: dict[str, tuple[float, float]] = {}
    tokens = None
    for round_index in range(rounds):
        for side, _ in SIDES:
            if side == "pack":
                packing_tokenizer.cache_clear()  # every pack run loads its tokenizer, as a command does
                output = work / f"shards-{repeat}-{round_index}"
                manifest, wall, cpu = measure(lambda: run_pack(corpus, args.tokenizer, args.seq_len, output,
                                                               heldout_fraction=0.01, num_workers=1))
                totals, languages = manifest["totals"], manifest["languages"].values()
                # Tokens the job produced without the [CLS]/[SEP] it adds (one pair per document piece in each
                # split: a language's only document is split in two): the count raw encoding gives.
                pieces = sum(entry["train_documents"] + entry["heldout_documents"] for entry in languages)
                count = totals["train_tokens"] + totals["heldout_tokens"] - 2 * pieces
                shutil.rmtree(output)
            else:
                count, wall, cpu = measure(lambda: raw_encode(tokenizer, texts, side))
            assert tokens in (None, count), f"token counts differ: {tokens} and {count} ({side})"
            tokens = count
            best[side] = min(best.get(side, (cpu, wall)), (cpu, wall))
    shutil.rmtree(corpus)
    return {"documents": len(texts), "bytes": sum(len(t.encode("utf-8")) for t in texts), "tokens": tokens,
            **best}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="gemma2")
    parser.add_argument("--repeat", type=int, default=64, help="copies of the UDHR corpus (64 ≈ 140 MB of text)")
    parser.add_argument("--small-repeat", type=int, default=4,
                        help="a second, small run; the difference between the two gives the steady-state rate "
                             "without the fixed start-up (tokenizer load, Beam pipeline set-up)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds on the big corpus; best kept")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--markdown", help="also write the result table to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pack-bench-"))
    try:
        run_size(work, 1, 1, args)  # warm-up: Beam's lazy imports and first-pipeline costs, not timed
        small, big = run_size(work, args.small_repeat, 1, args), run_size(work, args.repeat, args.rounds, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {side: big["tokens"] / big[side][0] for side, _ in SIDES}
    steady = {side: (big["tokens"] - small["tokens"]) / (big[side][0] - small[side][0]) for side, _ in SIDES}
    lines = [
        f"{big['documents']:,} documents, {big['bytes'] / 1e6:.0f} MB of UDHR text (140 languages, ~3 KB documents), "
        f"{big['tokens']:,} tokens; tokenizer {args.tokenizer}, seq_len {args.seq_len}; one core per side "
        f"(RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, one Beam worker); {platform.machine()}, "
        f"{os.cpu_count()} CPUs shared with other jobs, so CPU time is the clock; best of {args.rounds} interleaved "
        f"rounds",
        "",
        "| side | CPU s | wall s | tokens/s per core | steady state, tokens/s per core |",
        "|---|---|---|---|---|",
        *(f"| {name} | {big[side][0]:.1f} | {big[side][1]:.1f} | {rate[side]:,.0f} | {steady[side]:,.0f} |"
          for side, name in SIDES),
        "",
    ]
    for side, name in SIDES[:2]:
        lines.append(f"- pack / {name}: {rate['pack'] / rate[side]:.1%} end to end, "
                     f"{steady['pack'] / steady[side]:.1%} in steady state (goal ≥ 85 %)")
    lines.append(f"- fixed start-up of pack (tokenizer load, Beam set-up) ≈ "
                 f"{big['pack'][0] - big['tokens'] / steady['pack']:.1f} CPU s; steady state = the difference between "
                 f"this run and one on {small['bytes'] / 1e6:.0f} MB")
    print("\n".join(lines))
    if args.markdown:
        write_text_atomic(args.markdown, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
