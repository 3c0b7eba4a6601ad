"""Polite HTTP fetching for the crawler: one URL in, one `FetchResult` (an outcome and WARC records) out.

No Beam here, so every rule is testable on its own against a local server:

- only http and https, and only well-formed URLs (`bad_scheme`, `invalid_url`);
- robots.txt read once per origin (scheme://host:port, RFC 9309's scope) with `urllib.robotparser`, its Crawl-delay
  honoured up to a cap; a robots.txt that answers 401/403/429, or cannot be fetched (5xx, timeout), forbids the origin
  (`robots_unavailable`), a 404 allows everything;
- successive requests to one origin start at least `delay_s` apart (`HostThrottle`), retries included;
- timeouts, connection errors, 429 and 5xx retried with exponential backoff (`backoff_s`, 2×, 4×… capped), or
  after the server's Retry-After when that is longer (given up at once when it is beyond the cap);
- bodies capped at `max_bytes` (Content-Length checked first, then while streaming) and at `read_timeout_s` in total;
- redirects followed by hand, each hop re-checked (scheme, robots, throttle), at most `max_redirects`, loops cut;
- a clear User-Agent, sent with every request and matched against robots.txt.

A successful (2xx) fetch becomes a WARC request + response record pair (warcio, gzip members, WARC-Date and
WARC-Target-URI of the final URL as sent, the body stored as it came over the wire) that `mmbert corpus build`
reads. Anything unforeseen while fetching one URL is that URL's `fetch_error`, never the crawl's end.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import io
import logging
import time
import urllib.parse
import urllib.robotparser
from datetime import datetime, timezone
from typing import Container

import requests
import urllib3
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from corpus.crawl_policy import FETCHED, CrawlPolicy

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ROBOTS_MAX_BYTES = 500 * 1024  # what Google reads of a robots.txt (RFC 9309 asks for at least 500 KiB)
# urllib3 undoes chunked transfer coding, so the stored body is no longer chunked: drop the header that says it is.
HOP_BY_HOP_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive"})


@dataclasses.dataclass
class FetchResult:
    url: str  # as listed
    outcome: str  # FETCHED or one of SKIP_REASONS
    final_url: str | None = None
    status: int | None = None
    warc_records: bytes = b""  # gzip members (request + response) when fetched
    redirects: int = 0  # redirect hops followed
    retries: int = 0
    bytes: int = 0  # body bytes stored
    detail: str = ""  # a human-readable why, for logs


def url_origin(url: str) -> str | None:
    """`scheme://host:port` (the scope of robots.txt and of the rate limit), or None for a URL that has none."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    port = port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    return f"{parts.scheme.lower()}://{host}:{port}"


def url_problem(url: str) -> str | None:
    """`bad_scheme` or `invalid_url` for a URL the crawler must not fetch, None for a fetchable one."""
    if "\ufffd" in url:  # a line of the URL list that was not UTF-8
        return "invalid_url"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "invalid_url"
    if parts.scheme.lower() not in ("http", "https"):
        return "bad_scheme" if parts.scheme else "invalid_url"
    return None if url_origin(url) else "invalid_url"


