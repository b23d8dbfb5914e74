"""Per-text claims: which worker is fetching which text, so that no text is paid twice.

A worker claims the texts it is about to send; a claim has an owner and an expiry,
renewed while the worker is alive, so a dead worker's claims lapse. Other workers skip
claimed texts, fetch the rest at once, and wait only for the claimed ones, reading them
from the cache when their owner has stored them (an owner stores a text's vector
before it releases the claim). This replaces one lock per vector space, under which
workers embedding *different* texts took turns.

Keys are the first 16 bytes of the cache keys (the cache's own identity of a text in a
vector space), so a claim names no text. Two stores:

- :class:`SQLiteClaims`: a small SQLite file beside a directory cache's index (its own
  file, so claiming never waits for the index's writers), one transaction per call;
- :class:`RedisClaims`: one expiring key per text under the Redis cache's prefix, set,
  renewed and released by Lua scripts that compare the owner.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sqlite3
import threading
import time

import numpy as np

from ._base import CacheError, key_array

__all__ = ["Claims", "LocalClaims", "RedisClaims", "SQLiteClaims"]

_KEY_BYTES = 16
# SQLite's default limit of variables per statement is 999 (32766 since 3.32).
_CHUNK = 900

_TAKE_SCRIPT = """
local taken = {}
for i, key in ipairs(KEYS) do
    local owner = redis.call('GET', key)
    if not owner then
        redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
        taken[i] = 1
    elseif owner == ARGV[1] then
        taken[i] = 1
    else
        taken[i] = 0
    end
end
return taken
"""
_RENEW_SCRIPT = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 0
"""
_RELEASE_SCRIPT = """
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


def _short(keys):
    """The claim identity of each cache key: its first 16 bytes."""
    return [bytes(key[:_KEY_BYTES]) for key in key_array(keys)]


class Claims(abc.ABC):
    """Claims on texts being fetched, shared by every worker of one cache."""

    @abc.abstractmethod
    def take(self, keys, owner, ttl):
        """Claim for ``owner`` every key no live claim of another owner holds.

        Parameters
        ----------
        keys : ndarray of shape (n, 32), dtype uint8
            Cache keys (distinct).
        owner : str
            The claiming worker's identity (unique per job).
        ttl : float
            Seconds the claims last unless renewed.

        Returns
        -------
        ndarray of shape (n,), dtype bool
            The keys ``owner`` holds now (newly or already).
        """

    @abc.abstractmethod
    def renew(self, keys, owner, ttl):
        """Push back the expiry of ``owner``'s claims on ``keys`` to ``ttl`` from now."""

    @abc.abstractmethod
    def release(self, keys, owner):
        """Drop ``owner``'s claims on ``keys`` (others' claims are left alone)."""


