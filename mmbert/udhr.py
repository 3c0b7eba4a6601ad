"""The UDHR subset shipped in data/udhr: 140 versions in 140 languages, parallel by article.

In: data/udhr/index.csv and data/udhr/txt/udhr_<file>.txt (a 5-line header ending in `---`, then the declaration:
top-level blocks separated by lines of at most three spaces; deeper indentation marks sub-paragraphs).
Out: `udhr_versions()` — every version with its registry label and its paragraphs or top-level blocks — and
`read_aligned_versions()` — the versions whose preamble and 30 articles align with English's, for parallel tasks.

Alignment: every version has a preamble and 30 articles; the articles are the 30 top-level blocks before up to two
trailing ones (translator credits, say), everything before them is the title and preamble. A version is kept only
when that split is right, checked without reading the language: article lengths vary 20-fold (Article 3 is one
line, Article 25 a page), so the log-lengths of a correctly split version correlate strongly with English's; a
shifted or mis-split one does not.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mmbert.paths import DATA_DIR

UDHR_DIR = DATA_DIR / "udhr"
ENGLISH_FILE = "eng"
ARTICLES = 30
MISSING = "[missing]"  # the UDHR in Unicode marker for an untranslated paragraph
MIN_LENGTH_CORRELATION = 0.8
MAX_TRAILING_BLOCKS = 2  # credits or notes after article 30


@dataclass(frozen=True)
class UdhrVersion:
    file: str  # file stem: data/udhr/txt/udhr_<file>.txt
    label: str  # registry label, e.g. "srp_Cyrl"
    name: str

    @property
    def path(self) -> Path:
        return UDHR_DIR / "txt" / f"udhr_{self.file}.txt"

    def paragraphs(self) -> list[str]:
        """The text's paragraphs (one per line, after the header), headings included."""
        body = self.path.read_text(encoding="utf-8").split("\n---\n", 1)[1]
        return [line.strip() for line in body.splitlines() if line.strip() and line.strip() != MISSING]

    def blocks(self) -> list[list[str]]:
        """Top-level blocks: the title, the preamble, each article (heading first)."""
        return read_blocks(self.path)


@dataclass(frozen=True)
class AlignedVersion:
    file: str  # index.csv `file`, e.g. "cmn_hans"
    language: str  # registry label
    articles: tuple[tuple[str, ...], ...]  # [0] = preamble, [n] = article n; each a tuple of paragraphs (no headings)


@lru_cache(maxsize=1)
def udhr_versions() -> tuple[UdhrVersion, ...]:
    """Every shipped version, labelled by its ISO code and the script its text is written in."""
    from languages.registry import normalize
    from languages.scripts import dominant_script

    versions = []
    with (UDHR_DIR / "index.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            version = UdhrVersion(row["file"], "", row["name"])
            label = normalize(row["iso639_3"], dominant_script(" ".join(version.paragraphs())))
            versions.append(UdhrVersion(row["file"], label, row["name"]))
    return tuple(versions)


def read_blocks(path: Path) -> list[list[str]]:
    """Top-level blocks of one UDHR text file, each a list of stripped non-empty lines."""
    lines = path.read_text(encoding="utf-8").split("\n")
    body = lines[lines.index("---") + 1:]
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in body:
        if not line.strip():
            if len(line) <= 3 and current:  # a top-level separator; deeper blank lines sit inside an article
                blocks.append(current)
                current = []
            continue
        if line.strip() != MISSING:
            current.append(line.strip())
    if current:
        blocks.append(current)
    return blocks


def split_articles(blocks: list[list[str]], trailing: int = 0) -> tuple[tuple[str, ...], ...] | None:
    """Blocks → (preamble paragraphs, article 1 paragraphs, …, article 30 paragraphs), headings dropped.

    The articles are the 30 blocks before the last `trailing` ones (a translator's note, say). None if that leaves an
    empty preamble or article.
    """
    end = len(blocks) - trailing
    if end < ARTICLES + 1:
        return None
    preamble = tuple(line for block in blocks[:end - ARTICLES] for line in block[1:])  # first line: title or heading
    articles = [tuple(block[1:]) for block in blocks[end - ARTICLES:end]]
    if not preamble or not all(articles):
        return None
    return (preamble, *articles)


def align_articles(blocks: list[list[str]], reference: tuple[tuple[str, ...], ...]
                   ) -> tuple[tuple[tuple[str, ...], ...] | None, float]:
    """The split (0 to MAX_TRAILING_BLOCKS trailing blocks left out) whose lengths best match `reference`."""
    best, best_correlation = None, -1.0
    for trailing in range(MAX_TRAILING_BLOCKS + 1):
        articles = split_articles(blocks, trailing)
        if articles is not None:
            correlation = length_correlation(articles, reference)
            if correlation > best_correlation:
                best, best_correlation = articles, correlation
    return best, best_correlation


def length_correlation(articles: tuple[tuple[str, ...], ...], reference: tuple[tuple[str, ...], ...]) -> float:
    """Pearson correlation of log character lengths per article (scale-free, so any script compares)."""
    xs = [math.log(sum(map(len, a))) for a in articles]
    ys = [math.log(sum(map(len, a))) for a in reference]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    return cov / math.sqrt(var_x * var_y) if var_x and var_y else 0.0


def read_aligned_versions(udhr_dir: Path = UDHR_DIR) -> tuple[list[AlignedVersion], dict[str, str]]:
    """All versions whose articles align with English, and the skipped ones with the reason (file → reason)."""
    from languages.registry import UnknownLanguage, normalize
    from languages.scripts import dominant_script

    with (udhr_dir / "index.csv").open(encoding="utf-8") as handle:
        index = list(csv.DictReader(handle))
    english = split_articles(read_blocks(udhr_dir / "txt" / f"udhr_{ENGLISH_FILE}.txt"))
    versions: list[AlignedVersion] = []
    skipped: dict[str, str] = {}
    seen: dict[str, str] = {}
    for row in index:
        articles, correlation = align_articles(read_blocks(udhr_dir / "txt" / f"udhr_{row['file']}.txt"), english)
        if articles is None:
            skipped[row["file"]] = "no split into a preamble and 30 non-empty articles"
            continue
        if correlation < MIN_LENGTH_CORRELATION:
            skipped[row["file"]] = f"articles do not align with English (length correlation {correlation:.2f})"
            continue
        text = " ".join(articles[1])
        try:
            label = normalize(row["iso639_3"], script=dominant_script(text))
        except UnknownLanguage as error:
            skipped[row["file"]] = f"no registry label: {error}"
            continue
        if label in seen:  # e.g. two orthographies of one language: keep the first, as retrieval needs one per label
            skipped[row["file"]] = f"second version of {label} (first: {seen[label]})"
            continue
        seen[label] = row["file"]
        versions.append(AlignedVersion(row["file"], label, articles))
    return versions, skipped
