"""corpus: WARC / WET / JSONL / Parquet → language-identified, filtered, deduplicated per-language Parquet.

In: web archives (Common Crawl style WARC or WET files) or text files, as paths, globs or a manifest of paths on
any filesystem Beam knows. Out: `OUT/<xxx_Scrp>/part-*.parquet`, `OUT/stats.json`, `OUT/counts.csv`,
`OUT/_SUCCESS` (see docs/corpus.md).

Each step is a pure function over one document (`extract.extract_text`, `lid.LanguageIdentifier`,
`filters.quality_filter`, `dedup.minhash_signature`, …) wrapped by a thin Beam PTransform in `transforms.py`;
`pipeline.run_build` wires them together and `cli.py` exposes `mmbert corpus build|stats|thresholds`; `crawl.py`
fetches pages into WARC files first (`mmbert corpus crawl`).
"""
