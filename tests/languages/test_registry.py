"""The registry's size and the normalisation of every label style onto one code."""

import pytest

from languages.registry import UnknownLanguage, all_languages, get, normalize
from languages.scripts import dominant_script


def test_registry_has_at_least_1800_labels_in_xxx_Scrp_form():
    labels = [language.code for language in all_languages() if language.code != "code"]
    assert len(labels) >= 1800
    assert all(len(label) == 8 and label[3] == "_" and label[4].isupper() for label in labels)
    french = get("fra_Latn")
    assert (french.iso639_3, french.script, french.name) == ("fra", "Latn", "French")
    assert french.words > 10**10 and french.documents > 0 and french.bytes > french.words


@pytest.mark.parametrize("label, expected", [
    # lid.176: two- and three-letter Wikipedia-style labels
    ("__label__en", "eng_Latn"), ("__label__zh", "cmn_Hani"), ("__label__ceb", "ceb_Latn"),
    ("__label__ru", "rus_Cyrl"), ("__label__ja", "jpn_Jpan"), ("__label__ko", "kor_Hang"),
    ("__label__als", "gsw_Latn"), ("__label__bh", "bho_Deva"),
    # GlotLID
    ("__label__eng_Latn", "eng_Latn"), ("__label__srp_Latn", "srp_Latn"), ("__label__zho_Hani", "cmn_Hani"),
    # BCP-47
    ("sr-Latn", "srp_Latn"), ("sr-Cyrl", "srp_Cyrl"), ("zh-Hant", "cmn_Hani"), ("pt-BR", "por_Latn"),
    # ISO 639-1 / 639-2 / 639-3
    ("de", "deu_Latn"), ("ger", "deu_Latn"), ("deu", "deu_Latn"), ("als", "als_Latn"),
    # macrolanguages → the individual code FineWeb-2 and mmBERT use
    ("zho", "cmn_Hani"), ("zh", "cmn_Hani"), ("ara", "arb_Arab"), ("ar", "arb_Arab"), ("msa", "zsm_Latn"),
    ("ms", "zsm_Latn"), ("est", "ekk_Latn"), ("et", "ekk_Latn"), ("fas", "fas_Arab"), ("fa", "fas_Arab"),
    ("swa", "swh_Latn"), ("nor", "nob_Latn"), ("uzb", "uzn_Latn"), ("lav", "lvs_Latn"), ("nep", "npi_Deva"),
    ("code", "code"),
    # lid.176 codes FineWeb-2 and mmBERT use as they are (not the ISO successor), and the fastText prefix's
    # corrections whatever the case or surrounding space
    ("__label__eml", "eml_Latn"), ("__label__nah", "nah_Latn"), (" __label__als", "gsw_Latn"),
    ("__label__ALS", "gsw_Latn"), ("CODE", "code"), ("__label__ku", "kmr_Latn"),
    # a code the registry spells otherwise meets its label: member of a macrolanguage kept whole, CLDR alias
    ("pes", "fas_Arab"), ("prs", "fas_Arab"), ("__label__pes_Arab", "fas_Arab"), ("__label__prs_Arab", "fas_Arab"),
    ("tgl", "fil_Latn"), ("__label__tgl_Latn", "fil_Latn"),
    # a region that decides the script
    ("az-IR", "azb_Arab"), ("uz-AF", "uzs_Arab"), ("sr-ME", "srp_Latn"), ("zh-TW", "cmn_Hani"),
])
def test_normalize_each_label_style(label, expected):
    assert normalize(label) == expected


