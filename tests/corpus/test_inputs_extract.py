"""Reading WARC / JSONL / Parquet inputs and extracting text, on the shipped WARC files and on broken inputs."""

from __future__ import annotations

import collections
import gzip
import io
import json
import os
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from corpus.extract import extract_text
from corpus.inputs import read_jsonl, read_records, resolve_inputs
from corpus.records import Removed
from mmbert.errors import UsageError
from mmbert.paths import DATA_DIR

WARC = DATA_DIR / "warc"


def _outcomes(path, **kwargs):
    counts, documents = collections.Counter(), []
    for item in read_records(str(path), **kwargs):
        if isinstance(item, Removed):
            counts[item.reason] += 1
            continue
        document, reason = extract_text(item) if "payload" in item else (item, None)
        counts[reason or "ok"] += 1
        if document:
            documents.append(document)
    return counts, documents


def test_udhr_warc_gives_140_documents_with_metadata():
    counts, documents = _outcomes(WARC / "udhr.warc.gz")
    assert counts == {"ok": 140}
    first = documents[0]
    assert first["id"].startswith("<urn:uuid:") and first["url"].startswith("https://www.unicode.org/udhr/")
    assert first["date"].startswith("2017-06-01T00:00:00")
    assert "Universal Declaration of Human Rights" in first["text"] and "<" not in first["text"][:200]


def test_common_crawl_excerpt_skips_non_response_records():
    counts, documents = _outcomes(WARC / "warcfile.warc.gz")
    assert counts["not_response"] == 34 and counts["ok"] == 16  # warcinfo + 17 requests + 16 metadata records
    assert any("中" in d["text"] for d in documents)  # the first page is Chinese, decoded from its charset


@pytest.mark.parametrize("name, expected", [
    ("clipped.warc.gz", {"truncated_record": 1}),
    ("block-sized-records.warc.gz", {"not_response": 3}),
    ("clueweb-quirk.warc.gz", {"not_response": 1, "ok": 29}),
])
def test_awkward_warcs_are_counted_not_fatal(name, expected):
    counts, documents = _outcomes(WARC / name)
    assert dict(counts) == expected
    if name.startswith("clueweb"):  # EUC-JP pages without an HTTP charset: detected from the bytes
        assert any("商品" in d["text"] for d in documents)


