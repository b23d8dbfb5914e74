"""When to retry a request, and how long to wait: the API's message, retry-after, back-off."""

from __future__ import annotations

import random

from ._rate_limit import MAX_WAIT, clamp_wait

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_BACKOFF_BASE = 0.5  # seconds, doubled on each retry
_BACKOFF_CAP = 20.0


def _api_message(error):
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(error, "message", error))


def _retry_after(headers, max_wait=MAX_WAIT):
    """Seconds the server asked us to wait (``retry-after-ms`` first), or ``None``.

    A value that is not a finite number >= 0 is ignored (the caller backs off
    instead); a longer wait than ``max_wait`` (at most ``MAX_WAIT``) is shortened to it.

    Examples
    --------
    >>> _retry_after({"retry-after": "1e9"}, max_wait=5.0)
    5.0
    >>> _retry_after({"retry-after-ms": "-100", "retry-after": "2"})
    2.0
    >>> _retry_after({"retry-after": "nan"}) is None
    True
    """
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) * scale
        except (TypeError, ValueError):
            continue
        if 0 <= seconds < float("inf"):
            return clamp_wait(seconds, max_wait)
    return None


def _backoff(attempt, max_wait=MAX_WAIT):
    """Exponential back-off with jitter, so that retrying threads do not move in step.

    At most ``min(_BACKOFF_CAP, max_wait)`` seconds.
    """
    cap = min(_BACKOFF_CAP, max_wait)
    return min(cap, _BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
