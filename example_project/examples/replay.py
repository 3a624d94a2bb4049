"""A local stand-in for Zippopotam.us and Open Brewery DB, for the brewery example offline.

It answers the example's requests with recorded JSON (``recordings/``, written in the
APIs' formats), and fails the first request it gets with a 503, so that the example shows
a retry.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent / "recordings"
ANSWERS = {
    "/zippopotam/us/94107": "zippopotam-us-94107.json",
    "/openbrewerydb/v1/breweries?by_city=san_francisco&by_state=california&per_page=3": (
        "openbrewerydb-san-francisco.json"
    ),
}


class ReplayHandler(BaseHTTPRequestHandler):
    server: ReplayServer

    def do_GET(self) -> None:
        if self.server.take_failure():
            self._answer(503, {"message": "Service Unavailable (the replay's first answer)"})
        elif self.path in ANSWERS:
            self._answer(200, json.loads((RECORDINGS / ANSWERS[self.path]).read_text()))
        else:
            self._answer(404, {})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the example tells what happens."""


class ReplayServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReplayHandler)
        self._failures = 1
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]

    def take_failure(self) -> bool:
        with self._lock:
            if self._failures:
                self._failures -= 1
                return True
            return False

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
