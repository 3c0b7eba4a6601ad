"""Quality filters: Gopher quality, Gopher repetition and FineWeb quality, with FineWeb-2's per-language settings.

In: a document's text and its language label. Out: `(reason, signals)` where `reason` is None (keep) or the name of
the first rule that failed (which becomes a statistic), and `signals` are the measured values written as columns.

Thresholds (Rae et al. 2021, Gopher, table A1; Penedo et al. 2024, FineWeb; FineWeb-2's configs):

    rule                              default   FineWeb-2 per language
    words per document                50–100k   same
    mean word length (chars)          3–10      min_avg_word_length / max_avg_word_length
    '#' or ellipsis per token         ≤ 0.1     same
    lines starting with • or -        ≤ 0.9     same
    lines ending with an ellipsis     ≤ 0.3     same
    tokens with a letter              ≥ 0.8     max_non_alpha_words_ratio
    distinct stop words present       ≥ 2       stopwords (list per language; no check without one)
    duplicate lines (fraction)        ≤ 0.3     dup_line_frac (0 turns the rule off)
    top 2/3/4-gram char fraction      .20/.18/.16  top_n_grams
    duplicate 5…10-gram char fraction .15 … .10    dup_n_grams
    non-empty lines ending in punct.  ≥ 0.12    line_punct_thr (0 turns the rule off)
    duplicate line chars              ≤ 0.1     same (FineWeb-2's value; FineWeb English used 0.01)
    newlines per word                 ≤ 0.3     new_line_ratio

Like FineWeb-2, the paragraph rules and the duplicate-line-character rule of Gopher repetition are off (extractors
flatten paragraphs), and FineWeb's short-line rule is off.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from corpus.segmentation import script_of_label, split_words

FINEWEB2_FILTERS = Path(__file__).resolve().parent / "data" / "fineweb2_filters.json.gz"
GOPHER_ENGLISH_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# Characters that end a sentence in the world's scripts: datatrove 0.10.1's TERMINAL_PUNCTUATION (Apache-2.0), the
# set FineWeb-2's FineWebQualityFilter uses (no quotes or brackets: a line ending in `."` does not count, as there).
TERMINAL_PUNCTUATION = tuple(
    '!.?։؝؞؟۔܀܁܂߹࠷࠹࠽࠾।॥၊။።፧፨᙮᜵᜶។៕៖៙៚᠃᠉᥄᥅᪨᪩᪪᪫᭚'
    '᭛᭞᭟᭽᭾᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼⹓⹔。꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗'
    '！．？｡𐩖𐩗𐽕𐽖𐽗𐽘𐽙𐾆𐾇𐾈𐾉𑁇𑁈𑂾𑂿𑃀𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊'
    '𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑥄𑥆𑩂𑩃𑪛𑪜𑱁𑱂𑻷𑻸\U00011f43\U00011f44𖩮𖩯𖫵𖬷𖬸𖭄𖺘𛲟𝪈'
)
BULLETS = ("•", "-")  # Gopher's (and datatrove's): an en dash opens dialogue lines in many languages, not lists


@dataclass(frozen=True)
class FilterSettings:
    """Every threshold of the three filters; `stopwords` empty disables the stop-word rule."""

    language_score: float = 0.65
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    max_non_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stopwords: frozenset[str] = field(default_factory=frozenset)
    # How the word splitter gives each stop word (FineWeb-2's are tokens of its own per-language tokenizers): the
    # words that stand for it, and the prefixes and suffixes of words that do, by length (see _stop_word_forms).
    stop_word_forms: dict[str, str] = field(default_factory=dict)
    stop_word_prefixes: dict[int, dict[str, str]] = field(default_factory=dict)
    stop_word_suffixes: dict[int, dict[str, str]] = field(default_factory=dict)
    dup_line_frac: float = 0.3
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    line_punct_thr: float = 0.12
    char_duplicates_ratio: float = 0.1
    new_line_ratio: float = 0.3

    def __post_init__(self):
        if self.stopwords and not self.stop_word_forms:  # settings made by hand: each stop word as it is
            object.__setattr__(self, "stop_word_forms", {word: word for word in self.stopwords})


@functools.lru_cache(maxsize=1)
def fineweb2_table() -> dict[str, dict]:
    with gzip.open(FINEWEB2_FILTERS, "rt", encoding="utf-8") as handle:
        return json.load(handle)["languages"]


@functools.lru_cache(maxsize=4096)
def settings_for(language: str) -> FilterSettings:
    """FineWeb-2's settings for `language`; Gopher/FineWeb defaults where it has none (English: Gopher's stop words)."""
    config = fineweb2_table().get(language)
    if config is None:
        stopwords = GOPHER_ENGLISH_STOP_WORDS if language == "eng_Latn" else ()
        return FilterSettings(stopwords=frozenset(stopwords))
    return FilterSettings(
        language_score=float(config["language_score"]),
        min_avg_word_length=float(config["min_avg_word_length"]),
        max_avg_word_length=float(config["max_avg_word_length"]),
        max_non_alpha_words_ratio=float(config["max_non_alpha_words_ratio"]),
        stopwords=frozenset(config["stopwords"]),
        **_stop_word_forms(config["stopwords"], script_of_label(language)),
        dup_line_frac=float(config["dup_line_frac"]),
        top_n_grams=tuple((int(n), float(f)) for n, f in config["top_n_grams"]),
        dup_n_grams=tuple((int(n), float(f)) for n, f in config["dup_n_grams"]),
        line_punct_thr=float(config["line_punct_thr"]),
        new_line_ratio=float(config["new_line_ratio"]),
    )


def _stop_word_forms(stopwords: list[str], script: str | None) -> dict[str, dict]:
    """Where FineWeb-2's tokenizers and this project's word splitter disagree, the forms a stop word takes here:
    - Tibetan's end in a tsheg, which the splitter drops (`དང་` is the word `དང`);
    - ones ending in a joiner (Maltese `il-`, French `l'`) stay glued to the next word (`il-bniedem`): they count as
      a prefix, or alone without the joiner;
    - Korean's are particles and endings glued to the end of words (FineWeb-2 counts Kiwi's morphemes): a word that
      ends with one counts."""
    forms, prefixes = {}, {}
    for word in stopwords:
        forms[word] = word
        if word[-1:] in "-'’" and len(word) > 1:
            prefixes[word] = word
            forms.setdefault(word[:-1], word)
            continue
        pieces = [piece for piece in split_words(word, script) if _has_alnum(piece)]
        if len(pieces) == 1:
            forms.setdefault(pieces[0], word)
    return {"stop_word_forms": forms, "stop_word_prefixes": _by_length(prefixes),
            "stop_word_suffixes": _by_length(forms) if script == "Hang" else {}}


def _by_length(affixes: dict[str, str]) -> dict[int, dict[str, str]]:
    lengths: dict[int, dict[str, str]] = {}
    for affix, word in affixes.items():
        lengths.setdefault(len(affix), {})[affix] = word
    return lengths


def count_stop_words(words: list[str], settings: FilterSettings) -> int:
    """Distinct stop words present (as Gopher and datatrove count them), in the forms _stop_word_forms gives."""
    distinct = set(words)
    forms = settings.stop_word_forms
    found = {forms[word] for word in distinct & forms.keys()}
    for affixes, cut in ((settings.stop_word_prefixes, lambda word, k: word[:k]),
                         (settings.stop_word_suffixes, lambda word, k: word[-k:])):
        for k, table in affixes.items():  # a proper prefix or suffix: the word itself is a form above
            found.update(table[affix] for word in distinct if len(word) > k and (affix := cut(word, k)) in table)
    return len(found)


def language_score_threshold(language: str) -> float:
    return settings_for(language).language_score


# ---------------------------------------------------------------------------------------------- helpers (Gopher)
def _has_alnum(token: str) -> bool:
    return token[:1].isalnum() or any(ch.isalnum() for ch in token)


def _has_alpha(token: str) -> bool:
    return token[:1].isalpha() or any(ch.isalpha() for ch in token)


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in the repeats), counting each item's first occurrence as unique."""
    seen: set[str] = set()
    elements = chars = 0
    for item in items:
        if item in seen:
            elements += 1
            chars += len(item)
        else:
            seen.add(item)
    return elements, chars


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    # Tuples of words hash from the words' cached hashes: several times faster than joining each n-gram to a string.
    return list(zip(*(words[k:] for k in range(n))))


