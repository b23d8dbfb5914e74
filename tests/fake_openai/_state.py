"""Everything the fake server knows and counts, and how it answers one embeddings call.

Each request reads the configuration, the limiter and the stats object once, at its
start. ``reset``/``reset_stats`` swap in new objects, so a request still running from a
previous test (a slow ``timeout`` fault, say) updates counters nobody reads any more
instead of leaking into the next test's numbers.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from skembed._tokens import get_encoding

from . import _errors, _request
from ._auth import check_key, read_credentials
from ._config import merge_config, model_table, served_model_key
from ._hostile import shape_rows, wire_items
from ._ratelimit import RateLimiter, format_duration
from ._render import pad, render
from ._vectors import embed_rows, input_bytes

_LIMIT_KEYS = ("rpm", "tpm", "burst_seconds")
_RANDOM_FAULTS = ("500", "503", "drop", "timeout", "slow")


@dataclass
class Reply:
    """An HTTP answer; ``status=None`` closes the connection without answering."""

    status: int | None
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    label: str = ""  # its key in /stats' requests_by_status
    # (chunk bytes, seconds between chunks): the body is trickled, see _server._send.
    trickle: tuple | None = None


class _Stats:
    def __init__(self):
        self.requests = 0
        self.by_status = Counter()
        self.inputs = 0
        self.tokens = 0
        self.max_inputs = 0
        self.max_tokens = 0
        self.max_inputs_sent = 0
        self.max_tokens_sent = 0
        self.in_flight = 0
        self.peak_concurrency = 0
        self.text_counts = Counter()
        self.auth_schemes = Counter()
        self.auth_malformed = 0

    def as_dict(self, texts):
        stats = {
            "requests": self.requests,
            "requests_by_status": dict(self.by_status),
            "inputs": self.inputs,
            "tokens": self.tokens,
            "max_inputs_per_request": self.max_inputs,
            "max_tokens_per_request": self.max_tokens,
            "max_inputs_per_request_sent": self.max_inputs_sent,
            "max_tokens_per_request_sent": self.max_tokens_sent,
            "peak_concurrency": self.peak_concurrency,
            "times_embedded_max": max(self.text_counts.values(), default=0),
            "auth_schemes": dict(self.auth_schemes),
            "auth_malformed": self.auth_malformed,
        }
        if texts:
            stats["text_counts"] = dict(self.text_counts)
        return stats


def _retry_headers(wait):
    # Like the API: whole seconds in the standard header, the precise wait in -ms.
    return {
        "retry-after": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(math.ceil(wait * 1000)),
    }


def _with_headers(headers, extra):
    """``headers`` with ``extra`` set over them, whatever the case of the names."""
    if not extra:
        return headers
    lowered = {name.lower() for name in extra}
    return {**{k: v for k, v in headers.items() if k.lower() not in lowered}, **extra}


class ServerState:
    """Configuration, limiter, scheduled faults and counters of one server."""

    def __init__(self, config):
        self._startup = merge_config(config, {})
        self._lock = threading.Lock()
        self._encoding = get_encoding("cl100k_base")
        self.reset()

    # -- control ---------------------------------------------------------------------

    def reset(self):
        with self._lock:
            self._set_config(self._startup, limits=True, faults=True, seed=True, widths=True)
            self._shuffle_rng = np.random.default_rng(0)
            self._stats = _Stats()

    def reset_stats(self):
        with self._lock:
            self._stats = _Stats()

    def control(self, updates):
        """Merge ``updates`` into the configuration (ValueError if invalid)."""
        with self._lock:
            merged = merge_config(self._config, updates)
            self._set_config(
                merged,
                limits=any(key in updates for key in _LIMIT_KEYS),
                faults="faults" in updates,
                seed="fault_seed" in updates,
                widths="width_sequence" in updates,
            )

    def _set_config(self, config, *, limits, faults, seed, widths):
        self._config = config
        self._models = model_table(config)
        if limits:
            self._limiter = RateLimiter(config["rpm"], config["tpm"], config["burst_seconds"])
        if faults:
            self._faults = deque(config["faults"])
        if seed:
            self._fault_rng = random.Random(config["fault_seed"])
        if widths:
            self._answers = 0  # answers since width_sequence was set

    def stats(self, texts=True):
        with self._lock:
            return self._stats.as_dict(texts)

    # -- embeddings ------------------------------------------------------------------

    def embeddings(self, headers, body, deployment=None):
        """Answer one embeddings request (``deployment`` set on the Azure route)."""
        with self._lock:
            config, models, limiter, stats = self._config, self._models, self._limiter, self._stats
            stats.requests += 1
            stats.in_flight += 1
            stats.peak_concurrency = max(stats.peak_concurrency, stats.in_flight)
        try:
            reply = self._embeddings(config, models, limiter, stats, headers, body, deployment)
        except Exception:
            # A bug of the fake server itself: say so loudly and tell the SDK not to retry.
            traceback.print_exc(file=sys.stderr)
            error = _errors.ApiError(
                500, "fake server bug:\n" + traceback.format_exc(), type="server_error"
            )
            reply = Reply(500, error.body(), {"x-should-retry": "false"}, "500")
        else:
            reply.headers = _with_headers(reply.headers, config["extra_headers"])
        finally:
            with self._lock:
                stats.in_flight -= 1
        with self._lock:
            stats.by_status[reply.label] += 1
        return reply

    def _embeddings(self, config, models, limiter, stats, headers, body, deployment):
        azure = deployment is not None
        try:
            credentials = read_credentials(headers, azure)
            with self._lock:
                stats.auth_schemes[credentials.scheme] += 1
                stats.auth_malformed += credentials.malformed
            check_key(credentials, config["api_key"], azure)
            request = _request.parse(body, self._encoding, deployment)
            with self._lock:
                stats.max_inputs_sent = max(stats.max_inputs_sent, len(request.items))
                stats.max_tokens_sent = max(stats.max_tokens_sent, request.n_tokens)
            spec = _request.validate(request, models)
            fault = self._next_fault(config)
            if fault["kind"] in ("drop", "timeout"):
                if fault["kind"] == "timeout":
                    time.sleep(fault.get("seconds", config["timeout_seconds"]))
                return Reply(None, label=fault["kind"])
            if fault["kind"] not in ("ok", "slow"):
                raise self._fault_error(fault, request.model)
            decision = limiter.acquire(request.n_tokens)
            if decision.kind is not None:
                raise self._limit_error(decision, request)
        except _errors.ApiError as error:
            time.sleep(config["latency"])
            # Nothing was charged, so the current bucket levels are the right ones to show.
            headers = {**limiter.headers(), **error.headers}
            return Reply(error.status, error.body(), headers, str(error.status))

        body = self._answer_body(config, request, spec)
        time.sleep(config["latency"] + config["latency_per_1k_tokens"] * request.n_tokens / 1000)
        texts = [
            item if isinstance(item, str) else self._encoding.decode(item) for item in request.items
        ]
        with self._lock:
            stats.inputs += len(request.items)
            stats.tokens += request.n_tokens
            stats.max_inputs = max(stats.max_inputs, len(request.items))
            stats.max_tokens = max(stats.max_tokens, request.n_tokens)
            stats.text_counts.update(texts)
        if fault["kind"] == "slow":
            # Answered and charged, like the real API, but after a client with a short
            # timeout has given up: it pays again when it retries.
            time.sleep(fault.get("seconds", config["timeout_seconds"]))
        label = "slow" if fault["kind"] == "slow" else "200"
        trickle = None
        if config["trickle_seconds_per_chunk"]:
            trickle = (config["trickle_chunk_bytes"], config["trickle_seconds_per_chunk"])
        return Reply(200, body, decision.headers, label, trickle)

    def _answer_body(self, config, request, spec):
        """The body of a successful answer, with every hostile knob applied."""
        native_dim = spec.native_dim
        with self._lock:
            widths = config["width_sequence"]
            if widths is not None and request.dimensions is None:
                native_dim = widths[min(self._answers, len(widths) - 1)]
            self._answers += 1
        datas = [input_bytes(item) for item in request.items]
        vectors = embed_rows(
            served_model_key(config, request.model),
            datas,
            native_dim,
            request.dimensions,
            config["vector_mode"],
        )
        rows = shape_rows(vectors, datas, config)
        items = wire_items(len(rows), config["index_fault"])
        with self._lock:
            if config["shuffle"]:
                items = [items[i] for i in self._shuffle_rng.permutation(len(items)).tolist()]
        body = render(request, rows, items)
        return pad(body, config["pad_response_bytes"], config["pad_response_kind"])

    def _next_fault(self, config):
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            draw = self._fault_rng.random() if self._has_random_faults(config) else 1.0
        for kind in _RANDOM_FAULTS:
            draw -= config[f"p_{kind}"]
            if draw < 0:
                return {"kind": kind}
        return {"kind": "ok"}

    @staticmethod
    def _has_random_faults(config):
        return any(config[f"p_{kind}"] for kind in _RANDOM_FAULTS)

    @staticmethod
    def _fault_error(fault, model):
        kind = fault["kind"]
        if kind == "429":
            wait = fault.get("retry_after", 0.0)
            error = _errors.ApiError(
                429,
                f"Rate limit reached for {model} in organization {_errors.ORGANIZATION} on "
                f"requests per min (RPM). Please try again in {format_duration(wait)}.",
                type="requests",
                code="rate_limit_exceeded",
            )
        elif kind == "quota":
            # A 429 that waiting cannot cure: the account is out of credit.
            error = _errors.ApiError(
                429, _errors.QUOTA, type="insufficient_quota", code="insufficient_quota"
            )
        elif kind == "503":
            error = _errors.ApiError(503, _errors.OVERLOADED, type="server_error")
        else:
            error = _errors.ApiError(500, _errors.SERVER_ERROR, type="server_error")
        if "retry_after" in fault:
            error.headers = _retry_headers(fault["retry_after"])
        return error

    @staticmethod
    def _limit_error(decision, request):
        if decision.kind == "too_large":
            # Waiting cannot help, so no retry-after: a client must split the request.
            return _errors.request_too_large(request.model, decision.limit, request.n_tokens)
        requested = request.n_tokens if decision.kind == "tokens" else 1
        error = _errors.rate_limited(
            request.model,
            decision.kind,
            decision.limit,
            decision.used,
            requested,
            format_duration(decision.wait),
        )
        error.headers = _retry_headers(decision.wait)
        return error
