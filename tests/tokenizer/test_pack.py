"""Packing: the pure packer's invariants, and the Beam job on real UDHR text with the real Gemma 2 tokenizer."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbert.cli import main
from mmbert.errors import UsageError
from tokenizer.documents import clean_text, document_hash, split_mask
from tokenizer.gemma import load_tokenizer
from tokenizer.pack import DocumentBatch, key_by_shard, pack_documents, pack_shard, run_pack
from tokenizer.special_tokens import CLS_ID, PAD_ID, SEP_ID, encode_special_tokens_as_text

LANGUAGES = ["eng_Latn", "cmn_Hani", "arb_Arab", "tha_Thai"]


def unpack(rows, seq_len):
    """Check one shard's rows and rebuild its documents ([CLS] … [SEP]) from input_ids and document_lengths."""
    documents, current = [], []
    for index, (ids, lengths) in enumerate(rows):
        ids = list(ids)
        assert len(ids) == seq_len and all(n > 0 for n in lengths)
        used = sum(lengths)
        last = index == len(rows) - 1
        assert used == seq_len or last, "padding before the last row of a shard"
        assert ids[used:] == [PAD_ID] * (seq_len - used)
        start = 0
        for n in lengths:
            piece = ids[start:start + n]
            start += n
            assert (piece[0] == CLS_ID) == (not current), "a piece opens a document iff none is open"
            current += piece
            if piece[-1] == SEP_ID:
                documents.append(current)
                current = []
    assert not current, "a document was left open at the end of the shard"
    return documents


@pytest.mark.parametrize("seq_len", [8, 9, 16, 64])
def test_pack_documents_invariants(seq_len):
    rng = np.random.default_rng(seq_len)
    # Lengths around the edges: empty, exactly seq_len - 2 (fills a row), seq_len, far longer than a row.
    lengths = [0, seq_len - 2, seq_len, 1, 5 * seq_len + 3, seq_len - 1, 3] + list(rng.integers(0, 3 * seq_len, 40))
    documents = [list(rng.integers(5, 1000, n)) for n in lengths]
    rows = list(pack_documents(documents, seq_len))
    assert all(ids.dtype == np.int32 for ids, _ in rows)
    assert unpack(rows, seq_len) == [[CLS_ID, *d, SEP_ID] for d in documents]
    total = sum(len(d) + 2 for d in documents)
    assert len(rows) == -(-total // seq_len)  # no row wasted


def test_pack_documents_edge_cases():
    assert list(pack_documents([], 16)) == []
    (ids, lengths), = pack_documents([[7] * 14], 16)  # exactly one full row, no padding
    assert lengths == [16] and ids[0] == CLS_ID and ids[-1] == SEP_ID
    with pytest.raises(ValueError):
        list(pack_documents([[1]], 1))


def test_clean_text_reasons():
    assert clean_text(None)[1] == "missing_text"
    assert clean_text(b"caf\xe9")[1] == "invalid_utf8"
    assert clean_text("  \n\t ")[1] == "empty"
    assert clean_text("a\x00b\x1bc\x7f") == ("abc", None, ("control_characters_removed",))
    assert clean_text("tab\tand\nnewline") == ("tab\tand\nnewline", None, ())
    assert clean_text("x" * 20, max_chars=10) == ("x" * 10, None, ("truncated",))


def test_split_by_hash_and_every_language_with_two_documents_has_both_splits():
    hashes = np.array([5, 7, 2**63, 2**64 - 1], dtype=np.uint64)
    assert split_mask(hashes, 0.5, 5, 2**64 - 1, 4).tolist() == [True, True, False, False]
    # Tiny fraction: the smallest hash is still held out; huge fraction: the largest is still trained on.
    assert split_mask(hashes[[1, 2]], 1e-9, 7, 2**63, 2).tolist() == [True, False]
    assert split_mask(hashes[[1, 2]], 0.999, 7, 2**63, 2).tolist() == [True, False]
    assert not split_mask(hashes, 0.0, 5, 2**64 - 1, 4).any()  # no held-out split asked for: none
    assert split_mask(hashes[:1], 0.5, 5, 5, 1).tolist() == [True]  # one document: the fraction alone decides
    same = np.full(3, 2**63, dtype=np.uint64)  # three documents with one id, one hash: all train, whatever the fraction
    assert split_mask(same, 0.9, 2**63, 2**63, 3).tolist() == [False] * 3
    assert split_mask(same, 0.1, 2**63, 2**63, 3).tolist() == [False] * 3


def test_shard_order_does_not_depend_on_batch_arrival(tmp_path):
    def batch(ids, source, tokens):
        offsets = np.cumsum([0] + [len(t) for t in tokens])
        return DocumentBatch(np.array([document_hash(i) for i in ids], dtype=np.uint64), ids, source,
                             np.arange(len(ids)), np.concatenate(tokens).astype(np.int32), offsets)

    # Duplicate ids across files: equal hashes, ordered by (id, file, row) and never by arrival.
    first = batch(["a", "dup", "b"], "x/part-0.parquet", [[10, 11], [12], [13, 14, 15]])
    second = batch(["dup", "c"], "x/part-1.parquet", [[20, 21, 22], [23]])
    outputs = []
    for name, batches in (("one", [first, second]), ("two", [second, first])):
        stats = dict(pack_shard((("xxx_Latn", "train", 0), batches), str(tmp_path / name), 8))
        outputs.append((tmp_path / name / "xxx_Latn" / "train" / "part-00000.parquet").read_bytes())
        assert stats[("xxx_Latn", "train_documents")] == 5 and stats[("xxx_Latn", "train_tokens")] == 10 + 10
    assert outputs[0] == outputs[1]
    rows = pq.read_table(tmp_path / "one" / "xxx_Latn" / "train" / "part-00000.parquet").to_pylist()
    documents = unpack([(r["input_ids"], r["document_lengths"]) for r in rows], 8)
    assert documents.index([CLS_ID, 12, SEP_ID]) < documents.index([CLS_ID, 20, 21, 22, SEP_ID])


def read_shards(root, seq_len):
    """language → split → documents (as token lists) rebuilt from every shard file."""
    found = {}
    for path in sorted(root.glob("*/*/part-*.parquet")):
        table = pq.read_table(path)
        assert table.schema.field("input_ids").type == pa.list_(pa.int32())
        assert table.schema.field("document_lengths").type == pa.list_(pa.int32())
        rows = list(zip(table.column("input_ids").to_pylist(), table.column("document_lengths").to_pylist()))
        label, split = path.parent.parent.name, path.parent.name
        found.setdefault(label, {}).setdefault(split, []).extend(unpack(rows, seq_len))
    return found


@pytest.fixture(scope="module")
def packed(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path_factory):
    output = tmp_path_factory.mktemp("packed") / "shards"
    manifest = run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), 128, output, heldout_fraction=0.1,
                        languages=LANGUAGES)
    return output, manifest


