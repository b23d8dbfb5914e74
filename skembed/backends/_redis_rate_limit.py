"""Pacing shared through Redis, so that many workers stay together under one account's limits.

:class:`~skembed.backends._rate_limit.RateLimiter` paces the threads of one job. Workers
in other processes or on other machines that embed with the same account each pace
themselves at the whole account's rate, so together they overshoot it and pay for the
429s. :class:`RedisRateLimiter` keeps the two buckets (requests and tokens), the limits
learnt from the ``x-ratelimit-*`` headers and the pause after a 429 in one Redis hash,
updated atomically by a Lua script that measures time with the server's clock: every
worker takes from the same buckets, a worker that starts late is paced from its first
request, and a 429 seen by one pauses them all. See ``docs/redis_cache.rst``.

The ``redis`` client is imported on first use (extra ``skembed[redis]``); the server's
password comes from the environment, as for the Redis cache.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from .._fork import PerProcess
from .._redis import DEFAULT_PASSWORD_ENV, import_redis, join_url, make_client, split_password
from ._base import EmbeddingError
from ._rate_limit import HEADROOM_SECONDS, MAX_WAIT, _cap, clamp_wait, learnt_limits

__all__ = ["RedisRateLimiter", "rate_limiter_from_url"]

# Long enough to outlive any pause (every wait is capped at MAX_WAIT) and a gap between
# two jobs; a forgotten account's state then goes away by itself.
_STATE_TTL_MS = 3_600_000

# One script for the three operations, so that each is a single atomic step on one key.
# State: HASH with <kind>_rate (per second), <kind>_cap, <kind>_level, <kind>_updated for
# kind in {req, tok}, and paused_until; times are the server's, in seconds.
# ARGV[1] = operation, ARGV[2] = expiry in ms, then:
#   take:  n_tokens[, "force"]           -> "0" when taken, else the seconds to wait
#          ("force": take it whatever the wait, once a request has waited long enough)
#   learn: tok limit, remaining, used, req limit, remaining, used ("" = not sent)
#   pause: seconds
#   capacity:                            -> the token burst learnt, "inf" when only a
#                                           requests limit is known, "-1" when none is
# The arguments are checked in Python (learnt_limits, clamp_wait) and again here, so that
# a worker of another version cannot leave a state that parks everyone: a limit must be a
# finite number >= 1, a remaining count a finite number >= 0, a pause is at most MAX_WAIT
# seconds, and so is every wait the script answers.
_SCRIPT = """
local MAX_WAIT = @MAX_WAIT@
local HEADROOM = @HEADROOM@
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local flat = redis.call('HGETALL', KEYS[1])
local s = {}
for i = 1, #flat, 2 do s[flat[i]] = tonumber(flat[i + 1]) end

local function refill(kind)
    local rate = s[kind .. '_rate']
    if rate then
        local elapsed = math.max(0, now - (s[kind .. '_updated'] or now))
        s[kind .. '_level'] = math.min(s[kind .. '_cap'] or 0,
                                       (s[kind .. '_level'] or 0) + elapsed * rate)
    end
    s[kind .. '_updated'] = now
end

-- A request larger than the whole bucket goes when the bucket is full (the service
-- then says whether it is too large, and the caller splits it). HEADROOM: see
-- HEADROOM_SECONDS in _rate_limit.py.
local function wait_for(kind, amount)
    local rate = s[kind .. '_rate']
    if not rate or rate <= 0 or rate ~= rate then return 0 end
    local deficit = math.min(amount + rate * HEADROOM, s[kind .. '_cap'] or 0)
        - (s[kind .. '_level'] or 0)
    local wait = deficit / rate
    if wait ~= wait then return 0 end
    return math.min(MAX_WAIT, math.max(0, wait))
end

local function finite(x)
    return x ~= nil and x == x and x > -math.huge and x < math.huge
end