def test_script_hint_picks_among_a_languages_scripts():
    assert normalize("sr", script="Latn") == "srp_Latn"
    assert normalize("sr", script="Cyrl") == "srp_Cyrl"
    assert normalize("__label__sr", script=dominant_script("Сва људска бића рађају се слободна")) == "srp_Cyrl"
    assert normalize("__label__sr", script=dominant_script("Sva ljudska bića rađaju se slobodna")) == "srp_Latn"
    # the text's script wins, also where FineWeb-2 has no data in it (Chakma UDHR; French mislabelled Cyrillic text)
    assert normalize("ccp", script="Cakm") == "ccp_Cakm"
    assert normalize("fr", script="Cyrl") == "fra_Cyrl"
    assert normalize("fr", script="Zyyy") == "fra_Latn"
    assert normalize("ko", script="Hani") == "kor_Hang"
    # Japanese kana/kanji and Chinese simplified/traditional meet FineWeb-2's combined codes
    assert normalize("ja", script="Hira") == "jpn_Jpan"
    assert normalize("zh", script="Hant") == "cmn_Hani"
    # lid.176's `ku` is Kurmanji (in the mid-training and decay sets); in Arabic script Central Kurdish
    assert normalize("__label__ku", script="Latn") == "kmr_Latn" and normalize("__label__ku") == "kmr_Latn"
    assert normalize("__label__ku", script="Arab") == "ckb_Arab" and normalize("__label__ku", script="Armn") != "ckb_Armn"
    # languages ISO splits by script meet FineWeb-2's label for the text's script, not a label it lacks
    assert normalize("__label__pa", script="Arab") == "pnb_Arab" and normalize("pa-PK") == "pnb_Arab"
    assert normalize("pnb", script="Guru") == "pan_Guru" and normalize("ckb", script="Latn") == "ckb_Latn"
    assert normalize("tg", script="Arab") == "fas_Arab" and normalize("fa", script="Cyrl") == "tgk_Cyrl"
    # and Latin-script Chinese stays Mandarin (it was Min Nan, the member with Latin-script data)
    assert normalize("__label__zh", script="Latn") == "cmn_Latn" and normalize("zh-Latn-pinyin") == "cmn_Latn"
    assert normalize("__label__az", script="Arab") == "azb_Arab" and normalize("__label__az") == "azj_Latn"
    # a script langcodes only implies (deprecated `sh` → sr-Latn) yields to the text's; one the label spells out wins
    assert normalize("__label__sh", script="Cyrl") == "srp_Cyrl" and normalize("sh") == "srp_Latn"
    assert normalize("sr-Latn", script="Cyrl") == "srp_Latn"
    # the hint is ISO 15924, however it is capitalised; anything else is refused
    assert normalize("en", script="latn") == "eng_Latn" and normalize("sr", script="CYRL") == "srp_Cyrl"
    with pytest.raises(UnknownLanguage, match="not an ISO 15924 code"):
        normalize("en", script="Xyz")


def test_retired_codes_with_a_successor_meet_it():
    # GlotLID still emits some (ajp_Arab); ISO merged South Levantine Arabic into apc
    assert normalize("__label__ajp_Arab") == "apc_Arab" and normalize("jaw") == "jav_Latn"
    with pytest.raises(UnknownLanguage, match="deprecated"):  # split into several: no successor to take
        normalize("__label__sgl_Latn")


@pytest.mark.parametrize("label", ["", "__label__", "xyz", "__label__qqq_Latn", "not a language",
                                   # ISO's special codes name no language; a script must be ISO 15924's
                                   "und", "__label__und_Latn", "mul_Latn", "zxx_Zxxx", "eng_Abcd"])
def test_unknown_labels_raise(label):
    with pytest.raises(UnknownLanguage):
        normalize(label)


def test_dominant_script_of_real_text(udhr_texts):
    expected = {"eng_Latn": "Latn", "rus_Cyrl": "Cyrl", "cmn_Hani": "Hani", "jpn_Jpan": "Jpan", "kor_Hang": "Hang",
                "arb_Arab": "Arab", "hin_Deva": "Deva", "tha_Thai": "Thai", "ell_Grek": "Grek", "amh_Ethi": "Ethi"}
    for label, script in expected.items():
        assert dominant_script(" ".join(udhr_texts[label])) == script, label
    assert dominant_script("1234 !!! ...") is None


def test_every_shipped_udhr_version_normalises_to_a_distinct_label(udhr_texts):
    assert len(udhr_texts) == 140
    assert all(label == normalize(label) for label in udhr_texts)


def test_language_options_parse_one_way_in_every_command():
    from languages.registry import normalize_list
    from mmbert.errors import UsageError

    assert normalize_list(None) is None  # not given: every language
    assert normalize_list("fr, de,fra_Latn") == ["fra_Latn", "deu_Latn"]
    assert normalize_list(["fr,de", "zh"]) == ["fra_Latn", "deu_Latn", "cmn_Hani"]
    for nothing in (",", " , ", [","], []):
        with pytest.raises(UsageError, match="--languages names no language"):
            normalize_list(nothing)
    with pytest.raises(UsageError, match="--only: unknown language label 'xyz'$"):
        normalize_list("fr,xyz", "--only")
    with pytest.raises(UsageError, match=r"unknown language label 'xxx_Zzzz' \(unknown language code 'xxx'\)"):
        normalize_list("xxx_Zzzz")  # the whole label is named, not only the part that failed


def test_the_fasttext_prefix_is_stripped_whatever_its_case():
    assert normalize("__LABEL__fr") == normalize("__Label__fr") == normalize(" __label__fr ") == "fra_Latn"
    assert normalize("__LABEL__eng_Latn") == "eng_Latn"
