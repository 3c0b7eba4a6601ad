"""Train a tokenizer of Gemma 2's design on the corpus, with `tokenizers` (Rust BPE trainer).

In: the corpus artefact, a vocabulary size, a temperature. Out: a directory that
`transformers.AutoTokenizer.from_pretrained(DIR)` loads: tokenizer.json, tokenizer_config.json,
special_tokens_map.json, and training.json (what it was trained on).

Gemma 2's design, kept here:
- ids 0-4 are <pad> <eos> <bos> <unk> <mask> (tokenizer/special_tokens.py), as in Gemma 2. Then the 256 byte tokens
  <0x00>…<0xFF> of byte fallback (ids 5-260 here; 217-472 in Gemma 2, which reserves more ids first), so no text is
  ever unknown; learned pieces follow.
- the normalizer only replaces " " with "▁" and the decoder undoes it (Replace, ByteFallback, Fuse): no lowercasing,
  no Unicode normalization, whitespace kept exactly.
- no whitespace pre-splitting at encoding time, as in Gemma. While training, text is cut before each "▁" (runs of
  spaces stay together) and between letters and punctuation, so no merge ever spans a word boundary or glues
  punctuation to a word — the constraints SentencePiece (whitespace and Unicode-script splitting) applied to Gemma.
- digits are always single tokens (a Digits pre-tokenizer, kept at encoding time), pieces are at most 16 characters.
- the alphabet keeps the characters covering 99.95 % of the sample (SentencePiece's default character coverage);
  rarer characters fall back to bytes.
Difference from Gemma: the post-processor adds [CLS] … [SEP] (<bos> … <eos>), the encoder convention of mmBERT.

Training text is drawn language-balanced: each language's share of `max_bytes` follows the temperature weights
p ∝ bytes^τ (`languages.sampling.token_budgets`, capped at the text it has), documents chosen by a seeded hash.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Iterator

from languages.registry import normalize_list
from mmbert.atomic import atomic_directory, check_output_directory, write_text_atomic
from mmbert.errors import UsageError
from tokenizer.corpus_files import corpus_languages, iter_texts, text_bytes
from tokenizer.documents import document_hash, hash_fraction
from tokenizer.special_tokens import BOS_TOKEN, EOS_TOKEN, MASK_TOKEN, SPECIAL_TOKEN_ROLES, SPECIAL_TOKENS, UNK_TOKEN

BYTE_TOKENS = [f"<0x{byte:02X}>" for byte in range(256)]
CHARACTER_COVERAGE = 0.9995
MAX_PIECE_LENGTH = 16
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + 64


def sample_training_texts(files: dict[str, list[Path]], max_bytes: int, temperature: float,
                          seed: int = 0) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Language → texts drawn for training, and language → byte budget it was given.

    Budgets come from temperature sampling over each language's text bytes, each capped at what the language has
    (the excess goes to the others). Within a language, documents are taken in the order of a seeded hash of their
    id until the budget is spent, the last one cut to fit — a deterministic sample that does not favour the first
    files, and as many bytes as the budget, even for a language of one long document.

    Text bytes are first estimated from Parquet footers, which count page overhead too (0.5-45 %): a language capped
    at that estimate runs out before its budget. Its real bytes are then known, so budgets are computed again and the
    languages whose budget changed are drawn again (a longer or shorter prefix of the same order), until none runs out.
    """
    from languages.sampling import token_budgets

    available = {label: text_bytes(paths) for label, paths in files.items()}
    budgets = token_budgets(available, temperature, max_bytes, max_epochs=1.0)
    drawn = {label: _draw_texts(files[label], budget, available[label], seed) for label, budget in budgets.items()}
    for _ in range(4):  # each round fixes the languages that ran out; one or two rounds settle it
        ran_out = {label: used for label, (_, used) in drawn.items()
                   if budgets[label] - used >= 4 and used != available[label]}
        if not ran_out:
            break
        available.update(ran_out)
        new_budgets = token_budgets(available, temperature, max_bytes, max_epochs=1.0)
        for label, budget in new_budgets.items():
            if budget != budgets[label]:
                drawn[label] = _draw_texts(files[label], budget, available[label], seed)
        budgets = new_budgets
    sample = {label: texts for label, (texts, _) in drawn.items() if texts}
    return sample, budgets


