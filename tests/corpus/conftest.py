"""Fixtures of the corpus tests: a local HTTP site for the crawler (tests/corpus/crawl_site.py)."""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.corpus.crawl_site import TestSite, make_handler


@pytest.fixture
def serve():
    """serve(site) -> base URL of a fresh server on 127.0.0.1; all are shut down after the test."""
    servers = []

    def start(site: TestSite) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(site))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
