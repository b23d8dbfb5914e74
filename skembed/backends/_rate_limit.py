"""Client-side pacing under an account's requests- and tokens-per-minute limits.

The service tells us its limits in ``x-ratelimit-limit-*`` headers and refills them
continuously. Rather than discovering the limit by hitting it (each 429 costs a round
trip and a back-off), every request takes its tokens from a local bucket that refills
at the advertised rate; a 429 empties the bucket and pauses every sender until the
``retry-after`` the service asked for. Until headers arrive (or with a server that
sends none), nothing is paced and only 429s slow us down.

Numbers from a server are hostile until checked (:func:`learnt_limits`): a limit must
be a finite number of at least one (and, for tokens, at least what the answered
request used), a remaining count a finite number >= 0; anything else (negative, NaN,
``inf``, Azure's ``-1`` for "unknown", text) is ignored, as if the header were absent.
And no wait is ever longer than a cap (``max_wait``, at most :data:`MAX_WAIT`): a
request that has waited that long is sent, and the service's answer decides (a 429
costs one of the request's retries, so ``max_retries`` bounds the whole).
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["HEADROOM_SECONDS", "MAX_WAIT", "RateLimiter", "clamp_wait", "learnt_limits"]

#: The longest any single wait lasts (seconds): a pause after a 429, a wait for a
#: bucket to refill, a back-off. The limits are per minute: a wait longer than the
#: window they count in only means the numbers learnt are wrong.
MAX_WAIT = 60.0
#: How far ahead of the service's refill a request is sent at the earliest (seconds).
HEADROOM_SECONDS = 0.1


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
            # The level went below 0 by every request sent before the limits were
            # known, this one included; the service may not have charged the others
            # yet (they are in flight), so they count against what it says is left.
            self.level = float(remaining + used) + min(self.level, 0.0)
            self.updated = now

    def wait_for(self, amount):
        """Seconds until ``amount`` is available (0 when it is, or when unpaced)."""
        if self.per_second is None:
            return 0.0
        # A request larger than the whole bucket goes when the bucket is full; the
        # service then says whether it is too large, and the caller splits it. The
        # service charges a request when it has read it, a little after it was sent
        # here, and by a delay that varies: asking for a margin of headroom keeps a
        # request that follows another closely from arriving before its refill. It
        # costs no throughput (the bucket keeps the margin, the rate is the same).
        headroom = self.per_second * HEADROOM_SECONDS
        deficit = min(amount + headroom, self.capacity) - self.level
        return max(0.0, deficit / self.per_second) if self.per_second > 0 else 0.0


def _header_number(headers, name):
    """The header's value as a finite float, or ``None`` (absent, not a number, NaN, inf)."""
    value = headers.get(name)
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def learnt_limits(headers, n_tokens=0):
    """What the ``x-ratelimit-*`` headers of an answer to ``n_tokens`` teach, checked.

    Returns
    -------
    dict
        ``{"tokens": (limit, remaining, used), "requests": (...)}``, with ``None``
        instead of a triple for a kind whose headers are absent or not believable: a
        limit that is not a finite number >= 1 (>= the tokens the answered request
        used, for tokens), or a remaining count that is not a finite number >= 0.

    Examples
    --------
    >>> learnt_limits({"x-ratelimit-limit-requests": "-1",
    ...                "x-ratelimit-remaining-requests": "-1"})
    {'tokens': None, 'requests': None}
    >>> learnt_limits({"x-ratelimit-limit-tokens": "6000",
    ...                "x-ratelimit-remaining-tokens": "5990"}, n_tokens=10)["tokens"]
    (6000.0, 5990.0, 10)
    """
    learnt = {}
    for kind, used in (("tokens", n_tokens), ("requests", 1)):
        limit = _header_number(headers, f"x-ratelimit-limit-{kind}")
        remaining = _header_number(headers, f"x-ratelimit-remaining-{kind}")
        believable = (
            limit is not None and limit >= max(1, used) and remaining is not None and remaining >= 0
        )
        learnt[kind] = (limit, remaining, used) if believable else None
    return learnt


def clamp_wait(seconds, max_wait=MAX_WAIT):
    """``seconds`` as a wait within ``[0, min(max_wait, MAX_WAIT)]``; ``None`` if not a number.

    Examples
    --------
    >>> clamp_wait(1e9, 2.0), clamp_wait(-3.0), clamp_wait(float("nan"))
    (2.0, 0.0, None)
    """
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), _cap(max_wait))


def _cap(max_wait):
    return MAX_WAIT if max_wait is None else max(0.0, min(float(max_wait), MAX_WAIT))


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

    def acquire(self, n_tokens, stop=None, max_wait=MAX_WAIT):
        """Block until a request of ``n_tokens`` may be sent, then take its budget.

        Returns ``False`` without taking anything if ``stop`` (an Event) gets set.
        Waits at most ``max_wait`` seconds (never more than :data:`MAX_WAIT`), then
        takes the budget anyway: the service's answer decides.
        """
        with self._condition:
            give_up = self._clock() + _cap(max_wait)
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
                if delay <= 0 or now >= give_up:
                    self._tokens.level -= n_tokens
                    self._requests.level -= 1
                    return True
                # Wake up early when another thread changes the picture (or to check stop).
                self._condition.wait(timeout=min(delay, 0.25, give_up - now))

    def token_capacity(self):
        """The account's token burst as learnt; ``None`` while no limit is known.

        ``inf`` when a requests limit is known but no tokens limit was sent.
        """
        with self._condition:
            if self._tokens.per_second is not None:
                return self._tokens.capacity
            return math.inf if self._requests.per_second is not None else None

    def observe(self, headers, n_tokens=0):
        """Learn the account's limits from the headers of a response to ``n_tokens``."""
        learnt = learnt_limits(headers, n_tokens)
        now = self._clock()
        with self._condition:
            for bucket, kind in ((self._tokens, "tokens"), (self._requests, "requests")):
                if learnt[kind] is not None:
                    bucket.refill(now)
                    bucket.learn(*learnt[kind], now)

    def pause(self, seconds):
        """Hold every sender for ``seconds`` (a 429's retry-after) and empty the buckets.

        ``seconds`` is clamped to ``[0, MAX_WAIT]``; a value that is not a number is
        ignored.
        """
        seconds = clamp_wait(seconds)
        if seconds is None:
            return
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
