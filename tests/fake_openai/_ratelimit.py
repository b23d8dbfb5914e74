"""Requests-per-minute and tokens-per-minute limits as continuously refilling buckets."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Decision", "RateLimiter", "format_duration"]


def format_duration(seconds):
    """Format a wait like the API's ``x-ratelimit-reset-*`` headers: 120ms, 1.5s, 6m0s."""
    milliseconds = math.ceil(max(seconds, 0.0) * 1000)
    if milliseconds == 0:
        return "0s"
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    minutes, rest = divmod(milliseconds, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class _Bucket:
    def __init__(self, limit_per_minute, burst_seconds, now):
        self.limit = limit_per_minute
        self.capacity = limit_per_minute * burst_seconds / 60.0
        self.rate = limit_per_minute / 60.0
        self.level = self.capacity
        self.updated = now

    def refill(self, now):
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount):
        return max(amount - self.level, 0.0) / self.rate

    def headers(self, name):
        return {
            f"x-ratelimit-limit-{name}": str(int(self.limit)),
            f"x-ratelimit-remaining-{name}": str(int(self.level)),
            f"x-ratelimit-reset-{name}": format_duration(self.wait_for(self.capacity)),
        }


@dataclass
class Decision:
    """Outcome of :meth:`RateLimiter.acquire`.

    ``kind`` is None when granted (``headers`` then show the levels after the charge),
    else ``"requests"``, ``"tokens"`` or ``"too_large"`` (the request exceeds the token
    bucket's capacity, so waiting can never help).
    """

    kind: str | None
    headers: dict = field(default_factory=dict)
    wait: float = 0.0
    limit: int = 0
    used: int = 0


class RateLimiter:
    """Both buckets; a request is charged only if both have enough, else nothing."""

    def __init__(self, rpm=None, tpm=None, burst_seconds=60.0, clock=time.monotonic):
        self._clock = clock
        now = clock()
        self._requests = _Bucket(rpm, burst_seconds, now) if rpm else None
        self._tokens = _Bucket(tpm, burst_seconds, now) if tpm else None
        self._lock = threading.Lock()

    def _headers(self):
        headers = {}
        if self._requests is not None:
            headers.update(self._requests.headers("requests"))
        if self._tokens is not None:
            headers.update(self._tokens.headers("tokens"))
        return headers

    def headers(self):
        """Current ``x-ratelimit-*`` headers (none for an unlimited quantity)."""
        with self._lock:
            now = self._clock()
            for bucket in (self._requests, self._tokens):
                if bucket is not None:
                    bucket.refill(now)
            return self._headers()

    def acquire(self, n_tokens):
        """Charge one request of ``n_tokens`` tokens if both buckets allow it."""
        with self._lock:
            now = self._clock()
            shortfalls = []
            for name, bucket, amount in (
                ("requests", self._requests, 1),
                ("tokens", self._tokens, n_tokens),
            ):
                if bucket is None:
                    continue
                bucket.refill(now)
                if name == "tokens" and amount > bucket.capacity:
                    return Decision("too_large", limit=int(bucket.limit))
                if bucket.level < amount:
                    shortfalls.append((bucket.wait_for(amount), name, bucket))
            if shortfalls:
                wait, name, bucket = max(shortfalls, key=lambda item: item[0])
                used = round(bucket.capacity - bucket.level)
                return Decision(name, wait=wait, limit=int(bucket.limit), used=used)
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= n_tokens
            return Decision(None, self._headers())