local function save()
    local args = {}
    for field, value in pairs(s) do
        args[#args + 1] = field
        args[#args + 1] = string.format('%.17g', value)
    end
    redis.call('HSET', KEYS[1], unpack(args))
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end

local op = ARGV[1]
refill('tok')
refill('req')
if op == 'take' then
    local n = tonumber(ARGV[3])
    local delay = math.max((s['paused_until'] or 0) - now, wait_for('tok', n),
                           wait_for('req', 1))
    delay = math.min(delay, MAX_WAIT)
    if delay > 0 and ARGV[4] ~= 'force' then return string.format('%.6f', delay) end
    s['tok_level'] = (s['tok_level'] or 0) - n
    s['req_level'] = (s['req_level'] or 0) - 1
elseif op == 'learn' then
    for i, kind in ipairs({'tok', 'req'}) do
        local limit = tonumber(ARGV[3 * i])
        local remaining = tonumber(ARGV[3 * i + 1])
        if finite(limit) and limit >= 1 and finite(remaining) and remaining >= 0 then
            -- remaining is what was left after the service charged `used`, so the
            -- bucket holds at least their sum.
            local used = tonumber(ARGV[3 * i + 2])
            local first = s[kind .. '_rate'] == nil
            s[kind .. '_rate'] = limit / 60
            s[kind .. '_cap'] = math.max(s[kind .. '_cap'] or 0, remaining + used)
            if first then
                -- The level went below 0 by what every worker sent before the limits
                -- were known; the service may not have charged the others yet (they
                -- are in flight), so they count against what it says is left.
                s[kind .. '_level'] = remaining + used + math.min(s[kind .. '_level'] or 0, 0)
            end
        end
    end
elseif op == 'capacity' then
    -- Read only: nothing saved.
    if s['tok_rate'] then return string.format('%.6f', s['tok_cap'] or 0) end
    if s['req_rate'] then return 'inf' end
    return '-1'
elseif op == 'pause' then
    local seconds = tonumber(ARGV[3])
    if not finite(seconds) then return '0' end
    seconds = math.min(MAX_WAIT, math.max(0, seconds))
    s['paused_until'] = math.max(s['paused_until'] or 0, now + seconds)
    for _, kind in ipairs({'tok', 'req'}) do
        s[kind .. '_level'] = math.min(s[kind .. '_level'] or 0, 0)
    end
else
    return redis.error_reply('unknown operation ' .. op)
end
save()
return '0'
""".replace("@MAX_WAIT@", repr(MAX_WAIT)).replace("@HEADROOM@", repr(HEADROOM_SECONDS))


def rate_limiter_from_url(url, account):
    """The :class:`RedisRateLimiter` for a ``rate_limiter="redis://..."`` parameter.

    A password in the URL would be stored in the estimator's parameters (its repr,
    ``get_params()`` and pickles): it is refused, and read from
    ``$SKEMBED_REDIS_PASSWORD`` instead. A ``name`` in the query
    (``redis://host:6379/0?name=team-a``) separates accounts that share an endpoint.

    Parameters
    ----------
    url : str
        ``redis://``, ``rediss://`` or ``unix://`` URL.
    account : str
        The account's identity (endpoint, organization, model), without credentials.

    Returns
    -------
    RedisRateLimiter

    Examples
    --------
    >>> rate_limiter_from_url("redis://:s3cret@redis.internal/0", "openai|model")
    Traceback (most recent call last):
    ...
    ValueError: The 'rate_limiter' URL redis://redis.internal/0 must not contain a password...
    """
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            "rate_limiter must be None or a redis://, rediss:// or unix:// URL; got "
            f"{type(url).__name__} {_scheme(url)!r}."
        )
    clean, password = split_password(url)
    if password is not None:
        raise ValueError(
            f"The 'rate_limiter' URL {clean} must not contain a password: the parameter is "
            "kept in the estimator's repr, get_params() and pickles. Put the password in the "
            f"{DEFAULT_PASSWORD_ENV} environment variable (of every worker)."
        )
    parts = urlsplit(clean)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "name"]
    rest = urlencode([(key, value) for key, value in query if key != "name"])
    return RedisRateLimiter(
        join_url(parts, parts.netloc, rest), account, name=names[-1] if names else None
    )


def _scheme(url):
    return urlsplit(url).scheme if isinstance(url, str) else ""


class RedisRateLimiter:
    """Paces every worker of one account through buckets kept in a Redis server.

    Same interface as :class:`~skembed.backends._rate_limit.RateLimiter`. The state of
    an account lives under ``<prefix>:rl:<digest>``, the digest of ``account`` and
    ``name`` (Redis never sees them, nor any credential). The connection is opened on
    first use, in each process.

    Parameters
    ----------
    url : str
        ``redis://[user@]host[:port][/db]``, ``rediss://`` for TLS, or
        ``unix:///path/to/socket?db=0``. A password in the URL is kept in memory only
        (never in the repr or errors).
    account : str
        What shares the limits: the endpoint, organization and model.
    name : str, default=None
        Separates accounts that share an endpoint (two API keys, two projects).
    prefix : str, default="skembed"
        Namespace of the key.
    password_env : str or None, default="SKEMBED_REDIS_PASSWORD"
        Environment variable holding the server's password, read when a process
        connects.
    socket_timeout : float, default=10.0
        Seconds to wait for the server before an error.

    Examples
    --------
    >>> limiter = RedisRateLimiter("redis://:s3cret@redis.internal/0", "openai|m", name="a")
    >>> limiter
    RedisRateLimiter('redis://redis.internal/0', name='a')
    """

    def __init__(
        self,
        url,
        account,
        *,
        name=None,
        prefix="skembed",
        password_env=DEFAULT_PASSWORD_ENV,
        socket_timeout=10.0,
    ):
        self.url, self._url_password = split_password(url)
        self.name = name
        self.password_env = password_env
        self.socket_timeout = socket_timeout
        identity = f"{account}\0{name or ''}".encode("utf-8", "surrogatepass")
        self.key = f"{prefix}:rl:{hashlib.blake2b(identity, digest_size=16).hexdigest()}"
        # Each process its own client (and connection pool): see skembed._fork.
        self._script = PerProcess()

    def __repr__(self):
        name = f", name={self.name!r}" if self.name is not None else ""
        return f"RedisRateLimiter({self.url!r}{name})"

    def _run(self, operation, *args):
        """Run one operation of the script; Redis failures become EmbeddingError."""
        redis = import_redis("RedisRateLimiter")
        script = self._script.get(self._connect)
        try:
            return float(script(keys=[self.key], args=[operation, _STATE_TTL_MS, *args]))
        except redis.RedisError as exc:
            raise EmbeddingError(
                f"The Redis server of the shared rate limiter {self.url} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _connect(self):
        client = make_client(
            self.url,
            password=self._url_password,
            password_env=self.password_env,
            socket_timeout=self.socket_timeout,
            needed_by="RedisRateLimiter",
        )
        return client.register_script(_SCRIPT)

    def acquire(self, n_tokens, stop=None, max_wait=MAX_WAIT):
        """Block until a request of ``n_tokens`` may be sent, then take its budget.

        Returns ``False`` without taking anything if ``stop`` (an Event) gets set.
        Waits at most ``max_wait`` seconds (never more than ``MAX_WAIT``), then takes
        the budget anyway: the service's answer decides.
        """
        give_up = time.monotonic() + _cap(max_wait)
        while True:
            if stop is not None and stop.is_set():
                return False
            left = give_up - time.monotonic()
            delay = self._run("take", int(n_tokens), *(() if left > 0 else ("force",)))
            if delay <= 0:
                return True
            # The script said how long; whoever takes first after that wins, the others
            # are told their new wait.
            delay = min(delay, max(left, 0.0))
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                return False

    def token_capacity(self):
        """The account's token burst as learnt (by any worker); ``None`` while unknown.

        ``inf`` when a requests limit is known but no tokens limit was sent.
        """
        capacity = self._run("capacity")
        return None if capacity < 0 else capacity

    def observe(self, headers, n_tokens=0):
        """Learn the account's limits from the headers of a response to ``n_tokens``.

        Only believable values are sent to Redis (see
        :func:`~skembed.backends._rate_limit.learnt_limits`).
        """
        args = []
        learnt = learnt_limits(headers, n_tokens)
        for kind in ("tokens", "requests"):
            args += ["", "", 0] if learnt[kind] is None else list(learnt[kind])
        if any(learnt.values()):  # most answers of a server without limits: no round trip
            self._run("learn", *args)

    def pause(self, seconds):
        """Hold every worker for ``seconds`` (a 429's retry-after) and empty the buckets.

        ``seconds`` is clamped to ``[0, MAX_WAIT]``; a value that is not a number is
        ignored.
        """
        seconds = clamp_wait(seconds)
        if seconds is not None:
            self._run("pause", seconds)
