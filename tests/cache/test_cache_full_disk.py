"""A full disk (or quota, or a file system turned read-only) during a job is a clear
CacheError naming the cache and what to do, never a bare OSError; the job stops as for
any failing cache write, and what was cached before is kept and never paid again.

The property test makes the cache's own write helper fail (the vector file's
positioned write, ``_directory.pwrite_all``) from a random write on; the others fill
a real tiny tmpfs when ``mount`` works here (root), SQLite's own page limit, and a
Redis server's ``maxmemory``.
"""

import contextlib
import errno
import subprocess

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import CacheError, _directory, cache_key
from tests.cache.helpers import redis_store
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIMENSIONS = 32


def expected(texts):
    return np.stack([expected_vector(MODEL, t, DIMENSIONS) for t in texts])


def embedder(fake_server, cache, **params):
    return OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, dimensions=DIMENSIONS, cache=cache, **params
    )


@pytest.mark.parametrize("seed", range(6))
def test_a_disk_that_fills_up_mid_job_is_a_clear_error_and_loses_no_cached_vector(
    fake_server, tmp_path, monkeypatch, seed
):
    # Answers take 20 ms, as a real service's take more: the bound below counts answers
    # that arrive while the cache writes, which a server answering at once multiplies.
    fake_server.configure(latency=0.02)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 200))
    batch_size, concurrency = int(rng.integers(8, 33)), int(rng.integers(1, 5))
    texts = [f"order {seed}-{i}: arrived broken" for i in range(n)]
    code = [errno.ENOSPC, errno.EDQUOT, errno.EROFS][seed % 3]
    room = full = int(rng.integers(1, n)) * 4 * DIMENSIONS  # bytes of rows left on disk
    writes = []  # rows each write was asked to store; the failing ones too
    real_write = _directory.pwrite_all

    def filling(handle, data, offset):
        nonlocal room
        writes.append(len(data) // (4 * DIMENSIONS))
        if len(data) > room:  # what fits is written (a torn tail), then the disk is full
            real_write(handle, data[:room], offset)
            room = 0
            raise OSError(code, f"{errno.errorcode[code]} (simulated)")
        room -= len(data)
        return real_write(handle, data, offset)

    monkeypatch.setattr(_directory, "pwrite_all", filling)
    cache = EmbeddingCache(tmp_path / "cache")
    model = embedder(fake_server, cache, batch_size=batch_size, max_concurrency=concurrency)
    with pytest.raises(CacheError) as info:
        model.transform(texts)
    error = info.value
    assert not isinstance(error, OSError)
    assert error.path == cache.path and cache.path in str(error)
    assert errno.errorcode[code] in str(error) and "Free some space" in str(error)
    assert error.__cause__.errno == code
    # What was cached is exact; what was paid for but not cached is at most the write
    # that failed and what the threads had under way then (one answer waiting and one
    # in flight, each).
    namespace = model._backend().cache_namespace
    found, vectors = cache.get([cache_key(namespace, t) for t in texts], DIMENSIONS)
    np.testing.assert_allclose(vectors[found], expected(texts)[found], atol=1e-6)
    sent = set(fake_server.stats()["text_counts"])
    cached = {t for t, f in zip(texts, found, strict=True) if f}
    assert cached <= sent
    lost = sent - cached
    failed = next(
        i for i, rows in enumerate(writes) if sum(writes[: i + 1]) * 4 * DIMENSIONS > full
    )
    assert len(lost) <= writes[failed] + 2 * concurrency * batch_size
    # Space freed: the re-run sends only what is not cached.
    monkeypatch.undo()
    X = model.transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    counts = fake_server.stats()["text_counts"]
    assert set(counts) == set(texts)
    assert {t for t, c in counts.items() if c > 1} <= lost
    cache.close()


def test_sqlite_refusing_to_grow_is_a_clear_error(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    keys = [cache_key("ns", f"text {i}") for i in range(5000)]
    cache.put(keys[:10], np.ones((10, 4)))
    pages = cache._conn.execute("PRAGMA page_count").fetchone()[0]
    cache._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(CacheError, match="cannot be written: database or disk is full"):
        cache.put(keys[10:], np.ones((4990, 4)))
    np.testing.assert_array_equal(cache.get(keys[:10], 4)[1], np.ones((10, 4)))
    assert not cache.get(keys[10:], 4)[0].any()
    cache.close()


@contextlib.contextmanager
def tiny_file_system(path, size):
    """A tmpfs of ``size`` mounted at ``path``, or skip."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_really_full_disk(fake_server, tmp_path):
    with tiny_file_system(tmp_path / "small", "256k") as small:
        cache = EmbeddingCache(small / "cache")
        texts = [f"comment {i}: great value" for i in range(2000)]
        model = embedder(fake_server, cache, batch_size=50, max_concurrency=1)
        full = "No space left on device|database or disk is full"
        with pytest.raises(CacheError, match=full) as info:
            model.transform(texts)
        assert info.value.path == cache.path
        namespace = model._backend().cache_namespace
        found, vectors = cache.get([cache_key(namespace, t) for t in texts], DIMENSIONS)
        assert 0 < found.sum() < len(texts)
        np.testing.assert_allclose(vectors[found], expected(texts)[found], atol=1e-6)
        # Resumable state on a full disk: the same clear error.
        with pytest.raises(CacheError, match="No space left on device"):
            cache.state("batch_jobs/ledger.json").write(b"x" * 1_000_000)
        cache.close()


def test_a_full_redis_server_is_a_clear_error(fake_server, redis_server):
    pytest.importorskip("redis")
    client = redis_server.client()
    before = client.config_get("maxmemory*")
    with redis_store(redis_server) as cache:
        texts = [f"comment {i}: great value" for i in range(300)]
        model = embedder(fake_server, cache, batch_size=20, max_concurrency=1)
        model.transform(texts[:20])
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(used + 50_000))
        try:
            with pytest.raises(CacheError, match="OOM command .* It cannot store more") as info:
                model.transform(texts)
        finally:
            for name, value in before.items():
                client.config_set(name, value)
        assert info.value.path == redis_server.url()
        namespace = model._backend().cache_namespace
        found, vectors = cache.get([cache_key(namespace, t) for t in texts], DIMENSIONS)
        assert found[:20].all()
        np.testing.assert_allclose(vectors[found], expected(texts)[found], atol=1e-6)
