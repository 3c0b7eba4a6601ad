"""HTML → main text, one record at a time.

In: a record dict from `inputs` (`payload` bytes, `content_type`, `charset`, `kind` "html" or "text", plus id/url/
date). Out: `(document, None)` with `text` set, or `(None, reason)`.

Charset: strict UTF-8 first, then the HTTP header's charset, then resiliparse's detector (which reads
`<meta charset>` and the bytes); strict decoding, so a wrong label falls through to the next candidate.
Extraction: resiliparse (default, fast) or trafilatura (`extractor="trafilatura"`, slower, precision-oriented like FineWeb's).
"""

from __future__ import annotations

import codecs
import unicodedata

from resiliparse.parse.encoding import detect_encoding

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml")
TEXT_TYPES = ("text/plain",)
EXTRACTORS = ("resiliparse", "trafilatura")
MAX_GARBAGE_RATIO = 0.05  # control characters / U+FFFD per character above which text is binary garbage


def decode_payload(payload: bytes, declared: str | None) -> str | None:
    """The payload as text in the first charset (UTF-8, declared, detected) that decodes it cleanly.

    UTF-8 goes first: bytes that decode as UTF-8 are almost never another encoding, while single-byte labels such as
    ISO-8859-1 decode anything, so a wrong label would silently give mojibake.
    """
    candidates = ["utf-8", declared, detect_encoding(payload[:65536])]
    wide = wide_unicode(payload, declared)
    if wide:  # ASCII in UTF-16 is valid UTF-8 too (with NULs): the byte-order mark or label goes first
        candidates = [wide, *candidates]
    for encoding in candidates:
        if not encoding:
            continue
        try:
            return payload.decode(encoding)
        except (UnicodeError, LookupError):  # UnicodeError itself: codecs such as `undefined` raise it
            continue
    return None


def wide_unicode(payload: bytes, declared: str | None) -> str | None:
    """The codec when the payload is UTF-16 or UTF-32 by its byte-order mark or its label (its NUL bytes are then
    text, not a sign of binary data), else None."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if payload.startswith(bom):
            return codec
    try:
        return declared if codecs.lookup(declared or "").name.startswith(("utf-16", "utf-32")) else None
    except LookupError:
        return None


def garbage_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:20000]
    bad = sum(1 for ch in sample if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f"))
    return bad / len(sample)


def looks_like_html(payload: bytes) -> bool:
    head = payload[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body", b"<meta", b"<!--", b"<div"))


def html_to_text(html: str, extractor: str = "resiliparse") -> str:
    if extractor == "trafilatura":
        import trafilatura

        return trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=False) or ""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True, preserve_formatting=True, alt_texts=False,
                              list_bullets=True, links=False, form_fields=False, noscript=False)


def clean_lines(text: str) -> str:
    """Strip each line and drop empty ones (extractors leave blank runs that would skew the line-based filters)."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def extract_text(record: dict, extractor: str = "resiliparse") -> tuple[dict | None, str | None]:
    """(document with `text`, None) or (None, removal reason) for one input record."""
    payload: bytes = record["payload"]
    if not payload:
        return None, "empty_payload"
    if b"\x00" in payload[:4096] and not wide_unicode(payload, record.get("charset")):
        return None, "binary_garbage"
    content_type = (record.get("content_type") or "").split(";")[0].strip().lower()
    sniffed_html = not content_type and looks_like_html(payload)
    is_html = record.get("kind") == "html" and (content_type in HTML_TYPES or sniffed_html)
    is_text = record.get("kind") == "text" or content_type in TEXT_TYPES
    if not (is_html or is_text):
        return None, "not_html"
    decoded = decode_payload(payload, record.get("charset"))
    if decoded is None:
        return None, "bad_charset"
    if garbage_ratio(decoded) > MAX_GARBAGE_RATIO:
        return None, "binary_garbage"
    try:
        text = html_to_text(decoded, extractor) if is_html else decoded
    except Exception:  # an extractor bug on one odd page must not stop the job
        return None, "extraction_error"
    # NFC, as trafilatura returns and FineWeb-2's filters saw: decomposed accents (Vietnamese pages often have them)
    # would miss every stop word, and the same text in two normal forms would escape exact deduplication.
    text = unicodedata.normalize("NFC", clean_lines(text))
    if not text:
        return None, "empty_text"
    document = {key: value for key, value in record.items() if key not in ("payload", "content_type", "charset", "kind")}
    document["text"] = text
    return document, None