def test_pack_job_keeps_every_token_once_and_in_order(packed, udhr_corpus_dir, gemma2_tokenizer_json):
    output, manifest = packed
    tokenizer = encode_special_tokens_as_text(load_tokenizer(gemma2_tokenizer_json))
    found = read_shards(output, 128)
    assert sorted(found) == sorted(LANGUAGES)
    for label in LANGUAGES:
        texts = pq.read_table(udhr_corpus_dir / label / "part-00000.parquet").column("text").to_pylist()
        expected = sorted([CLS_ID, *e.ids, SEP_ID] for e in tokenizer.encode_batch(texts, add_special_tokens=False))
        train, heldout = found[label]["train"], found[label]["heldout"]
        assert sorted(train + heldout) == expected  # every document exactly once, its tokens in order
        assert train and heldout
        entry = manifest["languages"][label]
        assert entry["documents"] == len(texts) == entry["train_documents"] + entry["heldout_documents"]
        assert entry["train_tokens"] == sum(map(len, train))
        assert entry["heldout_tokens"] == sum(map(len, heldout))
        assert entry["train_rows"] == pq.read_metadata(output / label / "train" / "part-00000.parquet").num_rows
    assert sorted(s.name for s in (output / "eng_Latn").iterdir()) == ["heldout", "train"]


