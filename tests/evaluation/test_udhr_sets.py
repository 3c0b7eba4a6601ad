"""The shipped UDHR retrieval and classification sets: reproducible from data/udhr/txt, aligned by article."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter

import pytest

from evaluation.udhr import (CLASSIFICATION_FILE, RETRIEVAL_DIR, TEST_ARTICLES, TOPIC_OF_ARTICLE,
                             write_classification_set, write_retrieval_set)
from mmbert.udhr import UDHR_DIR, read_aligned_versions, udhr_versions


@pytest.fixture(scope="module")
def aligned():
    return read_aligned_versions()


def test_shipped_files_are_what_the_builder_writes(aligned, tmp_path):
    versions, _ = aligned
    assert write_retrieval_set(versions, tmp_path / "udhr") == len(versions) - 1  # every language but English
    for built in sorted((tmp_path / "udhr").iterdir()):
        assert built.read_bytes() == (RETRIEVAL_DIR / built.name).read_bytes(), built.name
    assert {p.name for p in RETRIEVAL_DIR.iterdir()} == {p.name for p in (tmp_path / "udhr").iterdir()}
    write_classification_set(versions, tmp_path / "topics.jsonl.gz")
    assert (tmp_path / "topics.jsonl.gz").read_bytes() == CLASSIFICATION_FILE.read_bytes()


def test_versions_that_do_not_align_are_skipped_with_a_reason(aligned):
    versions, skipped = aligned
    assert len(versions) + len(skipped) == 140
    assert len(skipped) <= 15, skipped  # a handful; each with its reason
    assert all(reason for reason in skipped.values())
    assert len({v.language for v in versions}) == len(versions)  # one version per language label


def test_aligned_versions_carry_the_projects_labels(aligned):
    versions, _ = aligned
    labels = {v.file: v.label for v in udhr_versions()}
    assert all(version.language == labels[version.file] for version in versions)
    english = next(v for v in versions if v.file == "eng")
    assert english.articles[1][0].startswith("All human beings are born free")
    assert english.articles[30][0].startswith("Nothing in this Declaration")


def test_retrieval_files_pair_each_article_with_english():
    lines = (RETRIEVAL_DIR / "fra_Latn-eng_Latn.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 31
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 4 and row[:2] == ["fra_Latn", "eng_Latn"] for row in rows)
    assert rows[1][2].startswith("Tous les êtres humains naissent libres")
    assert rows[1][3].startswith("All human beings are born free")
    assert rows[30][3].startswith("Nothing in this Declaration")


def test_classification_rows_carry_the_topic_of_their_article():
    with gzip.open(CLASSIFICATION_FILE, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    english = [row for row in rows if row["language"] == "eng_Latn"]
    assert all(row["label"] == TOPIC_OF_ARTICLE[row["article"]] for row in rows)
    assert all((row["split"] == "test") == (row["article"] in TEST_ARTICLES) for row in rows)
    assert {row["label"] for row in english if row["split"] == "test"} == set(TOPIC_OF_ARTICLE.values())
    assert any(row["text"].startswith("Everyone has the right to life") for row in english)
    assert Counter(row["split"] for row in english)["test"] >= 15


def test_a_version_missing_an_article_is_skipped(tmp_path):
    (tmp_path / "txt").mkdir()
    shutil.copy(UDHR_DIR / "txt" / "udhr_eng.txt", tmp_path / "txt")
    shutil.copy(UDHR_DIR / "txt" / "udhr_fra.txt", tmp_path / "txt")
    lines = (UDHR_DIR / "txt" / "udhr_deu_1901.txt").read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip() == "Artikel 7")
    del lines[first - 1: first + 2]  # article 7: its separator, heading and text
    (tmp_path / "txt" / "udhr_deu_1901.txt").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "index.csv").write_text(
        "file,iso639_3,bcp47,direction,name\neng,eng,en,ltr,English\nfra,fra,fr,ltr,French\n"
        "deu_1901,deu,de,ltr,German\n", encoding="utf-8")
    versions, skipped = read_aligned_versions(tmp_path)
    assert [v.language for v in versions] == ["eng_Latn", "fra_Latn"]
    assert "do not align" in skipped["deu_1901"]