class LocalClaims(Claims):
    """Claims within one process (a cache no other process can write)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held = {}  # key -> (owner, expires)

    def take(self, keys, owner, ttl):
        now = time.monotonic()
        taken = np.zeros(len(keys), dtype=bool)
        with self._lock:
            for i, key in enumerate(_short(keys)):
                holder = self._held.get(key)
                if holder is None or holder[0] == owner or holder[1] < now:
                    self._held[key] = (owner, now + ttl)
                    taken[i] = True
        return taken

    def renew(self, keys, owner, ttl):
        expires = time.monotonic() + ttl
        with self._lock:
            for key in _short(keys):
                if self._held.get(key, (None,))[0] == owner:
                    self._held[key] = (owner, expires)

    def release(self, keys, owner):
        with self._lock:
            for key in _short(keys):
                if self._held.get(key, (None,))[0] == owner:
                    del self._held[key]


class SQLiteClaims(Claims):
    """Claims in a SQLite file shared by the processes of one machine's cache directory.

    Parameters
    ----------
    path : str
        The claims file (created on first use).
    cache_path : str
        The cache directory it belongs to: the ``path`` of its errors, like every
        error of that cache (a full disk is the directory's).
    """

    def __init__(self, path, cache_path):
        self.path = path
        self.cache_path = cache_path
        self._lock = threading.Lock()
        self._conn = None
        self._pid = None

    def __getstate__(self):
        return {"path": self.path, "cache_path": self.cache_path}

    def __setstate__(self, state):
        self.__init__(state["path"], state["cache_path"])

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            try:
                if self._conn is None or self._pid != os.getpid():
                    # Private like every file of the cache, whatever the umask (SQLite
                    # gives its journal the database file's mode).
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
                    # A connection is never used across fork: the child opens its own.
                    self._conn = sqlite3.connect(
                        self.path, timeout=60, isolation_level=None, check_same_thread=False
                    )
                    self._pid = os.getpid()
                    # Claims need no durability (a crash drops its own, which lapse anyway)
                    # and a small footprint: a rollback journal, no fsync.
                    self._conn.execute("PRAGMA journal_mode=TRUNCATE")
                    self._conn.execute("PRAGMA synchronous=OFF")
                    self._conn.execute(
                        "CREATE TABLE IF NOT EXISTS claims (key BLOB PRIMARY KEY, "
                        "owner TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID"
                    )
                conn = self._conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back itself (disk full)
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise CacheError(
                    f"The claims file {self.path} of the embedding cache cannot be used "
                    f"({exc}). It holds only who is fetching what: delete it if it is "
                    "damaged.",
                    self.cache_path,
                ) from None

    def take(self, keys, owner, ttl):
        short = _short(keys)
        now = time.time()
        mine = set()
        with self._transaction() as conn:
            # Claims that lapsed (their owner died) are taken over.
            conn.execute("DELETE FROM claims WHERE expires < ?", (now,))
            conn.executemany(
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?)",
                [(key, owner, now + ttl) for key in short],
            )
            for start in range(0, len(short), _CHUNK):
                chunk = short[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                mine.update(
                    row[0]
                    for row in conn.execute(
                        f"SELECT key FROM claims WHERE owner = ? AND key IN ({marks})",
                        [owner, *chunk],
                    )
                )
        return np.fromiter((key in mine for key in short), dtype=bool, count=len(short))

    def renew(self, keys, owner, ttl):
        short = _short(keys)
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE claims SET expires = ? WHERE key = ? AND owner = ?",
                [(time.time() + ttl, key, owner) for key in short],
            )

    def release(self, keys, owner):
        short = _short(keys)
        with self._transaction() as conn:
            conn.executemany(
                "DELETE FROM claims WHERE key = ? AND owner = ?", [(key, owner) for key in short]
            )


class RedisClaims(Claims):
    """Claims as expiring Redis keys ``<prefix>:claim:<hex>``, shared by a cluster.

    Parameters
    ----------
    store : RedisEmbeddingCache
        The cache whose client, prefix and error translation the claims use.
    """

    def __init__(self, store):
        self.store = store

    def _names(self, keys):
        return [f"{self.store.prefix}:claim:{key.hex()}" for key in _short(keys)]

    def _run(self, script, keys, *args):
        names = self._names(keys)
        results = []
        with self.store._errors():
            client = self.store._redis()
            for start in range(0, len(names), _CHUNK):
                chunk = names[start : start + _CHUNK]
                results += client.eval(script, len(chunk), *chunk, *args) or []
        return results

    def take(self, keys, owner, ttl):
        if not len(keys):
            return np.zeros(0, dtype=bool)
        taken = self._run(_TAKE_SCRIPT, keys, owner, max(1, round(ttl * 1000)))
        return np.asarray(taken, dtype=np.int64).astype(bool)

    def renew(self, keys, owner, ttl):
        if len(keys):
            self._run(_RENEW_SCRIPT, keys, owner, max(1, round(ttl * 1000)))

    def release(self, keys, owner):
        if len(keys):
            self._run(_RELEASE_SCRIPT, keys, owner)
