"""The built-in evaluation sets, derived from the shipped UDHR text (data/udhr/txt, "UDHR in Unicode").

In:  the versions whose articles align with English's (`mmbert.udhr.read_aligned_versions`, which says how).
Out: `data/retrieval/udhr/<label>-eng_Latn.tsv` (bitext retrieval, Tatoeba format `src_lang tgt_lang src tgt`, one row
     per article: the preamble and articles 1–30) and `data/classification/udhr_topics.jsonl.gz` (one row per paragraph:
     text, label = the part of the declaration it belongs to, language, split).

Run `python -m evaluation.udhr` to rebuild the shipped files.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

from mmbert.atomic import atomic_file
from mmbert.paths import DATA_DIR
from mmbert.udhr import ENGLISH_FILE, AlignedVersion, read_aligned_versions

RETRIEVAL_DIR = DATA_DIR / "retrieval" / "udhr"
CLASSIFICATION_FILE = DATA_DIR / "classification" / "udhr_topics.jsonl.gz"

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


def write_retrieval_set(versions: list[AlignedVersion], out_dir: Path = RETRIEVAL_DIR) -> int:
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


def write_classification_set(versions: list[AlignedVersion], path: Path = CLASSIFICATION_FILE) -> int:
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
