"""How fairly a tokenizer treats each language: tokens per word (fertility) and bytes per token.

In: texts per language (or a corpus directory) and one or two tokenizers. Out: per language `documents, words,
tokens, bytes, tokens_per_word, bytes_per_token`; from the command line a markdown table, and with --output
fertility.csv, fertility.md and fertility.png (the tokenizers side by side).

Words are counted as the corpus statistics count them (`corpus.segmentation.count_words`): letters, marks and digits
between spaces and punctuation, and ICU's dictionary word breaking for scripts written without spaces (Han,
Japanese, Thai, Lao, Khmer, Myanmar, Tibetan); a word has a letter or a digit. Tokens exclude [CLS]/[SEP].
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mmbert.atomic import atomic_directory, check_output_directory, write_text_atomic
from mmbert.errors import UsageError

COLUMNS = ("documents", "words", "tokens", "bytes", "tokens_per_word", "bytes_per_token")


def count_words(text: str, script: str | None) -> int:
    """Words as the corpus statistics count them (one definition for both)."""
    from corpus.segmentation import count_words as corpus_count_words

    return corpus_count_words(text, script)


def _script(label: str, texts: list[str]) -> str | None:
    _, _, script = label.partition("_")
    if script:
        return script
    from languages.scripts import dominant_script

    return dominant_script(" ".join(texts[:20]))


def measure_fertility(texts_by_language: dict[str, list[str]], tokenizer) -> dict[str, dict]:
    """Per language: documents, words, tokens, bytes, tokens_per_word, bytes_per_token (ratios None when undefined).

    `tokenizer` is a `tokenizers.Tokenizer` or a spec that `tokenizer.gemma.load_tokenizer` accepts.
    """
    from tokenizers import Tokenizer

    from tokenizer.gemma import load_tokenizer
    from tokenizer.special_tokens import encode_special_tokens_as_text

    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    # Count what packing writes: "<eos>" or "<mask>" written in a text is text (Gemma 2 does not mark "<mask>"
    # special, so only packing's own set does). A copy: the caller's tokenizer is left as it was.
    tokenizer = encode_special_tokens_as_text(Tokenizer.from_str(tokenizer.to_str()))
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    results = {}
    for label, texts in texts_by_language.items():
        script = _script(label, texts)
        tokens = sum(len(encoding.ids) for encoding in encode(list(texts), add_special_tokens=False))
        words = sum(count_words(text, script) for text in texts)
        size = sum(len(text.encode("utf-8")) for text in texts)
        results[label] = {
            "documents": len(texts), "words": words, "tokens": tokens, "bytes": size,
            "tokens_per_word": tokens / words if words else None,
            "bytes_per_token": size / tokens if tokens else None,
        }
    return results


def tokenizer_name(spec: str) -> str:
    path = Path(spec)
    if path.name in ("tokenizer.json", "tokenizer.model"):
        return path.parent.name or spec
    return path.name or spec


def fertility_table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per language, tokens/word and bytes/token for each tokenizer side by side."""
    names = list(results)
    labels = sorted({label for per_language in results.values() for label in per_language})
    header = ["language", "words"] + [f"tokens/word {n}" for n in names] + [f"bytes/token {n}" for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in labels:
        first = results[names[0]].get(label, {})
        cells = [label, str(first.get("words", ""))]
        for column in ("tokens_per_word", "bytes_per_token"):
            for name in names:
                value = results[name].get(label, {}).get(column)
                cells.append("–" if value is None else f"{value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fertility_csv(results: dict[str, dict[str, dict]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["language", "tokenizer", *COLUMNS])
    for name, per_language in results.items():
        for label in sorted(per_language):
            row = per_language[label]
            writer.writerow([label, name, *("" if row[c] is None else (f"{row[c]:.4f}" if isinstance(row[c], float)
                                                                         else row[c]) for c in COLUMNS)])
    return buffer.getvalue()


def plot_fertility(results: dict[str, dict[str, dict]], path: Path) -> None:
    """Two panels (tokens per word, bytes per token), languages sorted by the first tokenizer's fertility."""
    import numpy as np

    from mmbert.plots import pyplot, save_png

    plt = pyplot()
    names = list(results)
    labels = sorted(results[names[0]], key=lambda label: results[names[0]][label]["tokens_per_word"] or 0)
    positions, width = np.arange(len(labels)), 0.8 / len(names)
    figure, axes = plt.subplots(2, 1, figsize=(max(8, 0.32 * len(labels) + 2), 8), sharex=True)
    for axis, column, title in zip(axes, ("tokens_per_word", "bytes_per_token"),
                                   ("tokens per word (lower is better)", "bytes per token (higher is better)")):
        for index, name in enumerate(names):
            values = [results[name].get(label, {}).get(column) or 0 for label in labels]
            axis.bar(positions + (index - (len(names) - 1) / 2) * width, values, width, label=name)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[1].set_xticks(positions, labels, rotation=90, fontsize=8)
    figure.tight_layout()
    save_png(figure, path, dpi=120)


def run_fertility(corpus_dir, tokenizer_specs: list[str], output=None,
                  languages: str | list[str] | None = None, max_documents: int = 1000, overwrite: bool = False) -> str:
    """Measure each tokenizer on up to `max_documents` documents per language; returns the markdown table."""
    from languages.registry import normalize_list
    from tokenizer.corpus_files import corpus_languages, iter_texts
    from tokenizer.gemma import load_tokenizer

    if not 1 <= len(tokenizer_specs) <= 2:
        raise UsageError("give --tokenizer once or twice (one tokenizer, or two side by side)")
    if max_documents < 1:
        raise UsageError(f"--max-documents must be at least 1, got {max_documents}")
    if output is not None:
        check_output_directory(output, overwrite, scans=[("--corpus", corpus_dir)])
    files = corpus_languages(corpus_dir, normalize_list(languages))
    names = [tokenizer_name(str(spec)) for spec in tokenizer_specs]
    if len(set(names)) < len(names):  # two directories of the same name: tell them apart by their full specs
        names = [str(spec) for spec in tokenizer_specs]
    if len(set(names)) < len(names):
        raise UsageError(f"--tokenizer {tokenizer_specs[0]} given twice: compare two different tokenizers")
    tokenizers = {name: load_tokenizer(spec) for name, spec in zip(names, tokenizer_specs)}
    texts = {}
    for label, paths in files.items():
        documents = []
        for _, text in iter_texts(paths):
            documents.append(text)
            if len(documents) == max_documents:
                break
        if documents:
            texts[label] = documents
    if not texts:
        raise UsageError(f"no usable documents in {corpus_dir}")
    results = {name: measure_fertility(texts, tokenizer) for name, tokenizer in tokenizers.items()}
    table = fertility_table(results)
    if output is not None:
        with atomic_directory(output, overwrite=overwrite) as tmp:
            write_text_atomic(tmp / "fertility.csv", fertility_csv(results))
            write_text_atomic(tmp / "fertility.md", table)
            plot_fertility(results, tmp / "fertility.png")
    return table
