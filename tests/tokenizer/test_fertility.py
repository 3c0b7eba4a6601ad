"""Fertility on real UDHR text with the real Gemma 2 tokenizer, and the command's table, CSV and plot."""

from __future__ import annotations

import csv

import pytest

from mmbert.cli import main
from tokenizer.fertility import count_words, measure_fertility


def test_word_counts_handle_scripts_without_spaces():
    assert count_words("All human beings, are born free!", "Latn") == 6
    assert count_words("人人生而自由，在尊严和权利上一律平等。", "Hani") >= 8  # dictionary segmentation, not 1
    assert count_words("มนุษย์ทั้งหลายเกิดมามีอิสระ", "Thai") >= 4


def test_measure_fertility_on_udhr(udhr_texts, gemma2_tokenizer_json):
    from tokenizer.gemma import load_tokenizer

    labels = ["eng_Latn", "cmn_Hani", "amh_Ethi", "tha_Thai"]
    tokenizer = load_tokenizer(gemma2_tokenizer_json)
    results = measure_fertility({label: udhr_texts[label] for label in labels}, tokenizer)
    assert tokenizer.encode_special_tokens is False  # the caller's tokenizer is left as it was
    assert measure_fertility({"eng_Latn": udhr_texts["eng_Latn"]}, str(gemma2_tokenizer_json)) == {
        "eng_Latn": results["eng_Latn"]}
    for label in labels:
        row = results[label]
        assert row["documents"] == len(udhr_texts[label]) and row["words"] > 500
        assert row["tokens_per_word"] == pytest.approx(row["tokens"] / row["words"])
        assert row["bytes_per_token"] == pytest.approx(row["bytes"] / row["tokens"])
    # Special-token strings in a text count as packing writes them: as text ("<mask>" is not special in Gemma 2).
    from tokenizer.pack import packing_tokenizer

    text = "Use <mask> here, not <eos> or <bos>."
    packed = len(packing_tokenizer(str(gemma2_tokenizer_json)).encode(text, add_special_tokens=False).ids)
    assert measure_fertility({"eng_Latn": [text]}, tokenizer)["eng_Latn"]["tokens"] == packed
    # Gemma 2 is known to be frugal on English and costly on Ge'ez script.
    assert 1.0 < results["eng_Latn"]["tokens_per_word"] < 1.5 < results["amh_Ethi"]["tokens_per_word"]
    assert results["eng_Latn"]["bytes_per_token"] > results["amh_Ethi"]["bytes_per_token"]


def test_cli_two_tokenizers_side_by_side(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path, capsys):
    other = tmp_path / "small"
    assert main(["tokenizer", "train", "--corpus", str(udhr_corpus_dir), "--vocab-size", "600",
                 "--output", str(other), "--languages", "eng_Latn,fra_Latn"]) == 0
    output = tmp_path / "fertility"
    assert main(["tokenizer", "fertility", "--corpus", str(udhr_corpus_dir), "--tokenizer", str(gemma2_tokenizer_json),
                 "--tokenizer", str(other), "--output", str(output), "--max-documents", "5"]) == 0
    table = capsys.readouterr().out
    assert "tokens/word gemma2" in table and "tokens/word small" in table and "| tha_Thai |" in table
    rows = list(csv.DictReader((output / "fertility.csv").open()))
    assert {row["tokenizer"] for row in rows} == {"gemma2", "small"} and len(rows) == 2 * 40
    fertility = {(row["tokenizer"], row["language"]): float(row["tokens_per_word"]) for row in rows}
    assert fertility[("small", "tha_Thai")] > fertility[("gemma2", "tha_Thai")]  # trained without any Thai
    assert (output / "fertility.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rejects_three_tokenizers(udhr_corpus_dir, tmp_path, capsys):
    argv = ["tokenizer", "fertility", "--corpus", str(udhr_corpus_dir), "--output", str(tmp_path / "f")]
    assert main(argv + ["--tokenizer", "a", "--tokenizer", "b", "--tokenizer", "c"]) == 2
    assert "once or twice" in capsys.readouterr().err and not (tmp_path / "f").exists()


def test_cli_rejects_the_same_tokenizer_twice(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path, capsys):
    argv = ["tokenizer", "fertility", "--corpus", str(udhr_corpus_dir), "--output", str(tmp_path / "f")]
    assert main(argv + ["--tokenizer", str(gemma2_tokenizer_json)] * 2) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "f").exists()
