"""Words from text in any script: whitespace/punctuation splitting, or ICU word breaking where words have no spaces.

In: a string and the ISO 15924 script of its language. Out: a list of word tokens (punctuation runs are tokens too,
as nltk's tokenizers give them to the Gopher filters).

Scripts written without spaces between words (Han, Japanese, Thai, Lao, Khmer, Myanmar, Tibetan) go through ICU's
BreakIterator (PyICU), which carries dictionary-based segmenters for CJK, Thai, Lao, Khmer and Burmese and breaks
Tibetan at the tsheg. Everything else is split by a regular expression, which is ~20× faster and what those languages
need.
"""

from __future__ import annotations

import threading

import regex  # Unicode property classes (\p{L}, \p{M}): `re`'s \w splits Indic words at their vowel signs

UNSPACED_SCRIPTS = frozenset({"Hani", "Hans", "Hant", "Jpan", "Hira", "Kana", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})

# A word: letters/digits/marks joined by apostrophes, hyphens or zero-width (non-)joiners (Persian می‌خواهم, the
# chillu of Malayalam അവന്‍ ends in one); otherwise one run of punctuation/symbols (an emoji ZWJ sequence is one).
_WORD_PATTERN = regex.compile(
    r"[\p{L}\p{M}\p{N}_]+(?:(?:['’\-]|[\u200c\u200d]+)[\p{L}\p{M}\p{N}]+)*[\u200c\u200d]*|[^\p{L}\p{M}\p{N}_\s]+"
)

_SYLLABLE_MARKS = frozenset({"\u0f0b", "\u0f0c"})
_local = threading.local()


def script_of_label(label: str) -> str | None:
    """'tha_Thai' → 'Thai'; None for labels without a script ('code', 'und')."""
    _, _, script = label.partition("_")
    return script or None


def _break_iterator():
    iterator = getattr(_local, "iterator", None)
    if iterator is None:
        import icu  # PyICU (pyicu-wheels); imported lazily so that spaced scripts never need it

        iterator = _local.iterator = icu.BreakIterator.createWordInstance(icu.Locale.getRoot())
    return iterator


def icu_words(text: str) -> list[str]:
    """ICU word-boundary segments of `text`, without the whitespace segments."""
    iterator = _break_iterator()
    iterator.setText(text)
    # ICU reports boundaries in UTF-16 code units; with characters outside the BMP the offsets differ from Python's.
    utf16 = text.encode("utf-16-le")
    words, start = [], 0
    for end in iterator:
        piece = utf16[start * 2:end * 2].decode("utf-16-le", errors="ignore")
        start = end
        piece = piece.strip()
        if piece and piece not in _SYLLABLE_MARKS:  # Tibetan: the tsheg separates syllables, it is not a word
            words.append(piece)
    return words


def split_words(text: str, script: str | None = None) -> list[str]:
    """Word tokens of `text`; `script` (ISO 15924) picks ICU segmentation for scripts without spaces."""
    if script in UNSPACED_SCRIPTS:
        return icu_words(text)
    return _WORD_PATTERN.findall(text)


def count_words(text: str, script: str | None = None) -> int:
    """Words with at least one letter or digit (punctuation tokens are not words), as the statistics report them."""
    return sum(1 for word in split_words(text, script) if word[:1].isalnum() or any(ch.isalnum() for ch in word))
