"""The persistent embedding cache: stores of float32 vectors keyed by text digests.

``_base``
    :class:`CacheStore`, the contract every store fulfils, and what stores share: the
    errors, :func:`cache_key`, :func:`default_cache_dir`, the hit/miss counters and the
    per-process (fork, exit) bookkeeping.
``_digests``
    The per-row digest both stores keep with each vector and check on every read.
``_directory``
    :class:`EmbeddingCache`: an SQLite index and vector files in a directory.
``_files``
    Its operating-system side: locks, positioned I/O, fsync, the formats on disk.
``_sqlite``
    Its SQLite side: connections (read-only ones, for a directory it cannot write),
    transactions.
``_upgrade``
    Its upgrade from format 1 (a sum per row) to format 2 (a digest per row).
``_redis``
    :class:`RedisEmbeddingCache`: a Redis server shared by a cluster.

This module turns the estimators' ``cache`` parameter into a store
(:func:`resolve_cache`).
"""

from __future__ import annotations

import os
import threading

from ._base import (
    CacheCorruptionError,
    CacheError,
    CacheStore,
    CacheWarning,
    StateBlob,
    cache_key,
    default_cache_dir,
)
from ._directory import INDEX_FILENAME, EmbeddingCache
from ._files import StateFile
from ._redis import RedisEmbeddingCache, cache_from_url

__all__ = [
    "INDEX_FILENAME",
    "CacheCorruptionError",
    "CacheError",
    "CacheStore",
    "CacheWarning",
    "EmbeddingCache",
    "RedisEmbeddingCache",
    "StateBlob",
    "StateFile",
    "cache_key",
    "default_cache_dir",
    "resolve_cache",
]

_resolved = {}
_resolved_lock = threading.Lock()


def resolve_cache(spec):
    """Turn a ``cache`` parameter value into an open cache, or ``None``.

    Handles are kept per directory and process, so calling this for every
    ``transform`` costs a dictionary look-up.

    Parameters
    ----------
    spec : "default", bool, None, str, path-like or CacheStore
        ``"default"`` or ``True``: the per-user cache (:func:`default_cache_dir`).
        ``None`` or ``False``: no cache. A ``redis://`` or ``rediss://`` URL (without
        a password): a :class:`RedisEmbeddingCache`. A path: the cache in that
        directory (write ``"./default"`` for a directory named ``default``). A store
        (an :class:`EmbeddingCache`, a ``RedisEmbeddingCache``): itself.

    Returns
    -------
    CacheStore or None

    Examples
    --------
    >>> resolve_cache(None) is None
    True
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, CacheStore):
        return spec
    factory = EmbeddingCache
    if spec is True or (isinstance(spec, str) and spec == "default"):
        path = default_cache_dir()
    elif isinstance(spec, str) and spec.startswith(("redis://", "rediss://")):
        factory, path = cache_from_url, spec
    elif isinstance(spec, (str, os.PathLike)):
        path = os.path.abspath(os.path.expanduser(os.fspath(spec)))
    else:
        raise TypeError(
            "The 'cache' parameter must be 'default', True, False, None, a directory path, "
            f"a redis:// URL or a cache object; got {type(spec).__name__}."
        )
    with _resolved_lock:
        cache = _resolved.get(path)
        if cache is None:
            cache = _resolved[path] = factory(path)
        return cache