def test_a_language_with_one_document_holds_out_its_tail(udhr_texts, gemma2_tokenizer_json, tmp_path):
    """A web page per language is common in small corpora (the demo's UDHR pages): the page's tail becomes the
    language's held-out set instead of the language having none."""
    corpus = tmp_path / "corpus"
    text = "\n".join(udhr_texts["fra_Latn"])
    for label, texts in (("fra_Latn", [text]), ("deu_Latn", ["Alle Menschen sind frei.", "Jeder hat das Recht."])):
        (corpus / label).mkdir(parents=True)
        pq.write_table(pa.table({"id": [f"{label}/{i}" for i in range(len(texts))], "text": texts}),
                       corpus / label / "part-00000.parquet")
    (corpus / "_SUCCESS").write_text("")
    manifest = run_pack(corpus, str(gemma2_tokenizer_json), 128, tmp_path / "out", heldout_fraction=0.01)
    tokens = encode_special_tokens_as_text(load_tokenizer(gemma2_tokenizer_json)).encode(
        text, add_special_tokens=False).ids
    found = read_shards(tmp_path / "out", 128)["fra_Latn"]
    (head,), (tail,) = found["train"], found["heldout"]
    assert head[0] == tail[0] == CLS_ID and head[-1] == tail[-1] == SEP_ID
    assert head[1:-1] + tail[1:-1] == tokens  # every token once, in order: the head trains, the tail is held out
    assert len(tail) - 2 == round(0.1 * len(tokens))  # at least SINGLE_DOCUMENT_HELDOUT of it, whatever the fraction
    fra, deu = manifest["languages"]["fra_Latn"], manifest["languages"]["deu_Latn"]
    assert fra["documents"] == 1 and fra["heldout_is_document_tail"]
    assert deu["documents"] == 2 and deu["train_documents"] == deu["heldout_documents"] == 1
    assert not deu["heldout_is_document_tail"]
    from evaluation.mlm import document_tail_languages  # what `mmbert eval` names in its report's settings

    assert document_tail_languages(manifest) == ["fra_Latn"]


def test_a_short_only_document_keeps_a_train_piece():
    batch = DocumentBatch(np.array([document_hash("d")], dtype=np.uint64), ["d"], "x.parquet", np.array([0]),
                          np.array([11, 12], dtype=np.int32), np.array([0, 2]))
    keyed = dict(key_by_shard(("xxx_Latn", batch), {"xxx_Latn": (None, None, 1)},
                              {"xxx_Latn": {"train": 1, "heldout": 1}}, heldout_fraction=0.9))
    assert keyed[("xxx_Latn", "train", 0)].tokens.tolist() == [11]  # 90 % of 2 tokens would leave train nothing
    assert keyed[("xxx_Latn", "heldout", 0)].tokens.tolist() == [12]


def test_large_languages_are_spread_over_shards(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path):
    tokenizer = encode_special_tokens_as_text(load_tokenizer(gemma2_tokenizer_json))
    manifest = run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), 64, tmp_path / "out", heldout_fraction=0.3,
                        languages=["rus_Cyrl", "kor_Hang"], shard_text_bytes=2000)
    found = read_shards(tmp_path / "out", 64)
    for label in ("rus_Cyrl", "kor_Hang"):
        entry = manifest["languages"][label]
        assert entry["train_shards"] > 3 and entry["heldout_shards"] >= 1
        assert len(list((tmp_path / "out" / label / "train").glob("part-*.parquet"))) > 3
        texts = pq.read_table(udhr_corpus_dir / label / "part-00000.parquet").column("text").to_pylist()
        expected = sorted([CLS_ID, *e.ids, SEP_ID] for e in tokenizer.encode_batch(texts, add_special_tokens=False))
        assert sorted(found[label]["train"] + found[label]["heldout"]) == expected


