"""The crawl's settings and its outcomes: plain data, cheap to import (the CLI reads the defaults for --help).

`CrawlPolicy` says how politely to fetch; every URL ends in exactly one of `OUTCOMES`, which become the counters of
crawl_stats.json. The rules that apply them are in `corpus.fetch`.
"""

from __future__ import annotations

import dataclasses
import math

from mmbert import __version__

DEFAULT_USER_AGENT = f"mmbert-crawler/{__version__} (multilingual research corpus; honours robots.txt)"

# Every URL ends in exactly one of these; `FETCHED` is the only one that writes WARC records.
FETCHED = "fetched"
SKIP_REASONS = (
    "invalid_url",
    "bad_scheme",
    "robots_disallowed",
    "robots_unavailable",
    "timeout",
    "connection_error",
    "too_large",
    "http_error",
    "too_many_redirects",
    "redirect_loop",
    "duplicate",  # its final URL (after redirects) is another listed URL's: stored once
    "fetch_error",  # anything else that went wrong with this URL alone: counted, the crawl goes on
)
OUTCOMES = (FETCHED, *SKIP_REASONS)


@dataclasses.dataclass(frozen=True)
class CrawlPolicy:
    """How politely to crawl; every limit is per request to one origin."""

    user_agent: str = DEFAULT_USER_AGENT
    delay_s: float = 1.0  # minimum time between the starts of two requests to one origin
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0  # per socket read, and for a whole body
    max_retries: int = 3
    backoff_s: float = 1.0  # first wait before a retry; doubles each time
    max_backoff_s: float = 60.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    max_crawl_delay_s: float = 30.0  # a robots.txt Crawl-delay is honoured up to this

    def check(self) -> list[str]:
        """The problems with these settings, as messages naming the option (empty when usable)."""
        problems = []
        for name in ("delay_s", "backoff_s", "max_backoff_s", "max_crawl_delay_s", "connect_timeout_s",
                     "read_timeout_s"):
            if not math.isfinite(getattr(self, name)):  # nan passes every comparison; inf sleeps for ever
                problems.append(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("delay_s", "backoff_s", "max_backoff_s", "max_crawl_delay_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("connect_timeout_s", "read_timeout_s", "max_bytes"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_retries", "max_redirects"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.user_agent.strip():
            problems.append("user_agent must not be empty")
        elif (self.user_agent != self.user_agent.strip() or not self.user_agent.isprintable()
              or not self.user_agent.isascii()):  # an HTTP header value: requests would refuse it on every URL
            problems.append(f"user_agent must be printable ASCII without surrounding space, got {self.user_agent!r}")
        return problems
