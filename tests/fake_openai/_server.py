"""The HTTP layer: routes, keep-alive HTTP/1.1 replies, and the server object."""

from __future__ import annotations

import json
import re
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import _errors
from ._batch import BatchStore, merge_stats
from ._config import DEFAULT_CONFIG, merge_config
from ._state import Reply, ServerState

__all__ = ["FakeOpenAIHTTPServer", "make_server"]

_EMBEDDINGS = ("/v1/embeddings", "/embeddings")
_AZURE = re.compile(r"/openai/deployments/([^/]+)/embeddings")


def _json_reply(payload):
    return Reply(200, json.dumps(payload).encode())


def _error_reply(error):
    return Reply(error.status, error.body(), error.headers)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as the SDK's connection pool expects.
    protocol_version = "HTTP/1.1"
    # Headers and body go in one write, but a small reply must not wait for Nagle.
    disable_nagle_algorithm = True
    server_version = "fake-openai"

    def log_message(self, format, *args):
        pass  # one line per request would drown the test output

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/stats":
            texts = parse_qs(url.query).get("texts", ["1"])[-1] not in ("0", "false")
            online = self.server.state.stats(texts=True)
            stats = merge_stats(online, self.server.batches.stats(), texts=texts)
            self._send(_json_reply(stats))
        else:
            reply = self._batches("GET", url)
            self._send(reply or _error_reply(_errors.invalid_url("GET", url.path)))

    def do_DELETE(self):
        url = urlsplit(self.path)
        reply = self._batches("DELETE", url)
        self._send(reply or _error_reply(_errors.invalid_url("DELETE", url.path)))

    def _batches(self, method, url, body=b""):
        """The Files/Batch API's answer, or ``None`` when ``url`` is not one of its paths."""
        query = parse_qs(url.query)
        return self.server.batches.handle(method, url.path, query, self.headers, body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        state = self.server.state
        azure = _AZURE.fullmatch(url.path)
        if url.path in _EMBEDDINGS:
            reply = state.embeddings(self.headers, body)
        elif azure and "api-version" in parse_qs(url.query):
            reply = state.embeddings(self.headers, body, deployment=unquote(azure[1]))
        elif url.path == "/control":
            reply = self._control(body)
        elif url.path == "/control/batches":
            reply = self._control(body, self.server.batches)
        elif url.path == "/reset":
            state.reset()
            self.server.batches.reset()
            reply = _json_reply({"ok": True})
        elif url.path == "/reset_stats":
            state.reset_stats()
            self.server.batches.reset_stats()
            reply = _json_reply({"ok": True})
        else:
            reply = self._batches("POST", url, body) or _error_reply(
                _errors.invalid_url("POST", url.path)
            )
        self._send(reply)

    def _control(self, body, target=None):
        try:
            (target or self.server.state).control(json.loads(body or b"{}"))
        except ValueError as error:  # includes malformed JSON
            return _error_reply(_errors.ApiError(400, str(error)))
        return _json_reply({"ok": True})

    def _send(self, reply):
        if reply.status is None:
            # A "drop" fault: close the connection without a single byte of response.
            self.close_connection = True
            return
        lines = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Date: {self.date_time_string()}",
            # File contents are bytes; everything else is JSON.
            *(() if "Content-Type" in reply.headers else ("Content-Type: application/json",)),
            f"Content-Length: {len(reply.body)}",
            *(f"{name}: {value}" for name, value in reply.headers.items()),
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if reply.trickle is None:
            self.wfile.write(head + reply.body)
            return
        # The head at once, then the body a few bytes at a time: every read the client
        # makes gets something within the pause, however long the whole body takes.
        # A client that gives up makes a write fail, which ends this connection.
        size, pause = reply.trickle
        self.wfile.write(head)
        for start in range(0, len(reply.body), size):
            time.sleep(pause)
            self.wfile.write(reply.body[start : start + size])


class FakeOpenAIHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 holding one :class:`ServerState`."""

    daemon_threads = True
    block_on_close = False
    # Clients open many pooled connections at once; the default backlog of 5 would
    # make the kernel drop SYNs and stall them for a second.
    request_queue_size = 256

    def __init__(self, port, config):
        self.state = ServerState(config)
        self.batches = BatchStore(self.state)
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout, a drop fault) is normal here, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def make_server(port=0, config=None):
    """Build (not start) a server; ``config`` is merged into the defaults."""
    return FakeOpenAIHTTPServer(port, merge_config(DEFAULT_CONFIG, config or {}))
