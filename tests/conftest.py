"""Fixtures shared by every stage's tests: the shipped real UDHR data and the real Gemma 2 tokenizer."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbert import udhr

# Tests never touch the network; a hub lookup must fail fast rather than hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Forty languages across twenty-odd scripts, for stages downstream of the corpus.
CORPUS_LANGUAGES = (
    "eng_Latn fra_Latn deu_Latn spa_Latn por_Latn ita_Latn nld_Latn pol_Latn tur_Latn vie_Latn ind_Latn swh_Latn "
    "fin_Latn hun_Latn rus_Cyrl ukr_Cyrl bul_Cyrl kaz_Cyrl cmn_Hani yue_Hani jpn_Jpan kor_Hang arb_Arab urd_Arab "
    "hin_Deva mar_Deva ben_Beng tam_Taml tel_Telu tha_Thai khm_Khmr lao_Laoo mya_Mymr bod_Tibt ell_Grek heb_Hebr "
    "hye_Armn kat_Geor amh_Ethi sin_Sinh"
).split()


@pytest.fixture(scope="session")
def udhr_texts() -> dict[str, list[str]]:
    """Registry label → the version's paragraphs (all 140 shipped versions)."""
    return {version.label: version.paragraphs() for version in udhr.udhr_versions()}


def write_udhr_corpus(output: Path, languages=CORPUS_LANGUAGES) -> Path:
    """A corpus-artefact directory: <label>/part-00000.parquet, one document per UDHR section (preamble, each
    article), plus counts.csv and _SUCCESS."""
    versions = {version.label: version for version in udhr.udhr_versions()}
    counts = []
    for label in languages:
        version = versions[label]
        texts = ["\n".join(block) for block in version.blocks()[1:]]  # the first block is the title
        ids = [f"udhr_{version.file}/{index:02d}" for index in range(len(texts))]
        table = pa.table({
            "id": ids,
            "text": texts,
            "url": [f"https://www.unicode.org/udhr/d/udhr_{version.file}.html#{i}" for i in range(len(texts))],
            "date": ["2017-06-01T00:00:00Z"] * len(texts),
            "language": [label] * len(texts),
            "language_score": [1.0] * len(texts),
            "cluster_size": [1] * len(texts),
        })
        (output / label).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output / label / "part-00000.parquet")
        counts.append((label, sum(len(text.encode("utf-8")) for text in texts)))
    with (output / "counts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["language", "tokens"])
        writer.writerows(counts)
    (output / "_SUCCESS").write_text("")
    return output


@pytest.fixture(scope="session")
def udhr_corpus_dir(tmp_path_factory) -> Path:
    return write_udhr_corpus(tmp_path_factory.mktemp("udhr_corpus"))


@pytest.fixture(scope="session")
def gemma2_tokenizer_json() -> Path:
    """The real Gemma 2 tokenizer.json, fetched by the test set-up (`mmbert tokenizer fetch-gemma2`)."""
    from mmbert.paths import cache_dir

    path = cache_dir() / "tokenizers" / "gemma2" / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"Gemma 2 tokenizer not fetched ({path}); run `mmbert tokenizer fetch-gemma2` (scripts/test.sh does)")
    return path