def test_truncated_gzip_keeps_earlier_records(tmp_path):
    data = (WARC / "udhr.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(data[: len(data) // 2])
    counts, _ = _outcomes(cut)
    assert 40 < counts["ok"] < 140 and counts["truncated_record"] == 1
    cut.write_bytes(data[: len(data) // 3])  # this cut falls inside a record's WARC header
    counts, _ = _outcomes(cut)
    assert counts["truncated_record"] == 1
    garbage = tmp_path / "garbage.warc.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 40)
    counts, _ = _outcomes(garbage)
    assert counts["ok"] == 0


def test_oversized_pages_are_skipped():
    counts, _ = _outcomes(WARC / "udhr.warc.gz", max_page_bytes=10_000)
    assert counts["too_large"] > 50 and counts["ok"] + counts["too_large"] == 140


def _record(payload: bytes, content_type="text/html", charset=None):
    return {"id": "r", "url": "u", "date": "", "payload": payload, "content_type": content_type, "charset": charset,
            "kind": "html"}


def test_extract_handles_charsets_and_bad_payloads():
    page = "<html><body><p>Всеобщая декларация прав человека. Все люди рождаются свободными.</p></body></html>"
    document, reason = extract_text(_record(page.encode("cp1251"), charset="cp1251"))
    assert reason is None and "декларация" in document["text"]
    document, reason = extract_text(_record(page.encode("utf-8"), charset="iso-8859-1"))  # a wrong label
    assert reason is None and "декларация" in document["text"]
    assert extract_text(_record(b"%PDF-1.4 \x00\x01\x02", content_type="application/pdf"))[1] == "binary_garbage"
    assert extract_text(_record(b"{\"a\": 1}", content_type="application/json"))[1] == "not_html"
    assert extract_text(_record(b""))[1] == "empty_payload"
    assert extract_text(_record(b"<html><body><script>x()</script></body></html>"))[1] == "empty_text"
    noise = bytes((i * 7 + 3) % 32 for i in range(5000))
    assert extract_text(_record(noise, content_type=None))[1] in ("binary_garbage", "not_html")
    trafilatura = extract_text(_record(page.encode("utf-8")), extractor="trafilatura")[0]
    assert "декларация" in trafilatura["text"]
    # UTF-16 (its NUL bytes are text, not binary data), by label or byte-order mark; a label whose codec raises a
    # bare UnicodeError (`undefined`) falls through to detection instead of stopping the job
    for payload, charset in ((page.encode("utf-16-le"), "utf-16le"), (page.encode("utf-16"), None),
                             (page.encode("cp1251"), "undefined")):
        document, reason = extract_text(_record(payload, charset=charset))
        assert reason is None and "декларация" in document["text"], charset


def test_text_is_nfc_normalised_whatever_the_input(tmp_path):
    # Vietnamese as pages often carry it: decomposed accents (NFD), which no stop word or exact duplicate matches
    text = "Mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền lợi."
    decomposed = unicodedata.normalize("NFD", text)
    assert decomposed != text
    page = f"<html><body><p>{decomposed}</p></body></html>".encode("utf-8")
    assert extract_text(_record(page))[0]["text"] == text
    assert extract_text(_record(decomposed.encode("utf-8"), content_type="text/plain"))[0]["text"] == text
    path = tmp_path / "vi.jsonl"
    path.write_text(json.dumps({"text": decomposed}) + "\n", encoding="utf-8")
    with path.open("rb") as handle:
        assert [document["text"] for document in read_jsonl(str(path), handle)] == [text]


def test_wet_conversion_records_are_text(tmp_path):
    from warcio.warcwriter import WARCWriter

    wet = tmp_path / "sample.warc.wet.gz"
    with open(wet, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for index, text in enumerate(["Première page en français.", "Zweite Seite auf Deutsch."]):
            record = writer.create_warc_record(f"https://example.org/{index}", "conversion",
                                               payload=io.BytesIO(text.encode("utf-8")),
                                               warc_content_type="text/plain")
            writer.write_record(record)
    counts, documents = _outcomes(wet)
    assert counts == {"ok": 2}
    assert documents[0]["text"] == "Première page en français." and documents[1]["url"] == "https://example.org/1"


def test_jsonl_and_parquet_inputs(tmp_path):
    jsonl = tmp_path / "docs.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "x1", "text": "Bonjour le monde", "url": "http://a"}) + "\n")
        handle.write("not json\n")
        handle.write(json.dumps({"text": ""}) + "\n")
        handle.write(json.dumps({"text": "Hallo Welt", "metadata": {"date": "2024-01-02T03:04:05Z"}}) + "\n")
        handle.write(json.dumps({"content": "Hallo Welt"}) + "\n")
        handle.write(json.dumps({"text": 42}) + "\n")
    counts, documents = _outcomes(jsonl)
    assert counts == {"ok": 2, "bad_json": 1, "empty_text": 1, "no_text_field": 2}
    # without an id, one from the text: the same whatever the path's spelling or the file's place
    assert documents[0]["id"] == "x1" and documents[1]["id"] == "xxh3-" + xxhash.xxh3_128_hexdigest(b"Hallo Welt")
    assert documents[1]["date"] == "2024-01-02T03:04:05+00:00"
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"content": ["Hola mundo", "Ciao mondo"]}), parquet)
    assert _outcomes(parquet, text_field="content")[0] == {"ok": 2}
    assert _outcomes(parquet)[0] == {"no_text_column": 1}


def test_a_bad_jsonl_line_costs_only_itself(tmp_path):
    # A line that is not UTF-8 and a text with half a surrogate pair (valid JSON, but no UTF-8 writer accepts it),
    # among enough good lines to span several 8 KB decoding chunks: every good line is kept, each bad one counted.
    lines = [json.dumps({"id": f"d{i}", "text": f"Document numéro {i} " + "texte " * 20}).encode() for i in range(400)]
    lines[100] = b'{"id": "half", "text": "emoji \\ud83d cut in half"}'
    lines[200] = '{"id": "latin1", "text": "café crème"}'.encode("latin-1")
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    counts, documents = _outcomes(path)
    assert counts == {"ok": 398, "bad_utf8": 2}
    assert [d["id"] for d in documents] == [f"d{i}" for i in range(400) if i not in (100, 200)]


def test_jsonl_edge_records_are_kept_or_counted(tmp_path):
    # a byte-order mark before the first record, an id of 0 (falsy, still the document's id), a line nested deeper
    # than the JSON parser's stack (RecursionError, not ValueError)
    lines = [b"\xef\xbb\xbf" + json.dumps({"id": "first", "text": "Premier document"}).encode(),
             json.dumps({"id": 0, "text": "Document zéro"}).encode(), b"[" * 100_000 + b"]" * 100_000,
             json.dumps({"id": "last", "text": "Dernier document"}).encode()]
    path = tmp_path / "edge.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    counts, documents = _outcomes(path)
    assert counts == {"ok": 3, "bad_json": 1}
    assert [d["id"] for d in documents] == ["first", "0", "last"]


@pytest.mark.parametrize("name", ["empty.warc.gz", "empty.jsonl", "blank.jsonl", "empty.wet"])
def test_a_file_without_records_is_counted(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\n\n" if name.startswith("blank") else b"")
    assert _outcomes(path)[0] == {"empty_file": 1}


def test_warc_resource_records_are_read_by_their_content_type(tmp_path):
    def record(content_type: str, payload: bytes) -> bytes:
        header = ("WARC/1.0\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-00000000000"
                  f"{len(payload) % 10}>\r\nWARC-Target-URI: file:///page.html\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
                  f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n")
        return header.encode() + payload + b"\r\n\r\n"

    html = "<html><body><p>Ceci est une page enregistrée par wget, sans en-tête HTTP.</p></body></html>"
    path = tmp_path / "wget.warc"
    path.write_bytes(record("text/html; charset=iso-8859-1", html.encode("latin-1"))
                     + record("image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))
    counts, documents = _outcomes(path)
    assert counts["ok"] == 1 and sum(counts.values()) == 2, counts
    assert "enregistrée par wget" in documents[0]["text"] and documents[0]["url"] == "file:///page.html"


def test_resolve_inputs_globs_manifests_and_errors(tmp_path):
    assert len(resolve_inputs([str(WARC / "*.warc.gz")])) == 5
    manifest = tmp_path / "warc.paths.gz"
    with gzip.open(manifest, "wt") as handle:
        handle.write(f"# shipped\n{WARC / 'udhr.warc.gz'}\n\n{WARC / 'clipped.warc.gz'}\n")
    assert [p.rsplit("/", 1)[1] for p in resolve_inputs([], [str(manifest)])] == ["clipped.warc.gz", "udhr.warc.gz"]
    (tmp_path / "link.warc.gz").symlink_to(WARC / "udhr.warc.gz")  # one file however it is spelled: read once
    spellings = [str(WARC / "udhr.warc.gz"), str(tmp_path / "link.warc.gz"),
                 os.path.relpath(WARC / "udhr.warc.gz"), "./" + os.path.relpath(WARC / "udhr.warc.gz")]
    assert resolve_inputs(spellings) == [str(WARC / "udhr.warc.gz")]
    # read by the path as spelled: a hub cache's data/train.jsonl links to a blob without a suffix
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "5f2b9c0e7a").write_text('{"text": "x"}\n')
    (tmp_path / "train.jsonl").symlink_to(tmp_path / "blobs" / "5f2b9c0e7a")
    assert resolve_inputs([str(tmp_path / "*.jsonl")]) == [str(tmp_path / "train.jsonl")]
    with pytest.raises(UsageError, match="matches no file"):
        resolve_inputs([str(tmp_path / "missing-*.warc.gz")])
    with pytest.raises(UsageError, match="no input"):
        resolve_inputs([])
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(UsageError, match="unknown input format"):
        resolve_inputs([str(tmp_path / "notes.docx")])