def _ngram_length(prefix: list[int], start: int, n: int) -> int:
    """len("".join(words[start:start + n])) from the prefix sums of word lengths: datatrove measures repeated
    n-grams without the spaces between their words (and the top n-gram with them, as `top_ngram_chars` does)."""
    return prefix[start + n] - prefix[start]


def _prefix_lengths(words: list[str]) -> list[int]:
    prefix = [0]
    for word in words:
        prefix.append(prefix[-1] + len(word))
    return prefix


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent word n-gram (length × count); 0 when no n-gram repeats.

    (datatrove counts a single occurrence too, which removes every short document as "top 2-gram".)
    """
    grams = _ngrams(words, n)
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    if count < 2:
        return 0
    return len(" ".join(gram)) * count


def duplicate_ngram_chars(words: list[str], n: int, prefix: list[int] | None = None) -> int:
    """Characters inside repeated word n-grams, skipping past each repeat so overlaps are not counted twice."""
    grams = _ngrams(words, n)
    if len(set(grams)) == len(grams):  # no repeat at all: the common case, decided in C
        return 0
    prefix = prefix or _prefix_lengths(words)
    seen: set[tuple[str, ...]] = set()
    chars, index = 0, 0
    while index < len(grams):
        gram = grams[index]
        if gram in seen:
            chars += _ngram_length(prefix, index, n)
            index += n
        else:
            seen.add(gram)
            index += 1
    return chars


# ---------------------------------------------------------------------------------------------- the three filters
def gopher_quality(text: str, words: list[str], settings: FilterSettings, signals: dict) -> str | None:
    content_words = [w for w in words if _has_alnum(w)]
    n_words = len(content_words)
    signals["words"] = n_words
    if n_words < settings.min_doc_words:
        return "gopher_short_doc"
    if n_words > settings.max_doc_words:
        return "gopher_long_doc"
    avg = sum(map(len, content_words)) / n_words
    signals["avg_word_length"] = avg
    if avg < settings.min_avg_word_length:
        return "gopher_below_avg_word_length"
    if avg > settings.max_avg_word_length:
        return "gopher_above_avg_word_length"
    # Per token, punctuation tokens included (datatrove's n_words), unlike the word count and length above.
    if text.count("#") / len(words) > settings.max_symbol_word_ratio:
        return "gopher_too_many_hashes"
    if (text.count("...") + text.count("…")) / len(words) > settings.max_symbol_word_ratio:
        return "gopher_too_many_ellipsis"
    lines = text.splitlines() or [text]
    if sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines) > settings.max_bullet_lines_ratio:
        return "gopher_too_many_bullets"
    ellipsis_lines = sum(line.rstrip().endswith(("...", "…")) for line in lines)
    if ellipsis_lines / len(lines) > settings.max_ellipsis_lines_ratio:
        return "gopher_too_many_end_ellipsis"
    alpha_ratio = sum(map(_has_alpha, words)) / len(words)
    signals["alpha_words_ratio"] = alpha_ratio
    if alpha_ratio < settings.max_non_alpha_words_ratio:  # the name is Gopher's; it is a minimum on alphabetic words
        return "gopher_below_alpha_threshold"
    if settings.stopwords:
        stop_words = count_stop_words(words, settings)
        signals["stop_words"] = stop_words
        if stop_words < settings.min_stop_words:
            return "gopher_enough_stop_words"
    return None


def gopher_repetition(text: str, words: list[str], settings: FilterSettings, signals: dict) -> str | None:
    lines = [line for line in text.split("\n") if line] or [text]  # runs of newlines split once, as datatrove
    dup_lines, _ = find_duplicates(lines)
    signals["dup_line_frac"] = dup_lines / len(lines)
    if settings.dup_line_frac and dup_lines / len(lines) > settings.dup_line_frac:  # 0 turns it off, as in datatrove
        return "gopher_dup_line_frac"
    length = max(len(text), 1)
    prefix = _prefix_lengths(words)
    for n, fraction in settings.top_n_grams:
        if top_ngram_chars(words, n) / length > fraction:
            return f"gopher_top_{n}_gram"
    for n, fraction in settings.dup_n_grams:
        if duplicate_ngram_chars(words, n, prefix) / length > fraction:
            return f"gopher_duplicated_{n}_n_grams"
    return None


def fineweb_quality(text: str, words: list[str], settings: FilterSettings, signals: dict) -> str | None:
    lines = text.split("\n")
    non_empty = [line for line in lines if line.strip()] or [""]
    punct_ratio = sum(line.rstrip().endswith(TERMINAL_PUNCTUATION) for line in non_empty) / len(non_empty)
    signals["line_punct_ratio"] = punct_ratio
    if punct_ratio < settings.line_punct_thr:  # as datatrove: FineWeb-2's threshold 0 (77 languages) turns it off
        return "fineweb_line_punct_ratio"
    chars = max(len(text) - text.count("\n"), 1)
    if find_duplicates(non_empty)[1] / chars > settings.char_duplicates_ratio:
        return "fineweb_char_dup_ratio"
    ratio = text.count("\n") / max(len(words), 1)
    signals["new_line_ratio"] = ratio
    if ratio > settings.new_line_ratio:
        return "fineweb_list_ratio"
    return None


FILTERS = (gopher_repetition, fineweb_quality, gopher_quality)  # FineWeb-2's order


def quality_filter(text: str, language: str, settings: FilterSettings | None = None) -> tuple[str | None, dict]:
    """Run the three filters in FineWeb-2's order; (first failing rule or None, measured signals)."""
    settings = settings or settings_for(language)
    words = split_words(text, script_of_label(language))
    signals: dict = {}
    for rule in FILTERS:
        reason = rule(text, words, settings, signals)
        if reason:
            return reason, signals
    return None, signals
