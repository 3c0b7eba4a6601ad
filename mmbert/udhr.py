"""The UDHR subset shipped in data/udhr: 140 versions in 140 languages, parallel by article.

`udhr_versions()` lists them with their registry label; `udhr_articles(file)` returns the preamble and the 30
articles of one version (31 texts, aligned across languages), read from the HTML pages in data/warc/udhr.warc.gz,
whose <h4> headings delimit the sections reliably (the plain-text copies' blank lines do not).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

from mmbert.paths import DATA_DIR

UDHR_DIR = DATA_DIR / "udhr"
UDHR_WARC = DATA_DIR / "warc" / "udhr.warc.gz"
SECTIONS = 31  # the preamble and articles 1–30


@dataclass(frozen=True)
class UdhrVersion:
    file: str  # file stem: data/udhr/txt/udhr_<file>.txt
    label: str  # registry label, e.g. "srp_Cyrl"
    name: str

    def paragraphs(self) -> list[str]:
        """The plain text's paragraphs (one per line, after the 5-line header)."""
        text = (UDHR_DIR / "txt" / f"udhr_{self.file}.txt").read_text(encoding="utf-8")
        body = text.split("\n---\n", 1)[1]
        return [line.strip() for line in body.splitlines() if line.strip()]


@lru_cache(maxsize=1)
def udhr_versions() -> tuple[UdhrVersion, ...]:
    from languages.registry import normalize
    from languages.scripts import dominant_script

    versions = []
    with (UDHR_DIR / "index.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            version = UdhrVersion(row["file"], "", row["name"])
            tag = row["bcp47"] if row["bcp47"] != "und" else row["iso639_3"]
            label = normalize(tag, dominant_script(" ".join(version.paragraphs())))
            versions.append(UdhrVersion(row["file"], label, row["name"]))
    return tuple(versions)


@lru_cache(maxsize=1)
def _articles_by_url() -> dict[str, list[str]]:
    from lxml import html as lxml_html
    from warcio.archiveiterator import ArchiveIterator

    sections: dict[str, list[str]] = {}
    with UDHR_WARC.open("rb") as stream:
        for record in ArchiveIterator(stream):
            if record.rec_type != "response":
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            tree = lxml_html.fromstring(record.content_stream().read())
            texts, current = [], None
            for element in tree.iter("h4", "p", "li"):
                if element.tag == "h4":
                    current = []
                    texts.append(current)
                elif current is not None:
                    text = " ".join(element.text_content().split())
                    if text and (element.tag == "li" or element.getparent().tag != "li"):
                        current.append(text)
            sections[url.rsplit("udhr_", 1)[1].removesuffix(".html")] = [" ".join(parts) for parts in texts]
    return sections


def udhr_articles(file: str) -> list[str]:
    """Preamble + articles 1–30 of one version (31 texts; an empty string where a version lacks a section)."""
    sections = _articles_by_url()[file]
    return (sections + [""] * SECTIONS)[:SECTIONS]
