"""The embedding cache in a Redis server, shared by every machine of a cluster.

Same keys, interface and guarantees as :class:`~skembed.EmbeddingCache`; see
``docs/redis_cache.rst``. Layout under ``<prefix>``:

``<prefix>:e:<hex digest>``
    One string per vector: a 16-byte header (magic ``SKv2`` and width, as little-endian
    uint32, then the row's digest: XXH3-64 seeded with the key, see ``_digests``)
    and the raw float32 row. The digest comes from :func:`~skembed._cache.cache_key`,
    so Redis never sees a text or a namespace. Values of the previous format (magic
    ``SKv1``, a 32-bit sum of the row's words where the digest is) are checked by their
    sum, served, and rewritten in this format when read.
``<prefix>:stats``
    Hash of the hit and miss totals of every process.
``<prefix>:lock:<hex>``
    Per-namespace locks: a random token with an expiry, renewed while held.
``<prefix>:state:<room>/<item>``
    Resumable state (:meth:`~skembed._cache.CacheStore.state`), such as the Batch API's
    ledgers: one string each, left alone by ``clear`` (but for the widths it records,
    ``widths/``, which describe the entries it deletes).

The ``redis`` client is imported on first use (extra ``skembed[redis]``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np

from .._redis import DEFAULT_PASSWORD_ENV, import_redis, join_url, make_client, split_password
from ._base import (
    KEY_SIZE,
    VECTOR_ROOMS,
    CacheCorruptionError,
    CacheError,
    CacheStore,
    StateBlob,
    lock_name,
)
from ._claims import RedisClaims
from ._digests import legacy_row_sums, row_digests, salts_of

__all__ = ["RedisEmbeddingCache", "cache_from_url"]

_logger = logging.getLogger("skembed")

# The values' format: its magic changes with the layout or the row digest.
_MAGIC = np.frombuffer(b"SKv2", dtype="<u4")[0]
_HEADER_WORDS = 4  # magic, width, digest (two words)
_FORMAT = 2
# The previous format, read (and upgraded) but never written.
_LEGACY_MAGIC = np.frombuffer(b"SKv1", dtype="<u4")[0]
_LEGACY_HEADER_WORDS = 3  # magic, width, sum
# A round trip carries at most this many keys or (roughly) bytes of vectors: large
# enough that latency is paid once per several MB, small enough that neither Redis's
# output buffer nor the client holds much more than the result array.
_CHUNK_KEYS = 10_000
_CHUNK_BYTES = 8 << 20
_SCAN_COUNT = 1000

# Stores a batch atomically: refuses it whole if one key holds something else than a
# vector of this width (another width, or damage), otherwise sets the keys that are
# absent (the first write wins; a value of the previous format, of this width, is the
# key's vector too), and adds the caller's pending hit/miss counts. KEYS = stats key,
# entry keys...; ARGV = value length, expiry in ms (0: none), hits, misses, the first 8
# bytes (magic, width) of a value of this width, of one of the previous format, values...
_PUT_SCRIPT = """
local size = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
    local have = redis.call('STRLEN', KEYS[i])
    if have ~= 0 then
        local head = redis.call('GETRANGE', KEYS[i], 0, 7)
        if not ((have == size and head == ARGV[5]) or (have == size - 4 and head == ARGV[6]))
        then
            return {i - 1, redis.call('GET', KEYS[i])}
        end
    end
end
for i = 2, #KEYS do
    if ttl > 0 then
        redis.call('SET', KEYS[i], ARGV[i + 5], 'NX', 'PX', ttl)
    else
        redis.call('SET', KEYS[i], ARGV[i + 5], 'NX')
    end
end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', KEYS[1], 'hits', ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'misses', ARGV[4]) end
return {0, false}
"""
# Rewrites values of the previous format, read and checked, in this one, keeping their
# expiry; a value changed since it was read (cleared, rewritten) is left alone.
# KEYS = entry keys; ARGV = old length, then per key its old first 12 bytes, new value.
_UPGRADE_SCRIPT = """
local size = tonumber(ARGV[1])
for i = 1, #KEYS do
    local key = KEYS[i]
    if redis.call('STRLEN', key) == size
        and redis.call('GETRANGE', key, 0, 11) == ARGV[2 * i] then
        local ttl = redis.call('PTTL', key)
        if ttl > 0 then
            redis.call('SET', key, ARGV[2 * i + 1], 'PX', ttl)
        else
            redis.call('SET', key, ARGV[2 * i + 1])
        end
    end
