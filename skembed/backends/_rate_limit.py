"""Client-side pacing under an account's requests- and tokens-per-minute limits.

The service tells us its limits in ``x-ratelimit-limit-*`` headers and refills them
continuously. Rather than discovering the limit by hitting it (each 429 costs a round
trip and a back-off), every request takes its tokens from a local bucket that refills
at the advertised rate; a 429 empties the bucket and pauses every sender until the
``retry-after`` the service asked for. Until headers arrive (or with a server that
sends none), nothing is paced and only 429s slow us down.
"""

from __future__ import annotations

import threading
import time

__all__ = ["RateLimiter"]


class _Bucket:
    """A token bucket whose rate and size are learned from response headers."""

    def __init__(self):
        self.per_second = None  # unknown until the first header
        self.capacity = 0.0
        self.level = 0.0
        self.updated = 0.0

    def refill(self, now):
        if self.per_second is not None:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def learn(self, limit_per_minute, remaining, used, now):
        """Adopt the advertised rate; size the bucket from the fullest level seen.

        ``remaining`` is what was left after the service charged ``used`` for the
        request this header came with, so the bucket holds at least their sum.
        """
        first = self.per_second is None
        self.per_second = limit_per_minute / 60.0
        self.capacity = max(self.capacity, float(remaining + used))
        if first:
            self.level, self.updated = float(remaining), now

    def wait_for(self, amount):
        """Seconds until ``amount`` is available (0 when it is, or when unpaced)."""
        if self.per_second is None:
            return 0.0
        # A request larger than the whole bucket goes when the bucket is full; the
        # service then says whether it is too large, and the caller splits it.
        deficit = min(amount, self.capacity) - self.level
        return max(0.0, deficit / self.per_second) if self.per_second > 0 else 0.0


def _header_number(headers, name):
    value = headers.get(name)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RateLimiter:
    """Paces requests of all threads of one job against one account's limits.

    Parameters
    ----------
    clock : callable, default=time.monotonic
        Source of time, for tests.
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._condition = threading.Condition()
        self._tokens = _Bucket()
        self._requests = _Bucket()
        self._paused_until = 0.0

    def acquire(self, n_tokens, stop=None):
        """Block until a request of ``n_tokens`` may be sent, then take its budget.

        Returns ``False`` without taking anything if ``stop`` (an Event) gets set.
        """
        with self._condition:
            while True:
                if stop is not None and stop.is_set():
                    return False
                now = self._clock()
                self._tokens.refill(now)
                self._requests.refill(now)
                delay = max(
                    self._paused_until - now,
                    self._tokens.wait_for(n_tokens),
                    self._requests.wait_for(1),
                )
                if delay <= 0:
                    self._tokens.level -= n_tokens
                    self._requests.level -= 1
                    return True
                # Wake up early when another thread changes the picture (or to check stop).
                self._condition.wait(timeout=min(delay, 0.25))

    def observe(self, headers, n_tokens=0):
        """Learn the account's limits from the headers of a response to ``n_tokens``."""
        now = self._clock()
        with self._condition:
            for bucket, kind, used in (
                (self._tokens, "tokens", n_tokens),
                (self._requests, "requests", 1),
            ):
                limit = _header_number(headers, f"x-ratelimit-limit-{kind}")
                remaining = _header_number(headers, f"x-ratelimit-remaining-{kind}")
                if limit and remaining is not None:
                    bucket.refill(now)
                    bucket.learn(limit, remaining, used, now)

    def pause(self, seconds):
        """Hold every sender for ``seconds`` (a 429's retry-after) and empty the buckets."""
        now = self._clock()
        with self._condition:
            self._paused_until = max(self._paused_until, now + seconds)
            for bucket in (self._tokens, self._requests):
                bucket.refill(now)
                bucket.level = min(bucket.level, 0.0)
            self._condition.notify_all()

    def paused_for(self):
        """Seconds left in the current pause (0 when not paused)."""
        with self._condition:
            return max(0.0, self._paused_until - self._clock())
