"""A local HTTP site for the crawler's tests: what it serves (robots.txt, pages, redirects, slow, big, flaky and
compressed responses) and a log of every request it received. It binds 127.0.0.1 only."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections import defaultdict

from corpus.crawl_policy import CrawlPolicy

ROBOTS = b"User-agent: *\nDisallow: /private\n\nUser-agent: rudebot\nDisallow: /\n"
PAGE = ("<html><head><title>Page {n}</title></head>"
        "<body><p>Article {n}. Everyone has the right to life.</p></body></html>")


class TestSite:
    """What one local server serves, and a log of every request it received (path, monotonic start time)."""

    __test__ = False  # not a test class

    def __init__(self, robots_status: int = 200, robots: bytes = ROBOTS):
        self.robots_status, self.robots = robots_status, robots
        self.log: list[tuple[str, float]] = []
        self.hits: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def paths(self) -> list[str]:
        return [path for path, _ in self.log]

    def times(self) -> list[float]:
        return [t for _, t in self.log]


def make_handler(site: TestSite):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def send(self, status: int, body: bytes = b"", headers: dict | None = None, length: bool = True):
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with site.lock:
                site.log.append((self.path, time.monotonic()))
                site.hits[self.path] += 1
                hits = site.hits[self.path]
            path = self.path
            if path == "/robots.txt":
                self.send(site.robots_status, site.robots if site.robots_status == 200 else b"",
                          headers={"Content-Type": "text/plain"})
            elif path.startswith("/page/") or path.startswith("/private/"):
                n = path.rsplit("/", 1)[1]
                self.send(200, PAGE.format(n=n).encode())
            elif path == "/busy":  # 429 once, asking for 1 s
                self.send(429, b"slow down", headers={"Retry-After": "1"}) if hits == 1 else self.send(200, b"ok")
            elif path == "/flaky":  # fails twice, then works
                self.send(503, b"busy") if hits <= 2 else self.send(200, PAGE.format(n="flaky").encode())
            elif path == "/slow":
                time.sleep(1.0)
                self.send(200, b"too late")
            elif path == "/big":
                self.send(200, b"x" * 200_000)
            elif path == "/big-unannounced":  # no Content-Length: the cap must hold while streaming
                self.send(200, b"y" * 200_000, length=False)
                self.close_connection = True
            elif path in ("/loop/a", "/loop/b"):
                self.send(302, headers={"Location": "/loop/b" if path == "/loop/a" else "/loop/a"})
            elif path.startswith("/chain/"):
                n = int(path.rsplit("/", 1)[1])
                if n == 0:
                    self.send(200, PAGE.format(n="end of chain").encode())
                else:
                    self.send(301, headers={"Location": f"/chain/{n - 1}"})
            elif path == "/to-ftp":
                self.send(302, headers={"Location": "ftp://127.0.0.1/file.txt"})
            elif path == "/bad-location":  # a host urljoin cannot even parse
                self.send(302, headers={"Location": "http://[oops/"})
            elif path == "/bad-port":
                self.send(302, headers={"Location": "http://127.0.0.1:99999/"})
            elif path.startswith("/caf%C3%A9"):  # a listed `/café?x=1 2`, as requests sends it
                self.send(200, PAGE.format(n="café").encode())
            elif path == "/gzipped":  # sent compressed although the crawler asked for identity
                self.send(200, gzip.compress(PAGE.format(n="gzipped").encode()), headers={"Content-Encoding": "gzip"})
            elif path == "/to-page-1":
                self.send(301, headers={"Location": "/page/1#section"})
            elif path == "/later":  # come back in a day, as a date
                self.send(503, b"maintenance", headers={"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"})
            elif path == "/drip":  # 40 bytes, one every 0.1 s: no single read ever waits long
                self.send_response(200)
                self.send_header("Content-Length", "40")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.send(404, b"not found")

    return Handler


def fast_policy(**overrides) -> CrawlPolicy:
    settings = dict(delay_s=0.0, connect_timeout_s=2.0, read_timeout_s=2.0, max_retries=2, backoff_s=0.05,
                    max_bytes=100_000, max_redirects=5)
    settings.update(overrides)
    return CrawlPolicy(**settings)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]