def _draw_texts(paths: list[Path], budget: int, available: int, seed: int) -> tuple[list[str], int]:
    """One language's texts in seeded hash order up to `budget` bytes (the last cut on a character), and their bytes.

    Documents are held and sorted only for a range of hash fractions at a time: first those under the share the
    budget needs (with headroom), then, only while the budget is not met, ranges twice as wide. A large language never
    sits in memory whole, and a small one still fills its budget."""
    texts, used = [], 0
    low, high = 0.0, min(1.0, 1.5 * budget / max(available, 1))
    while budget - used >= 4:  # else full: perhaps not even one more character fits
        hashed = ((hash_fraction(document_hash(doc_id, seed)), text) for doc_id, text in iter_texts(paths))
        in_range = sorted((fraction, text) for fraction, text in hashed  # the last range takes 1.0 too (rounding)
                          if low <= fraction and (fraction < high or high >= 1.0))
        for _, text in in_range:
            text = text.encode("utf-8")[:budget - used].decode("utf-8", errors="ignore")  # cut on a character
            if text:
                texts.append(text)
                used += len(text.encode("utf-8"))
            if budget - used < 4:
                break
        if high >= 1.0:
            break
        low, high = high, min(1.0, 2 * high)
    return texts, used


def frequent_characters(texts: Iterator[str], coverage: float = CHARACTER_COVERAGE) -> list[str]:
    """The most frequent characters that together cover `coverage` of all character occurrences, most frequent
    first (ties by code point)."""
    counts = Counter()
    for text in texts:
        counts.update(text)
    total, covered, chosen = sum(counts.values()), 0, []
    for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if covered >= coverage * total:
            break
        covered += count
        chosen.append(char)
    return chosen


