"""Fixtures of the importer tests: a local OPTIMADE provider serving recorded responses."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

RESPONSES = Path(__file__).parent / 'responses'


class _Provider(BaseHTTPRequestHandler):
    """Serve the recorded pages; a filter on an unknown property gets the recorded 400 error."""

    def do_GET(self):  # noqa: N802 - http.server API
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.requests.append((url.path, query))
        if self.server.fail_next:
            self.server.fail_next -= 1
            return self._reply(503, '{"errors": [{"status": "503", "title": "Service Unavailable"}]}')
        if url.path != '/v1/structures':
            return self._reply(404, '{"errors": [{"status": "404", "title": "Not Found"}]}')
        if 'nonsense_property' in query.get('filter', [''])[0]:
            return self._reply(400, (RESPONSES / 'error_bad_filter.json').read_text())
        page = 'structures_page2.json' if query.get('page_offset') == ['2'] else 'structures_page1.json'
        self._reply(200, (RESPONSES / page).read_text())

    def _reply(self, status: int, body: str) -> None:
        body = body.replace('{base}', f'http://127.0.0.1:{self.server.server_port}').encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/vnd.api+json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider():
    """Base URL of a local OPTIMADE provider; ``server.requests`` lists what it was asked."""
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Provider)
    server.requests, server.fail_next = [], 0
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
