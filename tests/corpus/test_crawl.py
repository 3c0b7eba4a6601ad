"""The polite crawler against HTTP servers that this file starts on 127.0.0.1 (never any other address).

Each rule of `corpus.fetch` is checked on what the server saw (which paths, when), and the Beam job end to end on
what it wrote: WARC files that warcio and fastwarc read, and crawl_stats.json counting every URL under its outcome.
"""

from __future__ import annotations

import gzip
import io
import json
import time

import pytest
from fastwarc.warc import ArchiveIterator as FastArchiveIterator
from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator

from corpus.crawl import run_crawl
from corpus.crawl_policy import FETCHED
from corpus.fetch import HostThrottle, PoliteFetcher, url_origin, url_problem
from mmbert.errors import UsageError

from tests.corpus.crawl_site import PAGE, TestSite, fast_policy, gaps


# -- pure rules ------------------------------------------------------------------------------------------------------
def test_only_http_and_https_urls_are_fetchable():
    assert url_problem("http://example.org/a") is None
    assert url_problem("HTTPS://Example.org:8443/") is None
    assert url_problem("ftp://example.org/file") == "bad_scheme"
    assert url_problem("file:///etc/passwd") == "bad_scheme"
    assert url_problem("javascript:alert(1)") == "bad_scheme"
    assert url_problem("example.org/no-scheme") == "invalid_url"
    assert url_problem("http://") == "invalid_url"
    assert url_problem("http://[::1") == "invalid_url"


