"""One-off: pack FineWeb-2's per-language filter settings into one compact file the corpus stage ships.

    python scripts/prepare_fineweb2_filters.py --configs ../shared/data/fineweb2/configs

Reads `configs/<code>_<Script>.yml` (1,929 files: language_score, GopherRepetition dup_line_frac / top_n_grams /
dup_n_grams, FineWebQuality line_punct_thr / new_line_ratio, GopherQuality min/max_avg_word_length,
max_non_alpha_words_ratio, stopwords) and writes `corpus/data/fineweb2_filters.json.gz`: {"source", "licence",
"languages": {label: settings}}. Source: huggingface/fineweb-2, Apache-2.0 (see corpus/data/README.md).
Not run by tests or at build time; its output is committed.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import yaml

KEYS = ("language_score", "dup_line_frac", "top_n_grams", "dup_n_grams", "line_punct_thr", "new_line_ratio",
        "min_avg_word_length", "max_avg_word_length", "max_non_alpha_words_ratio", "stopwords")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=Path, required=True, help="FineWeb-2's configs/ folder")
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).resolve().parent.parent / "corpus" / "data" / "fineweb2_filters.json.gz")
    args = parser.parse_args()
    languages = {}
    for path in sorted(args.configs.glob("*.yml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        missing = [key for key in KEYS if key not in config]
        if missing:
            raise SystemExit(f"{path}: missing {missing}")
        languages[path.stem] = {key: config[key] for key in KEYS}
    payload = {
        "source": "https://github.com/huggingface/fineweb-2 configs/*.yml",
        "licence": "Apache-2.0",
        "languages": languages,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 so that rerunning the script gives the same bytes.
    with gzip.GzipFile(args.output, "wb", mtime=0) as handle:
        handle.write(json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    print(f"wrote {len(languages)} languages to {args.output}")


if __name__ == "__main__":
    main()
