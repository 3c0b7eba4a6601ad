"""The dominant writing system of a text, as an ISO 15924 code (Latn, Cyrl, Hani, Arab, …).

LID models such as lid.176 name a language but not its script; the script of the text itself decides between
labels like `srp_Cyrl` and `srp_Latn`. Character scripts come from fontTools' copy of the Unicode Character Database.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from fontTools import unicodedata as ucd

# Scripts that share characters with others (Zyyy common, Zinh inherited) or mark unknown code points say nothing.
NEUTRAL_SCRIPTS = {"Zyyy", "Zinh", "Zzzz"}
# Japanese text mixes kana and kanji; FineWeb-2 labels it with the combined code Jpan.
_JAPANESE = {"Hira", "Kana"}


@lru_cache(maxsize=65536)
def char_script(char: str) -> str:
    return ucd.script(char)


def script_counts(text: str, max_chars: int = 4000) -> Counter[str]:
    """Letters per ISO 15924 script among the first `max_chars` letters of `text` (common/inherited ones left out)."""
    counts: Counter[str] = Counter()
    seen = 0
    for char in text:
        if not char.isalpha():
            continue
        script = char_script(char)
        if script in NEUTRAL_SCRIPTS:
            continue
        counts[script] += 1
        seen += 1
        if seen >= max_chars:
            break
    return counts


def dominant_script(text: str, max_chars: int = 4000) -> str | None:
    """ISO 15924 code of the most frequent script among the first `max_chars` letters of `text`, or None."""
    return dominant_of(script_counts(text, max_chars))


def dominant_of(counts: Counter[str]) -> str | None:
    """The dominant script of letter counts per script (`script_counts`): Japanese and Korean by their share."""
    if not counts:
        return None
    seen = sum(counts.values())
    if sum(counts[s] for s in _JAPANESE) >= 0.1 * seen:
        return "Jpan"
    if counts.get("Hang", 0) and counts["Hang"] >= 0.3 * seen:
        return "Kore" if counts.get("Hani") else "Hang"
    return counts.most_common(1)[0][0]