class HostThrottle:
    """Spaces the starts of requests to one origin at least `delay_s` apart."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self._last_start: float | None = None

    def wait(self, at_least_s: float = 0.0) -> None:
        """Block until the next request may start: `delay_s` after the previous one, and `at_least_s` from now."""
        now = time.monotonic()
        ready = now + at_least_s
        if self._last_start is not None:
            ready = max(ready, self._last_start + self.delay_s)
        if ready > now:
            time.sleep(ready - now)
        self._last_start = time.monotonic()


class _Skip(Exception):
    """Ends one fetch early with an outcome from SKIP_REASONS."""

    def __init__(self, outcome: str, detail: str = "", status: int | None = None):
        super().__init__(detail)
        self.outcome, self.detail, self.status = outcome, detail, status


@dataclasses.dataclass
class _Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    request_headers: list[tuple[str, str]]
    date: str
    url: str = ""  # as sent: percent-encoded (a listed `/café` goes out as `/caf%C3%A9`)


class PoliteFetcher:
    """Fetches URLs one at a time under a `CrawlPolicy`, remembering robots.txt and throttles per origin."""

    def __init__(self, policy: CrawlPolicy, max_origins: int = 4096):
        self.policy = policy
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": policy.user_agent, "Accept-Encoding": "identity"})
        # robots.txt only (pages follow redirects by hand): RFC 9309 asks for at least five hops (http → https …).
        self.session.max_redirects = max(5, policy.max_redirects)
        # Bounded so a worker crawling millions of hosts does not keep every robots.txt forever.
        self._robots: collections.OrderedDict[str, urllib.robotparser.RobotFileParser | None] = (
            collections.OrderedDict()
        )
        self._throttles: collections.OrderedDict[str, HostThrottle] = collections.OrderedDict()
        self._max_origins = max_origins

    def close(self) -> None:
        self.session.close()

    def fetch(self, url: str, already_fetched: Container[str] = ()) -> FetchResult:
        """Fetch `url`, following redirects; a hop onto a URL in `already_fetched` ends as `duplicate`, unrequested."""
        result = FetchResult(url=url, outcome=FETCHED)
        try:
            problem = url_problem(url)
            if problem:
                raise _Skip(problem, f"not an http(s) URL: {url!r}")
            current, seen = url, {url}
            while True:
                if current in already_fetched:
                    raise _Skip("duplicate", f"{current} is already fetched")
                self._check_robots(current)
                response = self._get_with_retries(current, result)
                result.status = response.status
                if response.status in REDIRECT_STATUSES:
                    current = self._next_hop(current, response, seen, result)
                    continue
                if not 200 <= response.status < 300:
                    raise _Skip("http_error", f"HTTP {response.status}", response.status)
                result.final_url = current
                result.bytes = len(response.body)
                result.warc_records = warc_records(current, response)
                return result
        except _Skip as skip:
            result.outcome, result.detail = skip.outcome, skip.detail
            result.status = skip.status if skip.status is not None else result.status
        except Exception as error:  # noqa: BLE001 - one URL that breaks something unforeseen must not end the crawl
            log.warning("fetching %s failed unexpectedly", url, exc_info=True)
            result.outcome, result.detail = "fetch_error", f"{type(error).__name__}: {error}"
        result.warc_records, result.bytes = b"", 0
        return result

    # -- robots.txt -----------------------------------------------------------------------------------------------
    def _check_robots(self, url: str) -> None:
        origin = url_origin(url)
        parser = self._robots_for(origin)
        if parser is None:
            raise _Skip("robots_unavailable", f"robots.txt of {origin} could not be read")
        if not parser.can_fetch(self.policy.user_agent, url):
            raise _Skip("robots_disallowed", f"robots.txt of {origin} disallows {url}")

    def _robots_for(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        if origin in self._robots:
            self._robots.move_to_end(origin)
            return self._robots[origin]
        parser: urllib.robotparser.RobotFileParser | None = urllib.robotparser.RobotFileParser()
        robots_url = f"{origin}/robots.txt"
        parser.set_url(robots_url)
        self._throttle(origin).wait()
        try:
            with self.session.get(robots_url, timeout=self._timeouts(), stream=True) as response:
                if response.status_code in (401, 403, 429) or response.status_code >= 500:
                    parser = None  # RFC 9309: unreachable robots.txt means "do not crawl"; 429 asks to stay away
                elif response.status_code >= 400:
                    parser.allow_all = True
                else:
                    deadline = time.monotonic() + self.policy.read_timeout_s
                    body, in_time = _read_within(response.raw, ROBOTS_MAX_BYTES, deadline, decode_content=True)
                    if in_time:
                        text = body[:ROBOTS_MAX_BYTES].decode("utf-8-sig", errors="replace")  # a BOM is no rule
                        parser.parse(text.splitlines())
                    else:
                        parser = None  # a robots.txt that never finishes arriving: unreachable
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            parser = None
        if parser is not None:
            crawl_delay = parser.crawl_delay(self.policy.user_agent)
            if crawl_delay:
                throttle = self._throttle(origin)
                throttle.delay_s = max(self.policy.delay_s, min(float(crawl_delay), self.policy.max_crawl_delay_s))
        self._robots[origin] = parser
        if len(self._robots) > self._max_origins:
            self._robots.popitem(last=False)
        return parser

    # -- requests ---------------------------------------------------------------------------------------------------
    def _throttle(self, origin: str) -> HostThrottle:
        if origin not in self._throttles:
            self._throttles[origin] = HostThrottle(self.policy.delay_s)
            if len(self._throttles) > self._max_origins:
                self._throttles.popitem(last=False)
        self._throttles.move_to_end(origin)
        return self._throttles[origin]

    def _timeouts(self) -> tuple[float, float]:
        return (self.policy.connect_timeout_s, self.policy.read_timeout_s)

    def _get_with_retries(self, url: str, result: FetchResult) -> _Response:
        throttle = self._throttle(url_origin(url))
        backoff = 0.0
        for attempt in range(self.policy.max_retries + 1):
            throttle.wait(at_least_s=backoff)
            retryable: _Skip
            retry_after = 0.0
            try:
                response = self._get_once(url)
                if response.status not in RETRY_STATUSES:
                    return response
                retryable = _Skip("http_error", f"HTTP {response.status}", response.status)
                retry_after = retry_after_seconds(response.headers)
                if retry_after > self.policy.max_backoff_s:  # come back much later: not within this crawl
                    raise _Skip("http_error", f"HTTP {response.status}, Retry-After {retry_after:.0f} s > "
                                f"{self.policy.max_backoff_s:g} s", response.status)
            except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as error:
                retryable = _Skip("timeout", f"{type(error).__name__}: {error}")
            except (requests.ConnectionError, urllib3.exceptions.ProtocolError, ConnectionError) as error:
                retryable = _Skip("connection_error", f"{type(error).__name__}: {error}")
            if attempt == self.policy.max_retries:
                raise retryable
            result.retries += 1
            # The server's Retry-After (429/503), when longer, wins over our backoff; both capped.
            backoff = min(max(self.policy.backoff_s * 2**attempt, retry_after), self.policy.max_backoff_s)
        raise AssertionError("unreachable")

    def _get_once(self, url: str) -> _Response:
        date = datetime_to_iso_date(datetime.now(timezone.utc))
        started = time.monotonic()
        try:
            response = self.session.get(url, timeout=self._timeouts(), stream=True, allow_redirects=False)
        except ValueError as error:  # requests parses a redirect's Location even when not following it
            raise _Skip("invalid_url", f"{type(error).__name__}: {error}") from None
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.policy.max_bytes:
                raise _Skip("too_large", f"Content-Length {declared} > {self.policy.max_bytes}", response.status_code)
            # The raw stream keeps any Content-Encoding, so the stored body matches the stored headers.
            body, in_time = _read_within(response.raw, self.policy.max_bytes, started + self.policy.read_timeout_s,
                                         decode_content=False)
            if len(body) > self.policy.max_bytes:
                raise _Skip("too_large", f"body over {self.policy.max_bytes} bytes", response.status_code)
            if not in_time:
                raise _Skip("timeout", f"body took over {self.policy.read_timeout_s}s", response.status_code)
            return _Response(
                status=response.status_code,
                reason=response.reason or "",
                headers=list(response.raw.headers.iteritems()),
                body=body,
                request_headers=list(response.request.headers.items()),
                date=date,
                url=response.request.url,
            )

    def _next_hop(self, current: str, response: _Response, seen: set[str], result: FetchResult) -> str:
        location = next((value for key, value in response.headers if key.lower() == "location"), None)
        if not location:
            raise _Skip("http_error", f"HTTP {response.status} without Location", response.status)
        try:
            target = urllib.parse.urldefrag(urllib.parse.urljoin(current, location.strip())).url
        except ValueError:  # e.g. a malformed IPv6 host: one bad header must not stop the crawl
            raise _Skip("invalid_url", f"redirect to {location!r}", response.status) from None
        problem = url_problem(target)
        if problem:
            raise _Skip(problem, f"redirect to {target!r}", response.status)
        if target in seen:
            raise _Skip("redirect_loop", f"redirect back to {target}", response.status)
        if result.redirects >= self.policy.max_redirects:
            raise _Skip("too_many_redirects", f"more than {self.policy.max_redirects} redirects", response.status)
        seen.add(target)
        result.redirects += 1
        return target


def _read_within(raw, limit: int, deadline: float, decode_content: bool) -> tuple[bytes, bool]:
    """(up to `limit` + 1 bytes of a body, whether it all came before `deadline` (time.monotonic())). One socket
    read at a time (`read1`), so a server dripping a byte now and then cannot hold a worker past the deadline."""
    body = io.BytesIO()
    while body.tell() <= limit:
        chunk = raw.read1(64 * 1024, decode_content=decode_content)
        if not chunk:
            return body.getvalue(), True
        body.write(chunk)
        if time.monotonic() > deadline:
            return body.getvalue(), False
    return body.getvalue(), True


def retry_after_seconds(headers: list[tuple[str, str]], now: datetime | None = None) -> float:
    """A Retry-After header in seconds, from either of its forms (delta seconds or an HTTP date), else 0."""
    value = next((v for k, v in headers if k.lower() == "retry-after"), "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def warc_records(url: str, response: _Response) -> bytes:
    """A WARC request + response record pair for one fetched URL, as concatenated gzip members. The URL and request
    line are the ones sent (percent-encoded ASCII, as WARC-Target-URI must be)."""
    url = response.url or url
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    parts = urllib.parse.urlsplit(url)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    request_headers = [("Host", parts.netloc), *[(k, v) for k, v in response.request_headers if k.lower() != "host"]]
    request = writer.create_warc_record(
        url,
        "request",
        payload=io.BytesIO(b""),
        length=0,
        http_headers=StatusAndHeaders(f"GET {target} HTTP/1.1", request_headers, is_http_request=True),
        warc_headers_dict={"WARC-Date": response.date},
    )
    kept_headers = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP_HEADERS]
    record = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(response.body),
        length=len(response.body),
        http_headers=StatusAndHeaders(f"{response.status} {response.reason}", kept_headers, protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Date": response.date},
    )
    request.rec_headers.add_header("WARC-Concurrent-To", record.rec_headers.get_header("WARC-Record-ID"))
    writer.write_record(request)
    writer.write_record(record)
    return buffer.getvalue()