def test_pack_writes_the_artefact(packed, gemma2_tokenizer_json):
    import datasets

    from languages.sampling import read_counts_csv

    output, manifest = packed
    assert (output / "_SUCCESS").exists()
    on_disk = json.loads((output / "manifest.json").read_text())
    assert on_disk == manifest and on_disk["seq_len"] == 128
    assert on_disk["tokenizer"]["vocab_size"] == 256_000 and on_disk["tokenizer"]["sha256"].startswith("7da53ca2")
    assert on_disk["special_ids"] == {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    counts = read_counts_csv(output / "token_counts.csv")
    assert counts == {label: manifest["languages"][label]["train_tokens"] for label in LANGUAGES}
    dataset = datasets.load_dataset("parquet", data_dir=str(output / "eng_Latn" / "train"), split="train")
    assert len(dataset) == manifest["languages"]["eng_Latn"]["train_rows"]
    assert len(dataset[0]["input_ids"]) == 128 and sum(dataset[0]["document_lengths"]) <= 128


def test_same_output_for_one_and_two_workers(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path):
    outputs = []
    for workers in (1, 2):
        output = tmp_path / f"w{workers}"
        run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), 64, output, heldout_fraction=0.2,
                 num_workers=workers, languages=["fra_Latn", "jpn_Jpan", "hin_Deva"])
        outputs.append({p.relative_to(output).as_posix(): p.read_bytes()
                        for p in sorted(output.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3 * 2 + 3


def write_part(directory, texts, ids=None, text_type=None):
    directory.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else [f"doc-{i}" for i in range(len(texts))]
    column = pa.array(texts, text_type) if text_type else pa.array(texts)
    pq.write_table(pa.table({"id": ids, "text": column}), directory / "part-00000.parquet")


def write_damaged_part(path):
    """A Parquet file whose footer reads fine but whose text column's data page is garbage."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": list("abcd"), "text": [os.urandom(3000).hex() for _ in range(4)]}), path,
                   compression="zstd", use_dictionary=False)
    column = pq.ParquetFile(path).metadata.row_group(0).column(1)
    data = bytearray(path.read_bytes())
    data[column.data_page_offset + 100:column.data_page_offset + column.total_compressed_size - 100] = \
        b"\xab" * (column.total_compressed_size - 200)
    path.write_bytes(bytes(data))


def test_reading_texts_skips_a_damaged_row_group(tmp_path):
    from tokenizer.corpus_files import iter_texts

    write_damaged_part(tmp_path / "a" / "part-00000.parquet")
    write_part(tmp_path / "b", ["first", None, "second"])
    paths = [tmp_path / "a" / "part-00000.parquet", tmp_path / "b" / "part-00000.parquet"]
    assert list(iter_texts(paths)) == [("doc-0", "first"), ("doc-2", "second")]


def test_bad_input_is_counted_not_fatal(tmp_path, gemma2_tokenizer_json):
    corpus = tmp_path / "corpus"
    # Invalid UTF-8 inside a string column, written without validation as a careless producer might.
    raw = pa.array([b"good text one", b"bad \xff\xfe bytes", b"good text two"], pa.binary())
    (corpus / "eng_Latn").mkdir(parents=True)
    invalid = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    texts = pa.concat_arrays([invalid, pa.array(["", "   ", None, "ctrl\x00chars\x1b here", "long " * 400, "<eos> in text"])])
    ids = ["a", "b", "c", "d", "e", "f", "g", None, "i"]
    pq.write_table(pa.table({"id": ids, "text": texts}), corpus / "eng_Latn" / "part-00000.parquet")
    (corpus / "fra_Latn").mkdir()  # a language directory with no data
    write_part(corpus / "deu_Latn", [b"Alle Menschen sind frei.", b"\xc3\x28"], text_type=pa.binary())
    (corpus / "deu_Latn" / "part-00001.parquet").write_bytes(b"not parquet at all")
    # A damaged data page behind a valid footer: found only when the row group is read, inside the job.
    write_damaged_part(corpus / "ita_Latn" / "part-00000.parquet")
    (corpus / "_SUCCESS").write_text("")

    manifest = run_pack(corpus, str(gemma2_tokenizer_json), 32, tmp_path / "out", heldout_fraction=0.0,
                        max_document_chars=1000)
    eng = manifest["languages"]["eng_Latn"]
    assert eng["documents_in"] == 9 and eng["documents"] == 5
    assert eng["dropped"] == {"invalid_utf8": 1, "empty": 2, "missing_text": 1}
    assert eng["modified"] == {"control_characters_removed": 1, "truncated": 1, "missing_id": 1}
    assert manifest["languages"]["deu_Latn"]["dropped"] == {"invalid_utf8": 1}
    assert manifest["skipped_languages"] == {"fra_Latn": "no data (no Parquet rows)",
                                             "ita_Latn": "no usable documents (unreadable row groups: 1)"}
    assert "ita_Latn" not in manifest["languages"] and eng["unreadable_row_groups"] == 0
    assert "ita_Latn/part-00000.parquet" not in manifest["skipped_files"]  # its footer was fine
    assert "deu_Latn/part-00001.parquet" in manifest["skipped_files"]
    documents = read_shards(tmp_path / "out", 32)["eng_Latn"]["train"]
    assert max(map(len, documents)) > 32  # the long document spans rows
    assert all(SEP_ID not in d[1:-1] and CLS_ID not in d[1:] for d in documents)  # "<eos>" stayed text


@pytest.mark.parametrize("change, message", [
    ({"seq_len": 4}, "--seq-len"),
    ({"seq_len": 2**40}, "from 8 to 1,048,576"),  # before hours of tokenizing, not after
    ({"languages": []}, "names no language"),  # `--languages ,` is not "every language"
    ({"heldout_fraction": 1.0}, "--heldout-fraction"),
    ({"num_workers": 0}, "--num-workers"),
    ({"languages": ["xxx_Zzzz_nope"]}, "languages"),
    ({"tokenizer_spec": "/no/such/tokenizer.json"}, "not found"),
    ({"corpus_dir": "/no/such/corpus"}, "not a directory"),
])
def test_unusable_arguments_write_nothing(change, message, udhr_corpus_dir, gemma2_tokenizer_json, tmp_path):
    arguments = {"corpus_dir": udhr_corpus_dir, "tokenizer_spec": str(gemma2_tokenizer_json), "seq_len": 64,
                 "output_dir": tmp_path / "out", **change}
    with pytest.raises(UsageError, match=message):
        run_pack(**arguments)
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_without_the_special_ids_is_named_as_it_is(udhr_corpus_dir, tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    path = tmp_path / "wordlevel.json"
    Tokenizer(WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(UsageError, match="<pad> has id None, expected 0"):  # not the ids packing would add
        run_pack(corpus_dir=udhr_corpus_dir, tokenizer_spec=str(path), seq_len=64, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sentencepiece_model_that_reads_special_strings_as_special_ids_is_refused(udhr_texts, udhr_corpus_dir,
                                                                                      tmp_path):
    import sentencepiece as spm

    # Gemma's id layout, as a user's own SentencePiece model would have it: the converted unigram model can pick
    # the control pieces for the text "<eos>", and a rule splits out "<mask>": a page mentioning them would get
    # a real [SEP] or <mask> inside a document
    (tmp_path / "train.txt").write_text("\n".join(udhr_texts["eng_Latn"] + udhr_texts["fra_Latn"]), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "sp"), vocab_size=600, model_type="unigram",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        user_defined_symbols=["<mask>"], byte_fallback=True, minloglevel=2)
    with pytest.raises(UsageError, match="turns the text of special tokens into special ids"):
        run_pack(corpus_dir=udhr_corpus_dir, tokenizer_spec=str(tmp_path / "sp.model"), seq_len=64,
                 output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_pack_errors_exit_2(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path, capsys):
    incomplete = tmp_path / "incomplete"
    write_part(incomplete / "eng_Latn", ["text"])
    argv = ["tokenizer", "pack", "--tokenizer", str(gemma2_tokenizer_json), "--seq-len", "64"]
    assert main(argv + ["--corpus", str(incomplete), "--output", str(tmp_path / "a")]) == 2
    assert "_SUCCESS" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "manifest.json").write_text("{}")  # an earlier output (an empty directory is used)
    assert main(argv + ["--corpus", str(udhr_corpus_dir), "--output", str(tmp_path / "exists")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "incomplete"]


def test_output_holding_the_corpus_is_refused_even_with_overwrite(tmp_path, gemma2_tokenizer_json):
    corpus = tmp_path / "work" / "corpus"
    write_part(corpus / "eng_Latn", ["All human beings are born free."])
    (corpus / "_SUCCESS").write_text("")
    for output in (tmp_path / "work", corpus):  # --overwrite would have deleted the corpus being read
        with pytest.raises(UsageError, match="must not be or hold the --corpus it reads"):
            run_pack(corpus, str(gemma2_tokenizer_json), 64, output, overwrite=True)
    assert (corpus / "eng_Latn" / "part-00000.parquet").is_file()


def test_an_unknown_runner_is_a_usage_error_and_writes_nothing(udhr_corpus_dir, gemma2_tokenizer_json, tmp_path):
    # The runner flags come after the DirectRunner defaults and win over them.
    with pytest.raises(UsageError, match="NoSuchRunner"):
        run_pack(udhr_corpus_dir, str(gemma2_tokenizer_json), 64, tmp_path / "out", languages=["eng_Latn"],
                 pipeline_args=["--runner", "NoSuchRunner"])
    assert list(tmp_path.iterdir()) == []
