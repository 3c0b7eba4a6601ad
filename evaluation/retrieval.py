"""Bitext retrieval per language, the XTREME Tatoeba way.

In:  a directory of TSV files, each line `src_lang<TAB>tgt_lang<TAB>src<TAB>tgt` (the Tatoeba Challenge test-set
     format; default: the shipped UDHR set, data/retrieval/udhr, one article per line, each language with English).
Out: per language (the non-English side of each pair) `accuracy_to_<tgt>` (each source sentence finds its
     translation among all targets by cosine similarity of mean-pooled embeddings), `accuracy_from_<tgt>` (the other
     direction), `accuracy`, their mean, and `truncated_inputs`: the share of the pair's sentences (both sides; n
     counts them) longer than `max_length - 2` tokens, whose ends the embeddings never see.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from evaluation.metrics import retrieval_accuracy
from evaluation.models import EncoderUnderTest
from evaluation.results import Result, skipped
from mmbert.errors import UsageError
from mmbert.paths import DATA_DIR

TASK = "retrieval"
DEFAULT_DATA = DATA_DIR / "retrieval" / "udhr"
PIVOT = "eng_Latn"


def read_bitext(directory: str | Path) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(language, other language) → [(sentence, translation)], the non-pivot language first; labels normalised."""
    from languages.registry import UnknownLanguage, normalize

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"retrieval data directory not found: {directory}")
    files = sorted(directory.glob("*.tsv"))
    if not files:
        raise UsageError(f"{directory}: no *.tsv files (expected src_lang<TAB>tgt_lang<TAB>src<TAB>tgt lines)")
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\n").rstrip("\r")
                if not line:
                    continue
                fields = line.split("\t")
                if len(fields) != 4:
                    raise UsageError(f"{path}:{number}: expected 4 tab-separated columns "
                                     f"(src_lang, tgt_lang, src, tgt), found {len(fields)}")
                try:
                    src_lang, tgt_lang = normalize(fields[0]), normalize(fields[1])
                except UnknownLanguage as error:
                    raise UsageError(f"{path}:{number}: {error}") from None
                src, tgt = fields[2].strip(), fields[3].strip()
                if src_lang == PIVOT and tgt_lang != PIVOT:  # report each pair under its non-English side
                    src_lang, tgt_lang, src, tgt = tgt_lang, src_lang, tgt, src
                pairs[(src_lang, tgt_lang)].append((src, tgt))
    return dict(pairs)


def evaluate_retrieval(model: EncoderUnderTest, bitext: dict[tuple[str, str], list[tuple[str, str]]],
                       languages: list[str] | None, layer: int = -1) -> list[Result]:
    results = []
    by_language = defaultdict(list)
    for (language, other), sentence_pairs in sorted(bitext.items()):
        by_language[language].append((other, sentence_pairs))
    for language in languages if languages is not None else sorted(by_language):
        if language not in by_language:
            reason = ("the pivot language of every pair" if language == PIVOT and any(o == PIVOT for _, o in bitext)
                      else "no bitext for this language")
            results.append(skipped(model.name, TASK, language, "accuracy", reason))
            continue
        for other, sentence_pairs in by_language[language]:
            if len(sentence_pairs) < 2:
                results.append(skipped(model.name, TASK, language, f"accuracy_to_{other}",
                                       f"{len(sentence_pairs)} sentence pair with {other}; retrieval needs 2+"))
                continue
            source_texts, target_texts = [s for s, _ in sentence_pairs], [t for _, t in sentence_pairs]
            sources, targets = model.embed(source_texts, layer), model.embed(target_texts, layer)
            to_other, from_other = retrieval_accuracy(sources, targets, source_texts, target_texts)
            n = len(sentence_pairs)
            suffix = "" if other == PIVOT else f"_{other}"  # the headline `accuracy` is against English only
            # Long texts lose their ends (some scripts take 500+ tokens per UDHR article): say how many did.
            truncated = model.count_truncated(source_texts + target_texts)
            results += [
                Result(model.name, TASK, language, f"accuracy_to_{other}", to_other, n),
                Result(model.name, TASK, language, f"accuracy_from_{other}", from_other, n),
                Result(model.name, TASK, language, f"accuracy{suffix}", (to_other + from_other) / 2, n),
                Result(model.name, TASK, language, f"truncated_inputs{suffix}", truncated / (2 * n), 2 * n),
            ]
    return results


def texts_by_language(bitext: dict[tuple[str, str], list[tuple[str, str]]]) -> dict[str, list[str]]:
    """Every distinct sentence per language (both sides), for fertility."""
    texts: dict[str, dict[str, None]] = defaultdict(dict)
    for (language, other), sentence_pairs in bitext.items():
        for source, target in sentence_pairs:
            texts[language][source] = None
            texts[other][target] = None
    return {language: list(sentences) for language, sentences in texts.items()}
