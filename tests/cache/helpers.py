"""What the cache tests share: keys, vectors, stores to test on, the command line."""

import contextlib
import os
import sqlite3
import struct
import subprocess
import sys
import time
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


# -- caches of format 1 (skembed before issue 15), for the upgrade tests -----------------

#: The directory store's index schema of format 1 (unchanged in format 2).
V1_SCHEMA = """
CREATE TABLE files (
    file_id INTEGER PRIMARY KEY AUTOINCREMENT,
    dim INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    uid BLOB NOT NULL,
    entries INTEGER NOT NULL
);
CREATE TABLE entries (id INTEGER PRIMARY KEY, meta BLOB NOT NULL, used INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters VALUES ('hits', 0), ('misses', 0);
"""
V1_RECORD = np.dtype(
    [("id", "<i8"), ("k2", "<i8"), ("file_id", "<u4"), ("slot", "<i8"), ("checksum", "<u4")]
)


def v1_sums(vectors):
    """Format 1's row checksum: the wrapping sum of the row's 32-bit words."""
    words = np.ascontiguousarray(vectors, dtype=np.float32).view(np.uint32)
    return words.sum(axis=1, dtype=np.uint32)


def write_v1_directory(path, keys, vectors):
    """Write a directory cache of format 1 holding ``vectors`` under ``keys``, byte for
    byte as skembed wrote it before format 2 (index records with a 32-bit sum, vector
    file header version 1); closed cleanly (no write-ahead log left)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32)
    n, dim = vectors.shape
    uid = uuid.uuid4().bytes
    name = f"vectors-{dim}-{uid.hex()[:16]}.f32"
    header = struct.pack("<8sII16s", b"SKEMBVEC", 1, dim, uid).ljust(64, b"\0")
    (path / name).write_bytes(header + vectors.tobytes())
    (path / "locks").mkdir(mode=0o700)
    (path / "write.lock").touch(mode=0o600)
    conn = sqlite3.connect(path / "index.sqlite3", isolation_level=None)
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in V1_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    file_id = conn.execute(
        "INSERT INTO files (dim, name, uid, entries) VALUES (?, ?, ?, ?)", (dim, name, uid, n)
    ).lastrowid
    records = np.zeros(n, dtype=V1_RECORD)
    records["id"] = np.ascontiguousarray(keys[:, :8]).view("<i8").ravel()
    records["k2"] = np.ascontiguousarray(keys[:, 8:16]).view("<i8").ravel()
    records["file_id"], records["slot"] = file_id, np.arange(n)
    records["checksum"] = v1_sums(vectors)
    now = int(time.time())
    conn.executemany(
        "INSERT INTO entries VALUES (?, ?, ?)",
        [(int(r["id"]), r.tobytes(), now) for r in records],
    )
    conn.execute("COMMIT")
    conn.close()


def write_v1_redis(client, prefix, keys, vectors, ttl_ms=None):
    """Store ``vectors`` under ``keys`` as Redis values of format 1 (magic ``SKv1``,
    width, 32-bit sum, row)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    rows = np.empty((n, 3 + dim), dtype="<u4")
    rows[:, 0] = np.frombuffer(b"SKv1", dtype="<u4")[0]
    rows[:, 1] = dim
    rows[:, 2] = v1_sums(vectors)
    rows[:, 3:] = vectors.view(np.uint32)
    for key, row in zip(keys, rows, strict=True):
        client.set(f"{prefix}:e:{key.hex()}", row.tobytes(), px=ttl_ms)