def test_origin_is_scheme_host_and_port():
    assert url_origin("http://Example.org/a?b") == "http://example.org:80"
    assert url_origin("https://example.org/") == "https://example.org:443"
    assert url_origin("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert url_origin("http://[::1]:8080/x") == "http://[::1]:8080"  # robots.txt lives at a URL that parses


def test_throttle_spaces_request_starts():
    throttle, starts = HostThrottle(0.1), []
    for _ in range(3):
        throttle.wait()
        starts.append(time.monotonic())
    assert all(gap >= 0.099 for gap in gaps(starts))


def test_unusable_policy_is_reported_by_name():
    problems = fast_policy(max_bytes=0, delay_s=-1).check()
    assert any("max_bytes" in p for p in problems) and any("delay_s" in p for p in problems)
    problems = fast_policy(delay_s=float("nan"), read_timeout_s=float("inf")).check()
    assert any("delay_s must be a finite number" in p for p in problems)
    assert any("read_timeout_s" in p for p in problems)
    for agent in (" lead", "bot\nX: y", "bot😀"):  # header values requests would refuse on every URL
        assert any("user_agent must be printable ASCII" in p for p in fast_policy(user_agent=agent).check()), agent


# -- the fetcher against a local server ------------------------------------------------------------------------------
def test_robots_disallow_is_honoured_and_robots_read_once(serve):
    site = TestSite()
    base = serve(site)
    fetcher = PoliteFetcher(fast_policy())
    assert fetcher.fetch(f"{base}/page/1").outcome == FETCHED
    blocked = fetcher.fetch(f"{base}/private/secret")
    assert blocked.outcome == "robots_disallowed" and blocked.warc_records == b""
    assert fetcher.fetch(f"{base}/page/2").outcome == FETCHED
    assert site.paths() == ["/robots.txt", "/page/1", "/page/2"]  # /private never requested, robots.txt once

    rude = PoliteFetcher(fast_policy(user_agent="RudeBot/1.0"))  # the group for this agent disallows everything
    assert rude.fetch(f"{base}/page/3").outcome == "robots_disallowed"
    assert "/page/3" not in site.paths()


def test_unreadable_robots_txt_forbids_the_host(serve):
    site = TestSite(robots_status=503)
    base = serve(site)
    result = PoliteFetcher(fast_policy()).fetch(f"{base}/page/1")
    assert result.outcome == "robots_unavailable"
    assert site.paths() == ["/robots.txt"]


def test_missing_robots_txt_allows_everything(serve):
    site = TestSite(robots_status=404)
    base = serve(site)
    assert PoliteFetcher(fast_policy()).fetch(f"{base}/private/ok").outcome == FETCHED


def test_rate_limit_spaces_requests_to_one_host(serve):
    site = TestSite()
    base = serve(site)
    fetcher = PoliteFetcher(fast_policy(delay_s=0.2))
    for n in range(4):
        assert fetcher.fetch(f"{base}/page/{n}").outcome == FETCHED
    assert len(site.log) == 5  # robots.txt + 4 pages
    # Server-side times jitter by a few ms (connection set-up); unthrottled, the gaps would be ~1 ms.
    assert min(gaps(site.times())) >= 0.15


def test_robots_crawl_delay_slows_the_host_down(serve):
    site = TestSite(robots=b"User-agent: *\nCrawl-delay: 1\n")
    base = serve(site)
    fetcher = PoliteFetcher(fast_policy(delay_s=0.0))
    for n in range(2):
        assert fetcher.fetch(f"{base}/page/{n}").outcome == FETCHED
    assert gaps(site.times())[-1] >= 0.9  # between the two pages: robots.txt's 1 s, not the policy's 0 s


def test_5xx_is_retried_with_backoff_then_succeeds(serve):
    site = TestSite()
    base = serve(site)
    result = PoliteFetcher(fast_policy(backoff_s=0.2, max_retries=3)).fetch(f"{base}/flaky")
    assert result.outcome == FETCHED and result.status == 200 and result.retries == 2
    flaky_times = [t for path, t in site.log if path == "/flaky"]
    assert len(flaky_times) == 3
    first_wait, second_wait = gaps(flaky_times)
    assert first_wait >= 0.15 and second_wait >= 0.35  # 0.2 s, then doubled (lower bounds: a busy machine adds)


def test_retry_after_is_honoured(serve):
    site = TestSite()
    base = serve(site)
    result = PoliteFetcher(fast_policy(backoff_s=0.05)).fetch(f"{base}/busy")
    assert result.outcome == FETCHED and result.retries == 1
    assert gaps([t for path, t in site.log if path == "/busy"])[0] >= 0.9  # the server's 1 s, not our 0.05 s


def test_retries_are_bounded(serve):
    site = TestSite()
    base = serve(site)
    result = PoliteFetcher(fast_policy(max_retries=1)).fetch(f"{base}/flaky")
    assert result.outcome == "http_error" and result.status == 503 and result.retries == 1
    assert site.hits["/flaky"] == 2


def test_timeout_is_retried_then_counted(serve):
    site = TestSite()
    base = serve(site)
    result = PoliteFetcher(fast_policy(read_timeout_s=0.3, max_retries=1)).fetch(f"{base}/slow")
    assert result.outcome == "timeout" and result.retries == 1
    assert site.hits["/slow"] == 2


def test_size_cap_holds_with_and_without_content_length(serve):
    site = TestSite()
    base = serve(site)
    fetcher = PoliteFetcher(fast_policy(max_bytes=50_000))
    for path in ("/big", "/big-unannounced"):
        result = fetcher.fetch(f"{base}{path}")
        assert result.outcome == "too_large", path
        assert result.warc_records == b""
    assert PoliteFetcher(fast_policy(max_bytes=300_000)).fetch(f"{base}/big-unannounced").bytes == 200_000


def test_redirects_are_followed_and_bounded(serve):
    site = TestSite()
    base = serve(site)
    fetcher = PoliteFetcher(fast_policy(max_redirects=3))
    chained = fetcher.fetch(f"{base}/chain/2")
    assert chained.outcome == FETCHED and chained.redirects == 2 and chained.final_url == f"{base}/chain/0"
    assert fetcher.fetch(f"{base}/chain/10").outcome == "too_many_redirects"
    assert site.hits["/chain/6"] == 0  # stopped after 3 hops: /chain/10, 9, 8, 7 requested, no more
    looped = fetcher.fetch(f"{base}/loop/a")
    assert looped.outcome == "redirect_loop"
    assert site.hits["/loop/a"] == 1 and site.hits["/loop/b"] == 1


def test_redirect_to_another_scheme_or_an_unusable_url_is_rejected(serve):
    base = serve(TestSite())
    fetcher = PoliteFetcher(fast_policy())
    assert fetcher.fetch(f"{base}/to-ftp").outcome == "bad_scheme"
    assert fetcher.fetch(f"{base}/bad-location").outcome == "invalid_url"  # urljoin raised: counted, not fatal
    assert fetcher.fetch(f"{base}/bad-port").outcome == "invalid_url"


def test_a_body_dripping_in_is_cut_at_the_read_timeout(serve):
    # Every byte arrives well inside the socket timeout; the whole body would take 4 s.
    base = serve(TestSite())
    started = time.monotonic()
    result = PoliteFetcher(fast_policy(read_timeout_s=0.5, max_retries=0)).fetch(f"{base}/drip")
    assert result.outcome == "timeout" and time.monotonic() - started < 3.5  # the body alone would take 4 s


def test_non_http_url_is_rejected_without_a_request(serve):
    site = TestSite()
    serve(site)
    assert PoliteFetcher(fast_policy()).fetch("ftp://127.0.0.1/file.txt").outcome == "bad_scheme"
    assert site.log == []


def test_fetched_page_is_a_readable_warc_request_response_pair(serve):
    base = serve(TestSite())
    result = PoliteFetcher(fast_policy(user_agent="TestCrawler/1.0")).fetch(f"{base}/page/7")
    records, payloads = [], []
    for record in ArchiveIterator(io.BytesIO(result.warc_records)):  # a record's stream is gone once we move on
        records.append(record)
        payloads.append(record.content_stream().read())
    assert [r.rec_type for r in records] == ["request", "response"]
    request, response = records
    assert request.http_headers.get_header("User-Agent") == "TestCrawler/1.0"
    assert response.rec_headers.get_header("WARC-Target-URI") == f"{base}/page/7"
    assert response.rec_headers.get_header("WARC-Date").endswith("Z")
    assert request.rec_headers.get_header("WARC-Concurrent-To") == response.rec_headers.get_header("WARC-Record-ID")
    assert response.http_headers.get_statuscode() == "200"
    assert payloads == [b"", PAGE.format(n=7).encode()]


def test_a_url_outside_ascii_is_fetched_and_stored_as_sent(serve):
    base = serve(TestSite())
    result = PoliteFetcher(fast_policy()).fetch(f"{base}/café?x=1 2")
    assert result.outcome == FETCHED, result.detail
    records = list(ArchiveIterator(io.BytesIO(result.warc_records)))
    assert {r.rec_headers.get_header("WARC-Target-URI") for r in records} == {f"{base}/caf%C3%A9?x=1%202"}
    assert records[0].http_headers.protocol == "GET" and records[0].http_headers.statusline.startswith(
        "/caf%C3%A9?x=1%202 ")


def test_an_unforeseen_error_costs_one_url_not_the_crawl(serve, monkeypatch):
    base = serve(TestSite())
    fetcher = PoliteFetcher(fast_policy())
    monkeypatch.setattr("corpus.fetch.warc_records", lambda url, response: 1 / 0)
    result = fetcher.fetch(f"{base}/page/1")
    assert result.outcome == "fetch_error" and "ZeroDivisionError" in result.detail and result.warc_records == b""


def test_a_compressed_page_reaches_the_corpus_decoded(serve, tmp_path):
    from corpus.extract import extract_text
    from corpus.inputs import read_records

    base = serve(TestSite())
    result = PoliteFetcher(fast_policy()).fetch(f"{base}/gzipped")
    assert result.outcome == FETCHED
    (tmp_path / "page.warc.gz").write_bytes(result.warc_records)
    records = [r for r in read_records(str(tmp_path / "page.warc.gz")) if isinstance(r, dict)]
    document, reason = extract_text(records[0])
    assert reason is None and "Article gzipped" in document["text"]


@pytest.mark.parametrize("site, outcome", [
    (TestSite(robots=b"\xef\xbb\xbfUser-agent: *\nDisallow: /\n"), "robots_disallowed"),  # a BOM is no rule
    (TestSite(robots_status=429), "robots_unavailable"),  # asked to stay away: not "everything allowed"
])
def test_robots_txt_with_a_bom_or_a_429(serve, site, outcome):
    assert PoliteFetcher(fast_policy()).fetch(f"{serve(site)}/page/1").outcome == outcome


def test_a_retry_after_beyond_the_backoff_cap_ends_the_url_at_once(serve):
    site = TestSite()
    base = serve(site)
    started = time.monotonic()
    result = PoliteFetcher(fast_policy(max_backoff_s=5.0)).fetch(f"{base}/later")
    assert result.outcome == "http_error" and "Retry-After" in result.detail
    assert site.paths().count("/later") == 1 and time.monotonic() - started < 4.5  # not the 5 s cap


def test_retry_after_in_both_forms():
    from datetime import datetime, timezone

    from corpus.fetch import retry_after_seconds

    now = datetime(2037, 10, 21, 7, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds([("Retry-After", "120")], now) == 120
    assert retry_after_seconds([("retry-after", "Wed, 21 Oct 2037 07:28:00 GMT")], now) == 28 * 60
    assert retry_after_seconds([("Retry-After", "soon")], now) == 0


# -- the Beam job end to end -----------------------------------------------------------------------------------------
def test_crawl_job_writes_warcs_and_stats(serve, tmp_path):
    first, second = TestSite(), TestSite()
    a, b = serve(first), serve(second)
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "# two hosts, a duplicate, a blank line, a disallowed page, a bad scheme, a 404\n"
        + "\n".join([f"{a}/page/{n}" for n in range(4)] + [f"{b}/page/{n}" for n in range(4)])
        + f"\n{a}/page/0\n\n{a}/private/x\nftp://127.0.0.1/file.txt\n{b}/missing\n{b}/chain/1\n"
    )
    with urls.open("ab") as handle:  # and a line that is not UTF-8: an invalid URL, not a failed job
        handle.write(f"{a}/caf".encode() + b"\xe9\n")
    out = tmp_path / "crawl"
    stats = run_crawl(str(urls), str(out), fast_policy(delay_s=0.2), num_shards=2, num_workers=2)

    assert (out / "_SUCCESS").exists()
    assert json.loads((out / "crawl_stats.json").read_text()) == stats
    assert stats["urls"] == 13
    assert {k: v for k, v in stats["outcomes"].items() if v} == {
        "fetched": 9, "robots_disallowed": 1, "bad_scheme": 1, "http_error": 1, "invalid_url": 1,
    }
    assert stats["events"]["redirects"] == 1
    assert stats["parameters"]["policy"]["delay_s"] == 0.2 and stats["parameters"]["runner"] == "DirectRunner"

    warc_files = sorted(out.glob("*.warc.gz"))
    assert [p.name for p in warc_files] == ["crawl-00000-of-00002.warc.gz", "crawl-00001-of-00002.warc.gz"]
    uris, bodies = [], {}
    for path in warc_files:
        with open(path, "rb") as handle:
            for record in FastArchiveIterator(handle, record_types=WarcRecordType.response):
                uri = record.headers["WARC-Target-URI"]
                assert record.http_headers.status_code == 200
                uris.append(uri)
                bodies[uri] = record.reader.read()
        with gzip.open(path) as handle:  # concatenated gzip members: one gzip stream for plain tools too
            assert handle.read().startswith(b"WARC/1.")
    expected = {f"{host}/page/{n}" for host in (a, b) for n in range(4)} | {f"{b}/chain/0"}
    assert sorted(uris) == sorted(expected)  # each page once, duplicates fetched once
    assert bodies[f"{a}/page/3"] == PAGE.format(n=3).encode()  # fastwarc parsed the HTTP headers off

    from corpus.inputs import read_records  # what `mmbert corpus build` reads

    read = [item for path in warc_files for item in read_records(str(path))]
    documents = [item for item in read if isinstance(item, dict)]
    assert sorted(d["url"] for d in documents) == sorted(expected)
    assert all(d["kind"] == "html" and d["charset"] == "utf-8" and d["date"] for d in documents)
    assert {item.reason for item in read if not isinstance(item, dict)} == {"not_response"}  # the request records
    for site in (first, second):  # per-host rate limit inside the Beam job
        assert min(gaps(site.times())) >= 0.15
    assert "/private/x" not in first.paths()
    (a_start, a_end), (b_start, b_end) = [(site.times()[0], site.times()[-1]) for site in (first, second)]
    assert a_start < b_end and b_start < a_end  # the two hosts were crawled at the same time (num_workers=2)


def test_each_page_is_stored_once_every_shard_written_and_an_empty_output_used(serve, tmp_path):
    site = TestSite()
    base = serve(site)
    urls = tmp_path / "urls.txt"  # a byte-order mark, fragments of one page, a redirect onto a listed page
    urls.write_bytes(f"\ufeff{base}/page/1#top\n{base}/page/1#bottom\n{base}/to-page-1\n{base}/missing\n".encode())
    out = tmp_path / "crawl"
    out.mkdir()  # made beforehand, empty: used, not refused after the work
    stats = run_crawl(str(urls), str(out), fast_policy(), num_shards=3, num_workers=1)
    assert {k: v for k, v in stats["outcomes"].items() if v} == {"fetched": 1, "duplicate": 1, "http_error": 1}
    assert site.paths().count("/page/1") == 1
    assert sorted(p.name for p in out.glob("*.warc.gz")) == [f"crawl-0000{n}-of-00003.warc.gz" for n in range(3)]
    uris = [r.rec_headers.get_header("WARC-Target-URI") for path in out.glob("*.warc.gz")
            for r in ArchiveIterator(path.open("rb")) if r.rec_type == "response"]
    assert uris == [f"{base}/page/1"]


def test_crawl_refuses_unusable_arguments_before_writing(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/page\n")
    with pytest.raises(UsageError, match="no such file"):
        run_crawl(str(tmp_path / "missing.txt"), str(tmp_path / "out"), fast_policy())
    with pytest.raises(UsageError, match="max_bytes"):
        run_crawl(str(urls), str(tmp_path / "out"), fast_policy(max_bytes=0))
    with pytest.raises(UsageError, match="--num-files"):
        run_crawl(str(urls), str(tmp_path / "out"), fast_policy(), num_shards=0)
    with pytest.raises(UsageError, match="is a directory"):
        run_crawl(str(tmp_path), str(tmp_path / "out"), fast_policy())
    assert not (tmp_path / "out").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="--overwrite"):
        run_crawl(str(urls), str(taken), fast_policy())
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_cli_crawls_and_refuses_to_overwrite(serve, tmp_path, capsys):
    from mmbert.cli import main

    base = serve(TestSite())
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/page/1\n{base}/page/2\n{base}/private/3\n")
    out = tmp_path / "crawl"
    argv = ["corpus", "crawl", "--urls", str(urls), "--output", str(out), "--delay", "0.05",
            "--pipeline-options=--direct_num_workers=1"]  # the shared runner flags of mmbert.beam
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "crawled 3 URLs: fetched 2; skipped robots_disallowed 1" in printed
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "crawl-00000-of-00001.warc.gz", "crawl_stats.json"]
    assert main(argv) == 2  # not empty, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--retries", "-1"]) == 2
    assert "--retries (max_retries must be >= 0, got -1)" in capsys.readouterr().err
    assert (out / "_SUCCESS").exists()  # the refused runs left the earlier output alone
