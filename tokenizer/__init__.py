"""Tokenizer stage: the Gemma 2 tokenizer offline, training a compatible tokenizer, packing the corpus into shards.

In: the corpus artefact (`<label>/part-*.parquet` with `id`, `text`, `language`). Out: packed training shards
(`<label>/{train,heldout}/part-*.parquet` with `input_ids` and `document_lengths`, `manifest.json`,
`token_counts.csv`), trained tokenizer directories, and fertility tables. See docs/tokenizer.md.

- `special_tokens`: the encoder's special ids ([CLS] = <bos> = 2, [SEP] = <eos> = 1, …).
- `gemma`: fetch and verify the Gemma 2 tokenizer, `load_tokenizer(spec)`.
- `pack`: `pack_arrays` (pure: documents → rows; `pack_documents` yields them row by row) and the Beam job `run_pack`.
- `shards`: the packed-shards format: the reader mixtures, training and eval share, its checks and its writer (no Beam).
- `train`: train a Gemma-style BPE tokenizer on a language-balanced sample of the corpus.
- `fertility`: tokens per word and bytes per token per language.
- `documents`, `corpus_files`: per-document cleaning and hashing; reading the corpus artefact.
"""