def build_gemma_style_bpe(texts: list[str], vocab_size: int):
    """Train the BPE model and return a `tokenizers.Tokenizer` laid out and configured as described above."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    learned_size = vocab_size - len(BYTE_TOKENS)  # the trainer's vocabulary: specials + alphabet + merges
    digits = list("0123456789")
    frequent = [char for char in frequent_characters(text.replace(" ", "▁") for text in texts)  # as normalised
                if char not in digits]
    alphabet = digits + frequent[:max(0, (learned_size - len(SPECIAL_TOKENS)) // 2 - len(digits))]
    trainer = trainers.BpeTrainer(
        vocab_size=learned_size,
        special_tokens=list(SPECIAL_TOKENS),
        # The alphabet is chosen here, not by the trainer's `limit_alphabet`, which cuts ties in counts in hash-map
        # order (a different tokenizer from run to run); every digit is a token, as in Gemma (not a byte sequence).
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        max_token_length=MAX_PIECE_LENGTH,
        show_progress=False,
    )
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN, byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([  # training only: where merges may never cross
        pre_tokenizers.Split(Regex("▁?[^▁]+"), behavior="isolated"),  # word boundaries
        pre_tokenizers.Split(Regex(r"▁?[^\p{L}\p{M}\p{N}▁]+"), behavior="isolated"),  # letters | punctuation
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))

    # Lay the vocabulary out as Gemma does: specials, then the 256 byte tokens, then the learned pieces.
    config = json.loads(tokenizer.to_str())
    learned = sorted(config["model"]["vocab"].items(), key=lambda item: item[1])
    layout = list(SPECIAL_TOKENS) + BYTE_TOKENS
    vocab = {token: index for index, token in enumerate(layout)}
    for token, _ in learned:
        if token not in vocab:
            vocab[token] = len(vocab)
    config["model"]["vocab"] = vocab
    config["added_tokens"] = [
        {"id": SPECIAL_TOKENS[token], "content": token, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for token in SPECIAL_TOKENS
    ]
    tokenizer = Tokenizer.from_str(json.dumps(config))

    # Encoding time: Gemma's whitespace handling (no whitespace pre-splitting), digits still one by one.
    tokenizer.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} $B:1 {EOS_TOKEN}:1",
        special_tokens=[(BOS_TOKEN, SPECIAL_TOKENS[BOS_TOKEN]), (EOS_TOKEN, SPECIAL_TOKENS[EOS_TOKEN])],
    )
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer


def save_for_transformers(tokenizer, directory: Path, model_max_length: int = 8192) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json, as AutoTokenizer expects them."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    # <mask> takes the space before it: masking replaced whole tokens ("▁Paris", space included) in training, so
    # "is <mask>." must encode as [▁is, <mask>, .], not [▁is, ▁, <mask>, .] (a lone "▁" precedes digits in real text,
    # which is what a fill-mask pipeline would then predict). A copy: the caller's tokenizer stays as it was.
    tokenizer = Tokenizer.from_str(tokenizer.to_str())
    tokenizer.add_special_tokens([AddedToken(MASK_TOKEN, lstrip=True, special=True, normalized=False)])
    # An encoder without token types: input names set, or transformers 4 adds token_type_ids, which ModernBERT's
    # forward rejects.
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=model_max_length,
                                   model_input_names=["input_ids", "attention_mask"],
                                   clean_up_tokenization_spaces=False, **SPECIAL_TOKEN_ROLES)
    fast.save_pretrained(str(directory))
    # The class name every transformers version knows (5.x would write its own "TokenizersBackend").
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_text_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    if not (directory / "special_tokens_map.json").exists():  # transformers 5 folds it into tokenizer_config.json
        write_text_atomic(directory / "special_tokens_map.json", json.dumps(SPECIAL_TOKEN_ROLES, indent=2) + "\n")


def train_tokenizer(corpus_dir, vocab_size: int, output_dir, temperature: float = 0.3, max_bytes: int = 200 * 2**20,
                    languages: str | list[str] | None = None, seed: int = 0, overwrite: bool = False) -> dict:
    """Train on a language-balanced sample of `corpus_dir` and write the tokenizer directory; returns its summary."""
    output_dir = Path(output_dir)
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise UsageError(f"--vocab-size must be at least {MIN_VOCAB_SIZE} (5 special + 256 byte tokens + pieces), "
                         f"got {vocab_size}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be > 0 (1 = proportional to data, small = near uniform), got {temperature}")
    if max_bytes < 1:
        raise UsageError(f"--max-mb must be positive, got {max_bytes / 2**20}")
    check_output_directory(output_dir, overwrite, scans=[("--corpus", corpus_dir)])
    files = corpus_languages(corpus_dir, normalize_list(languages))
    sample, budgets = sample_training_texts(files, max_bytes, temperature, seed)
    if not sample:
        raise UsageError(f"no usable text in {corpus_dir} for the languages asked for")
    texts = [text for label in sorted(sample) for text in sample[label]]
    tokenizer = build_gemma_style_bpe(texts, vocab_size)
    summary = {
        "vocab_size": tokenizer.get_vocab_size(),
        "requested_vocab_size": vocab_size,
        "temperature": temperature,
        "seed": seed,
        "sample_bytes": sum(len(text.encode("utf-8")) for text in texts),
        "languages": {label: {"documents": len(sample[label]),
                              "bytes": sum(len(t.encode("utf-8")) for t in sample[label]),
                              "budget_bytes": budgets.get(label, 0)} for label in sorted(sample)},
        "special_ids": dict(SPECIAL_TOKENS),
        "corpus": str(Path(corpus_dir).resolve()),
    }
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        save_for_transformers(tokenizer, tmp)
        write_text_atomic(tmp / "training.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary

