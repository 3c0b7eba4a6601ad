"""The built-in evaluation sets, derived from the shipped UDHR text (data/udhr/txt, "UDHR in Unicode").

In:  data/udhr/index.csv and data/udhr/txt/udhr_<file>.txt (a 5-line header ending in `---`, then the declaration:
     top-level blocks separated by lines of at most three spaces; deeper indentation marks sub-paragraphs).
Out: `data/retrieval/udhr/<label>-eng_Latn.tsv` (bitext retrieval, Tatoeba format `src_lang tgt_lang src tgt`, one row
     per article: the preamble and articles 1–30) and `data/classification/udhr_topics.jsonl.gz` (one row per paragraph:
     text, label = the part of the declaration it belongs to, language, split).

Alignment: every version has a preamble and 30 articles; the articles are the 30 top-level blocks before up to two
trailing ones (translator credits, say), everything before them is the title and preamble. A version is kept only
when that split is right, checked without reading the language: article lengths vary 20-fold (Article 3 is one
line, Article 25 a page), so the log-lengths of a correctly split version correlate strongly with English's; a
shifted or mis-split one does not.

Run `python -m evaluation.udhr` to rebuild the shipped files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from mmbert.atomic import atomic_file
from mmbert.paths import DATA_DIR

UDHR_DIR = DATA_DIR / "udhr"
RETRIEVAL_DIR = DATA_DIR / "retrieval" / "udhr"
CLASSIFICATION_FILE = DATA_DIR / "classification" / "udhr_topics.jsonl.gz"
ENGLISH_FILE = "eng"
ARTICLES = 30
MISSING = "[missing]"  # the UDHR in Unicode marker for an untranslated paragraph
MIN_LENGTH_CORRELATION = 0.8
MAX_TRAILING_BLOCKS = 2  # credits or notes after article 30

# René Cassin's reading of the declaration as a portico (Glendon, "A World Made New", 2001, ch. 9): the preamble and
# articles 1-2 are the foundation, then four columns of rights, then the pediment of duties and order (28-30).
TOPIC_OF_ARTICLE = {0: "foundation", 1: "foundation", 2: "foundation"}
TOPIC_OF_ARTICLE.update({n: "personal_liberty" for n in range(3, 12)})  # life, liberty, legal protection
TOPIC_OF_ARTICLE.update({n: "civil_society" for n in range(12, 18)})  # privacy, movement, asylum, family, property
TOPIC_OF_ARTICLE.update({n: "public_liberty" for n in range(18, 22)})  # thought, expression, assembly, government
TOPIC_OF_ARTICLE.update({n: "economic_social" for n in range(22, 28)})  # work, rest, standard of living, education
TOPIC_OF_ARTICLE.update({n: "duties_and_order" for n in range(28, 31)})
# Whole articles are held out, so a test paragraph's article is never seen in training; each topic has one or two.
TEST_ARTICLES = frozenset({2, 6, 10, 13, 16, 19, 23, 26, 29})


@dataclass(frozen=True)
class UdhrVersion:
    file: str  # index.csv `file`, e.g. "cmn_hans"
    language: str  # registry label
    articles: tuple[tuple[str, ...], ...]  # [0] = preamble, [n] = article n; each a tuple of paragraphs (no headings)


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


def read_aligned_versions(udhr_dir: Path = UDHR_DIR) -> tuple[list[UdhrVersion], dict[str, str]]:
    """All versions whose articles align with English, and the skipped ones with the reason (file → reason)."""
    from languages.registry import UnknownLanguage, normalize
    from languages.scripts import dominant_script

    with (udhr_dir / "index.csv").open(encoding="utf-8") as handle:
        index = list(csv.DictReader(handle))
    english = split_articles(read_blocks(udhr_dir / "txt" / f"udhr_{ENGLISH_FILE}.txt"))
    versions: list[UdhrVersion] = []
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
        versions.append(UdhrVersion(row["file"], label, articles))
    return versions, skipped


def write_retrieval_set(versions: list[UdhrVersion], out_dir: Path = RETRIEVAL_DIR) -> int:
    """One TSV per language paired with English; returns the number of files written."""
    english = next(v for v in versions if v.file == ENGLISH_FILE)
    written = 0
    for version in versions:
        if version is english:
            continue
        with atomic_file(out_dir / f"{version.language}-{english.language}.tsv", "w", encoding="utf-8",
                         newline="") as handle:
            for src, tgt in zip(version.articles, english.articles):
                handle.write(f"{version.language}\t{english.language}\t{_one_line(src)}\t{_one_line(tgt)}\n")
        written += 1
    return written


def write_classification_set(versions: list[UdhrVersion], path: Path = CLASSIFICATION_FILE) -> int:
    """One JSON line per paragraph; returns the number of rows."""
    rows = 0
    with atomic_file(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as compressed:
        handle = io.TextIOWrapper(compressed, encoding="utf-8")
        for version in versions:
            for number, paragraphs in enumerate(version.articles):
                split = "test" if number in TEST_ARTICLES else "train"
                for paragraph in paragraphs:
                    record = {"text": paragraph, "label": TOPIC_OF_ARTICLE[number], "language": version.language,
                              "split": split, "article": number}
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                    rows += 1
        handle.flush()
        handle.detach()
    return rows


def _one_line(paragraphs: tuple[str, ...]) -> str:
    return " ".join(p.replace("\t", " ") for p in paragraphs)


def main() -> None:
    versions, skipped = read_aligned_versions()
    files = write_retrieval_set(versions)
    rows = write_classification_set(versions)
    print(f"{len(versions)} UDHR versions aligned, {len(skipped)} skipped; {files} retrieval files in "
          f"{RETRIEVAL_DIR}, {rows} classification rows in {CLASSIFICATION_FILE}")
    for file, reason in sorted(skipped.items()):
        print(f"  skipped udhr_{file}.txt: {reason}")


if __name__ == "__main__":
    main()
