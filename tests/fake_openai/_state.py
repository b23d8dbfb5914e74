"""Everything the fake server knows and counts, and how it answers one embeddings call.

Each request reads the configuration, the limiter and the stats object once, at its
start. ``reset``/``reset_stats`` swap in new objects, so a request still running from a
previous test (a slow ``timeout`` fault, say) updates counters nobody reads any more
instead of leaking into the next test's numbers.
"""

from __future__ import annotations

import base64
import json
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
from ._config import merge_config, model_table
from ._ratelimit import RateLimiter, format_duration
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


def _presented_key(headers, azure):
    if azure and headers.get("api-key"):
        return headers["api-key"]
    scheme, _, key = (headers.get("Authorization") or "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


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
            self._set_config(self._startup, limits=True, faults=True, seed=True)
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
            )

    def _set_config(self, config, *, limits, faults, seed):
        self._config = config
        self._models = model_table(config)
        if limits:
            self._limiter = RateLimiter(config["rpm"], config["tpm"], config["burst_seconds"])
        if faults:
            self._faults = deque(config["faults"])
        if seed:
            self._fault_rng = random.Random(config["fault_seed"])

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
        finally:
            with self._lock:
                stats.in_flight -= 1
        with self._lock:
            stats.by_status[reply.label] += 1
        return reply

    def _embeddings(self, config, models, limiter, stats, headers, body, deployment):
        azure = deployment is not None
        try:
            key = _presented_key(headers, azure)
            if not key:
                raise _errors.missing_key(azure)
            if key != config["api_key"]:
                raise _errors.wrong_key(key, azure)
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

        vectors = embed_rows(
            request.model,
            [input_bytes(item) for item in request.items],
            spec.native_dim,
            request.dimensions,
            config["vector_mode"],
        )
        with self._lock:
            order = self._shuffle_rng.permutation(len(vectors)) if config["shuffle"] else None
        body = _render(request, vectors, order)
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
            return Reply(200, body, decision.headers, "slow")
        return Reply(200, body, decision.headers, "200")

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


def _render(request, vectors, order):
    """The response body, assembled as bytes (base64 text never needs JSON escaping)."""
    vectors = vectors.astype("<f4", copy=False)
    indices = range(len(vectors)) if order is None else order.tolist()
    if request.encoding_format == "base64":
        item = b'{"object":"embedding","index":%d,"embedding":"%s"}'
        rows = (item % (i, base64.b64encode(vectors[i].tobytes())) for i in indices)
    else:
        # 9 significant digits give back the exact float32; 3x faster than json.dumps.
        numbers = ",".join(["%.9g"] * vectors.shape[1])
        item = '{"object":"embedding","index":%d,"embedding":[%s]}'
        rows = ((item % (i, numbers % tuple(vectors[i].tolist()))).encode() for i in indices)
    tokens = request.n_tokens
    return (
        b'{"object":"list","data":['
        + b",".join(rows)
        + b'],"model":'
        + json.dumps(request.model).encode()
        + b',"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (tokens, tokens)
    )
