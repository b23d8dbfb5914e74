"""What the cache tests share: keys, vectors, stores to test on, the command line."""

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from skembed._cache import EmbeddingCache, RedisEmbeddingCache, cache_key

#: The repository, for the subprocesses' PYTHONPATH.
ROOT = Path(__file__).resolve().parents[2]


def keys(namespace, n, start=0):
    """``n`` digests of distinct texts in ``namespace``, numbered from ``start``."""
    return [cache_key(namespace, f"text number {i}") for i in range(start, start + n)]


def vectors(n, dim, seed=0):
    """``n`` reproducible random float32 vectors of length ``dim``."""
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@contextlib.contextmanager
def directory_store(path):
    """An :class:`EmbeddingCache` in ``path``, closed afterwards."""
    cache = EmbeddingCache(path)
    try:
        yield cache
    finally:
        cache.close()


@contextlib.contextmanager
def redis_store(server, **options):
    """A :class:`RedisEmbeddingCache` under a prefix of its own (so tests never see each
    other's keys), cleared and closed afterwards."""
    cache = RedisEmbeddingCache(server.url(), prefix=f"test-{uuid.uuid4().hex[:8]}", **options)
    try:
        yield cache
    finally:
        cache.clear()
        cache.close()


def run_cli(*args, **env):
    """``python -m skembed ARGS`` in a subprocess, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "skembed", *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