end
return 0
"""
# Only the holder (the token) may extend or release a lock.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def cache_from_url(url):
    """The :class:`RedisEmbeddingCache` for a ``cache="redis://..."`` parameter.

    A password in such a URL would be stored in the estimator's parameters, and so in
    its repr and pickles: it is refused; the server's password is read from
    ``$SKEMBED_REDIS_PASSWORD`` instead.

    Parameters
    ----------
    url : str

    Returns
    -------
    RedisEmbeddingCache
    """
    clean, password = split_password(url)
    if password is not None:
        raise ValueError(
            f"The 'cache' URL {clean} must not contain a password: the parameter is kept "
            "in the estimator's repr, get_params() and pickles. Put the password in the "
            f"{DEFAULT_PASSWORD_ENV} environment variable (of every worker), or pass a "
            "RedisEmbeddingCache object."
        )
    return RedisEmbeddingCache(url)


class RedisEmbeddingCache(CacheStore):
    """Embedding cache in a Redis server, shared by processes on many machines.

    Keys are 32-byte digests from :func:`~skembed._cache.cache_key`, stored under
    ``prefix``; values are float32 vectors with their width and a checksum. A vector of
    another width than asked for is an error, and a damaged value raises
    :class:`~skembed._cache.CacheCorruptionError`: neither is ever returned. Reads and
    writes are batched: one round trip per chunk of up to 10,000 keys (or about 8 MB of
    vectors), each chunk of a :meth:`put` stored atomically (a chunk in which a key is
    cached with another width stores nothing). The connection is opened on first use,
    in each process.

    Parameters
    ----------
    url : str, default="redis://localhost:6379/0"
        ``redis://[user@]host[:port][/db]``, ``rediss://`` for TLS, or
        ``unix:///path/to/socket?db=0``. A password in the URL is accepted but kept
        in memory only: it never appears in the repr, errors or pickles, and a
        pickled copy reads the password from ``password_env`` instead.
    prefix : str, default="skembed"
        Namespace of every key this cache writes, reads, counts and clears.
    ttl : float, default=None
        Seconds an entry lives after it is written; ``None``: until evicted by the
        server's ``maxmemory-policy`` or cleared. Rewriting a live key does not
        extend it.
    password_env : str or None, default="SKEMBED_REDIS_PASSWORD"
        Environment variable holding the server's password, read when a process
        connects (so each worker may set its own). Unset or empty, or ``None``: no
        password, unless the URL has one.
    lock_timeout : float, default=60.0
        Seconds a :meth:`lock` outlives a holder that stopped renewing it (a crashed
        or frozen process). A live holder renews it every third of that time.
    socket_timeout : float, default=30.0
        Seconds to wait for the server to connect or answer before
        :class:`~skembed._cache.CacheError`.

    Attributes
    ----------
    url : str
        The URL without its password.

    Examples
    --------
    >>> from skembed import RedisEmbeddingCache
    >>> cache = RedisEmbeddingCache("redis://:s3cret@cache.internal:6379/0", ttl=86400)
    >>> cache
    RedisEmbeddingCache('redis://:***@cache.internal:6379/0', ttl=86400)
    >>> import pickle
    >>> b"s3cret" in pickle.dumps(cache)
    False
    """

    def __init__(
        self,
        url="redis://localhost:6379/0",
        *,
        prefix="skembed",
        ttl=None,
        password_env=DEFAULT_PASSWORD_ENV,
        lock_timeout=60.0,
        socket_timeout=30.0,
    ):
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}.")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}.")
        for name, value in (
            ("ttl", ttl),
            ("lock_timeout", lock_timeout),
            ("socket_timeout", socket_timeout),
        ):
            if value is None and name == "ttl":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}.")
        self.url, self._url_password = split_password(url)
        self.prefix = prefix
        self.ttl = ttl
        self.password_env = password_env
        self.lock_timeout = lock_timeout
        self.socket_timeout = socket_timeout
        self._password_dropped = False
        self._attach()
        self._reset()

    def _config(self):
        return {
            "url": self.url,
            "prefix": self.prefix,
            "ttl": self.ttl,
            "password_env": self.password_env,
            "lock_timeout": self.lock_timeout,
            "socket_timeout": self.socket_timeout,
        }

    def _reset(self):
        self._client = None
        self._pid = None
        self._reset_counts()

    # -- pickling: the configuration, never a connection or a password ---------------

    def __getstate__(self):
        return {**self._config(), "password_dropped": self._url_password is not None}

    def __setstate__(self, state):
        self._password_dropped = state.pop("password_dropped")
        for name, value in state.items():
            setattr(self, name, value)
        self._url_password = None
        self._attach()
        self._reset()

    def __deepcopy__(self, memo):
        # A copy in this process (sklearn's clone) may keep the password in memory.
        copied = type(self)(**self._config())
        copied._url_password = self._url_password
        copied._password_dropped = self._password_dropped
        return copied

    def __repr__(self):
        options = [repr(self._display_url())]
        for name, default in (
            ("prefix", "skembed"),
            ("ttl", None),
            ("password_env", DEFAULT_PASSWORD_ENV),
            ("lock_timeout", 60.0),
            ("socket_timeout", 30.0),
        ):
            value = getattr(self, name)
            if value != default:
                options.append(f"{name}={value!r}")
        return f"RedisEmbeddingCache({', '.join(options)})"

    def _display_url(self):
        """The URL, with ``***`` where a password was given in it."""
        if self._url_password is None:
            return self.url
        parts = urlsplit(self.url)
        user, _, host = parts.netloc.rpartition("@")
        return join_url(parts, f"{user}:***@{host}", parts.query)

    # -- the connection -------------------------------------------------------------

    def _redis(self):
        """This process's client, created on first use."""
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                return self._client
            self._leave_parent_handles(self._client)
            self._client = make_client(
                self.url,
                password=self._url_password,
                password_env=self.password_env,
                socket_timeout=self.socket_timeout,
            )
            self._pid = os.getpid()
            return self._client

    @contextlib.contextmanager
    def _errors(self):
        """Redis failures as CacheError naming the server, never its password."""
        redis = import_redis()
        try:
            yield
        except redis.AuthenticationError as exc:
            hint = ""
            if self._password_dropped and not os.environ.get(self.password_env or ""):
                hint = (
                    " The password given in the URL is not pickled: set "
                    f"{self.password_env} in this process's environment."
                )
            raise CacheError(
                f"The Redis server of the embedding cache {self.url} refused the "
                f"credentials ({exc}).{hint}",
                self.url,
            ) from None
        except redis.RedisError as exc:
            hint = ""
            # Full (maxmemory, noeviction), or a read-only replica; also inside a script.
            if any(part in str(exc) for part in ("OOM command not allowed", "READONLY ")):
                hint = (
                    ". It cannot store more: vectors received before this were cached, "
                    "and a re-run sends only the others. Give it more memory (maxmemory), "
                    "let it evict (maxmemory-policy allkeys-lru) or set a ttl, or point "
                    "the cache at its primary"
                )
            raise CacheError(
                f"The Redis server of the embedding cache {self.url} failed: "
                f"{type(exc).__name__}: {exc}{hint}",
                self.url,
            ) from None

    def _entry_keys(self, hex_keys):
        return [f"{self.prefix}:e:{key}" for key in hex_keys]

    @property
    def _stats_key(self):
        return f"{self.prefix}:stats"

    def close(self):
        """Save this process's hit/miss counts and close the connection.

        The cache reconnects if used again.
        """
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                return
            if self._pending_hits or self._pending_misses:
                with contextlib.suppress(CacheError), self._errors():
                    pipe = self._client.pipeline(transaction=False)
                    self._queue_counters(pipe)
                    pipe.execute()
            self._client.close()
            self._client = self._pid = None

    def _queue_counters(self, pipe):
        for name, value in (("hits", self._pending_hits), ("misses", self._pending_misses)):
            if value:
                pipe.hincrby(self._stats_key, name, value)
        self._pending_hits = self._pending_misses = 0

    # -- reading ----------------------------------------------------------------------

    def _get(self, keys, dim):
        hex_keys = _hex(keys)
        n = len(hex_keys)
        # Distinct keys are fetched once; ``first`` holds each one's first position.
        first = {}
        for position, key in enumerate(hex_keys):
            first.setdefault(key, position)
        unique = list(first) if len(first) < n else hex_keys
        found = np.zeros(len(unique), dtype=bool)
        # Not np.zeros: only the rows of misses need zeroing, and the pages are written once.
        vectors = np.empty((len(unique), dim), dtype=np.float32)
        size = 4 * (_HEADER_WORDS + dim)
        chunk = max(1, min(_CHUNK_KEYS, _CHUNK_BYTES // size))
        client = self._redis()
        with self._lock, self._errors():
            for start in range(0, len(unique), chunk):
                names = self._entry_keys(unique[start : start + chunk])
                pipe = client.pipeline(transaction=False)
                self._queue_counters(pipe)  # rides along: no round trip of its own
                pipe.mget(names)
                values = pipe.execute()[-1]
                where = [first[key] for key in unique[start : start + chunk]]
                chunk_keys = keys[np.asarray(where, dtype=np.intp)]
                self._decode(values, dim, start, where, chunk_keys, names, found, vectors)
        if len(unique) < n:
            index = {key: i for i, key in enumerate(unique)}
            inverse = np.fromiter((index[key] for key in hex_keys), dtype=np.intp, count=n)
            found, vectors = found[inverse], vectors[inverse]
        return found, vectors

    def _decode(self, values, dim, start, where, keys, names, found, out):
        """Check the values of one chunk and copy them into rows ``start:`` of ``out``.

        ``where`` gives the caller's position of each key, to name it in errors, and
        ``keys`` its digest, which salts its row's. Values of the previous format are
        checked by their sums, served, and rewritten in this one.
        """
        by_size = {4 * (_HEADER_WORDS + dim): [], 4 * (_LEGACY_HEADER_WORDS + dim): []}
        for i, value in enumerate(values):
            if value is not None:
                group = by_size.get(len(value))
                if group is None:
                    self._refuse(value, dim, where[i], names[i])
                group.append(i)
        current, legacy = by_size.values()
        for group, magic, words in (
            (current, _MAGIC, _HEADER_WORDS),
            (legacy, _LEGACY_MAGIC, _LEGACY_HEADER_WORDS),
        ):
            if not group:
                continue
            rows = np.frombuffer(b"".join([values[i] for i in group]), dtype="<u4")
            rows = rows.reshape(len(group), words + dim)
            # Another width or format of the same length, or damage: named, or refused.
            for j in np.flatnonzero((rows[:, 0] != magic) | (rows[:, 1] != dim)).tolist():
                self._refuse(values[group[j]], dim, where[group[j]], names[group[j]])
            if len(group) == len(values):  # all hits: one contiguous copy
                positions = np.arange(start, start + len(group))
                out[start : start + len(group)] = rows[:, words:].view(np.float32)
            else:
                positions = start + np.asarray(group)
                out[positions] = rows[:, words:].view(np.float32)
            found[positions] = True
            salts = salts_of(keys[group])
            digests = row_digests(out, salts, positions)
            if words == _HEADER_WORDS:
                bad = digests != np.ascontiguousarray(rows[:, 2:4]).view("<u8").ravel()
            else:
                bad = legacy_row_sums(rows[:, words:]) != rows[:, 2]
            if bad.any():
                name = names[group[int(np.flatnonzero(bad)[0])]]
                raise CacheCorruptionError(
                    f"The value of {name} in the Redis embedding cache {self.url} fails "
                    "its checksum: it was modified or not written by skembed. Delete the "
                    "key, or clear the cache (RedisEmbeddingCache(...).clear()).",
                    self.url,
                )
            if words == _LEGACY_HEADER_WORDS:
                self._upgrade([names[i] for i in group], rows, digests)

    def _upgrade(self, names, rows, digests):
        """Rewrite checked values of the previous format (``rows``) in this one.

        Best effort: a server that refuses writes (a replica) keeps serving them, checked
        by their sums.
        """
        dim = rows.shape[1] - _LEGACY_HEADER_WORDS
        new = np.empty((len(rows), _HEADER_WORDS + dim), dtype="<u4")
        new[:, 0], new[:, 1] = _MAGIC, dim
        new[:, 2:4] = digests.view("<u4").reshape(-1, 2)
        new[:, _HEADER_WORDS:] = rows[:, _LEGACY_HEADER_WORDS:]
        args = [4 * rows.shape[1]]
        for old_row, new_row in zip(rows, new, strict=True):
            args += [old_row[:_LEGACY_HEADER_WORDS].tobytes(), new_row.tobytes()]
        try:
            self._client.eval(_UPGRADE_SCRIPT, len(names), *names, *args)
        except import_redis().RedisError as exc:
            _logger.debug("could not upgrade %d Redis cache values: %s", len(names), exc)

    def _refuse(self, value, dim, position, name):
        """A value that is not a ``dim``-d entry: another width, a newer format, or damage."""
        magic, width = np.frombuffer(value[:8].ljust(8, b"\0"), dtype="<u4").tolist()
        for known, words in ((_MAGIC, _HEADER_WORDS), (_LEGACY_MAGIC, _LEGACY_HEADER_WORDS)):
            if magic == known and width != dim and len(value) == 4 * (words + width):
                raise ValueError(
                    f"Key {position} is cached with a {width}-d vector (in the Redis cache "
                    f"{self.url}), not {dim}-d: a cache key must include the dimensions."
                )
        version = value[3:4]
        if value[:3] == b"SKv" and version.isdigit() and int(version) > _FORMAT:
            raise CacheError(
                f"The value of {name} in the Redis embedding cache {self.url} has format "
                f"version {int(version)}, but this version of skembed reads version "
                f"{_FORMAT}. Upgrade skembed, or use another prefix.",
                self.url,
            )
        raise CacheCorruptionError(
            f"The value of {name} in the Redis embedding cache {self.url} has "
            f"{len(value)} bytes and a header that no {dim}-d entry has: it was truncated, "
            "modified or not written by skembed. Delete the key, or clear the cache.",
            self.url,
        )

    # -- writing ----------------------------------------------------------------------

    def _put(self, array, vectors):
        dim = vectors.shape[1]
        _, first = np.unique(array.view(f"V{KEY_SIZE}").ravel(), return_index=True)
        first.sort()
        rows = np.empty((len(first), _HEADER_WORDS + dim), dtype="<u4")
        rows[:, 0] = _MAGIC
        rows[:, 1] = dim
        rows[:, 2:4] = (
            row_digests(vectors, salts_of(array[first]), first).view("<u4").reshape(-1, 2)
        )
        rows[:, _HEADER_WORDS:] = vectors[first].view(np.uint32)
        raw, size = rows.tobytes(), rows.shape[1] * 4
        heads = [np.array([magic, dim], dtype="<u4").tobytes() for magic in (_MAGIC, _LEGACY_MAGIC)]
        hex_keys = _hex(array[first])
        ttl_ms = 0 if self.ttl is None else max(1, round(self.ttl * 1000))
        chunk = max(1, min(_CHUNK_KEYS, _CHUNK_BYTES // size))
        client = self._redis()
        with self._lock, self._errors():
            script = client.register_script(_PUT_SCRIPT)
            for start in range(0, len(first), chunk):
                stop = min(start + chunk, len(first))
                names = self._entry_keys(hex_keys[start:stop])
                values = [raw[i * size : (i + 1) * size] for i in range(start, stop)]
                hits, misses = self._pending_hits, self._pending_misses
                self._pending_hits = self._pending_misses = 0
                refused, value = script(
                    keys=[self._stats_key, *names],
                    args=[size, ttl_ms, hits, misses, *heads, *values],
                )
                if refused:
                    position = int(first[start + refused - 1])
                    self._refuse(value, dim, position, names[refused - 1])

    # -- management -------------------------------------------------------------------

    def claims(self):
        """Per-text claims as expiring keys ``<prefix>:claim:<hex>``.

        Returns
        -------
        Claims
            Claims through this cache's connection, prefix and error messages.
        """
        return RedisClaims(self)

    @contextlib.contextmanager
    def lock(self, namespace):
        """Exclusive lock on ``namespace`` across processes, machines and threads.

        A Redis key holding a random token, set only if absent and expiring after
        ``lock_timeout`` seconds; a thread renews it while it is held, and only its
        holder deletes it. If the holder dies, the lock expires. Not re-entrant.

        The lock only saves money: a holder that loses it (a server restart, a pause
        longer than ``lock_timeout``) may see a parallel process fetch the same texts,
        never a wrong vector. That is logged as a warning.

        Parameters
        ----------
        namespace : str
            The namespace of the keys being fetched.

        Yields
        ------
        None
        """
        name = f"{self.prefix}:lock:{lock_name(namespace)}"
        token = uuid.uuid4().hex
        expiry_ms = max(1, round(self.lock_timeout * 1000))
        client = self._redis()
        delay = 0.005
        with self._errors():
            while not client.set(name, token, nx=True, px=expiry_ms):
                time.sleep(delay)
                delay = min(2 * delay, 0.2, self.lock_timeout / 4)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(client, name, token, expiry_ms, stop), daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            try:
                client.eval(_RELEASE_SCRIPT, 1, name, token)
            except import_redis().RedisError as exc:
                # Waiters then wait for the expiry; an error here would hide the caller's.
                _logger.warning("could not release the Redis cache lock: %s", exc)

    def _renew(self, client, name, token, expiry_ms, stop):
        redis = import_redis()
        while not stop.wait(expiry_ms / 3000):
            try:
                held = client.eval(_RENEW_SCRIPT, 1, name, token, expiry_ms)
            except redis.RedisError as exc:
                _logger.warning("could not renew the Redis cache lock: %s", exc)
                continue
            if not held:
                _logger.warning(
                    "the Redis cache lock expired while held: another process may fetch "
                    "the same texts (lock_timeout=%s s)",
                    self.lock_timeout,
                )
                return

    def _scan(self, client, pattern):
        """Keys matching ``pattern`` (SCAN, never KEYS), in batches."""
        cursor = 0
        while True:
            cursor, names = client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            if names:
                yield names
            if not cursor:
                return

    def stats(self):
        """Size and use of this prefix's entries (SCAN over every key: for management).

        Returns
        -------
        dict
            ``path`` (the URL, without password), ``prefix``; ``entries`` and
            ``entries_by_dim``; ``size_bytes`` (keys and values, without Redis's own
            per-key overhead); ``hits``/``misses`` of this handle in this process;
            ``total_hits``/``total_misses`` of every process since the last
            :meth:`clear`; ``ttl``.
        """
        client = self._redis()
        by_dim, size = {}, 0
        with self._lock, self._errors():
            pattern = f"{_glob_escape(self.prefix)}:e:*"
            for names in self._scan(client, pattern):
                pipe = client.pipeline(transaction=False)
                for key in names:
                    pipe.strlen(key)
                    pipe.getrange(key, 0, 7)
                answers = pipe.execute()
                for key, length, head in zip(names, answers[::2], answers[1::2], strict=True):
                    if length:  # 0: expired or evicted since the scan
                        magic, dim = np.frombuffer(head.ljust(8, b"\0"), dtype="<u4").tolist()
                        if magic not in (_MAGIC, _LEGACY_MAGIC):  # not ours: count its bytes
                            dim = length // 4 - _HEADER_WORDS
                        by_dim[dim] = by_dim.get(dim, 0) + 1
                        size += len(key) + length
            pipe = client.pipeline(transaction=False)
            self._queue_counters(pipe)
            pipe.hgetall(self._stats_key)
            totals = {k.decode(): int(v) for k, v in pipe.execute()[-1].items()}
            return {
                "path": self.url,
                "prefix": self.prefix,
                "entries": sum(by_dim.values()),
                "entries_by_dim": dict(sorted(by_dim.items())),
                "size_bytes": size,
                "hits": self._hits,
                "misses": self._misses,
                "total_hits": totals.get("hits", 0),
                "total_misses": totals.get("misses", 0),
                "ttl": self.ttl,
            }

    def clear(self):
        """Delete every entry under this prefix and reset the totals (never FLUSHDB).

        The widths recorded for the entries go with them; locks held by running jobs,
        and other resumable state, are left alone.
        """
        client = self._redis()
        prefix = _glob_escape(self.prefix)
        with self._lock, self._errors():
            rooms = [f"{prefix}:state:{room}/*" for room in VECTOR_ROOMS]
            for pattern in (f"{prefix}:e:*", *rooms):
                for names in self._scan(client, pattern):
                    client.unlink(*names)
            client.delete(self._stats_key)
            self._pending_hits = self._pending_misses = 0

    def _state(self, parts):
        return _RedisState(self, f"{self.prefix}:state:{'/'.join(parts)}")


class _RedisState(StateBlob):
    """A piece of resumable state in one Redis string (SET replaces it atomically)."""

    def __init__(self, cache, key):
        self._cache = cache
        self._key = key
        self.location = f"{key} (Redis {cache.url})"

    def read(self):
        client = self._cache._redis()
        with self._cache._errors():
            return client.get(self._key)

    def write(self, data):
        client = self._cache._redis()
        with self._cache._errors():
            client.set(self._key, data)

    def delete(self):
        client = self._cache._redis()
        with self._cache._errors():
            client.delete(self._key)


# -- helpers -------------------------------------------------------------------------


def _hex(array):
    text = array.tobytes().hex()
    width = 2 * KEY_SIZE
    return [text[start : start + width] for start in range(0, len(text), width)]


def _glob_escape(text):
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
