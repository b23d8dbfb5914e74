"""Each stored row carries a digest that structured damage cannot pass, in both stores;
caches of the previous format (a 32-bit sum per row) are read and upgraded, never
discarded, never paid for again.
"""

import sqlite3
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import (
    INDEX_FILENAME,
    CacheCorruptionError,
    CacheError,
    _upgrade,
    cache_key,
)
from skembed._cache._digests import legacy_row_sums
from skembed._cache._files import HEADER_SIZE
from tests.cache.helpers import redis_store, v1_sums, write_v1_directory, write_v1_redis
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"

# -- structured damage -----------------------------------------------------------------


def _damage(row, kind, rng):
    """``row`` (uint32 words) damaged in the way ``kind`` names, at random positions."""
    row = row.copy()
    if kind == "swap":  # two distinct words change places: the old sum stays the same
        while True:
            i, j = rng.choice(len(row), 2, replace=False)
            if row[i] != row[j]:
                break
        row[[i, j]] = row[[j, i]]
    elif kind == "sign flips":  # two coordinates change sign: the old sum stays the same
        row[rng.choice(len(row), 2, replace=False)] ^= np.uint32(1 << 31)
    elif kind == "bit flips":
        for bit in rng.choice(32 * len(row), int(rng.integers(1, 9)), replace=False):
            row[bit // 32] ^= np.uint32(1 << int(bit % 32))
    return row


KINDS = ["swap", "sign flips", "bit flips"]


class _Directory:
    """Damage rows of a directory store in its vector file."""

    def __init__(self, tmp_path, keys, vectors):
        self.path = tmp_path / "cache"
        cache = EmbeddingCache(self.path)
        cache.put(keys, vectors)
        cache.close()
        (self.file,) = Path(self.path).glob("vectors-*.f32")
        self.dim = vectors.shape[1]

    def read_row(self, slot):
        data = self.file.read_bytes()
        start = HEADER_SIZE + slot * 4 * self.dim
        return np.frombuffer(data[start : start + 4 * self.dim], dtype="<u4")

    def write_row(self, slot, row):
        with open(self.file, "r+b") as handle:
            handle.seek(HEADER_SIZE + slot * 4 * self.dim)
            handle.write(row.astype("<u4").tobytes())

    def open(self):
        return EmbeddingCache(self.path)


class _Redis:
    """Damage rows of a Redis store in their values."""

    def __init__(self, cache, server, keys, vectors):
        self.cache, self.client, self.keys = cache, server.client(), keys
        cache.put(keys, vectors)

    def _name(self, slot):
        return f"{self.cache.prefix}:e:{self.keys[slot].hex()}"

    def read_row(self, slot):
        return np.frombuffer(self.client.get(self._name(slot))[16:], dtype="<u4")

    def write_row(self, slot, row):
        value = self.client.get(self._name(slot))
        self.client.set(self._name(slot), value[:16] + row.astype("<u4").tobytes())

    def open(self):
        return self.cache


@pytest.fixture(params=["directory", "redis"])
def make_store(request, tmp_path):
    """``make(keys, vectors)``: a filled store of either kind, with damage helpers."""
    if request.param == "directory":
        yield lambda keys, vectors: _Directory(tmp_path, keys, vectors)
        return
    pytest.importorskip("redis")
    server = request.getfixturevalue("redis_server")
    with redis_store(server) as cache:
        yield lambda keys, vectors: _Redis(cache, server, keys, vectors)


@pytest.mark.parametrize("seed", range(6))
def test_structured_damage_of_any_row_is_detected_and_the_others_are_served(make_store, seed):
    # Random sizes (a few large enough to be read and digested in several blocks), random rows,
    # random kinds and positions of damage; every damaged row read alone or with
    # others raises, every intact row is still served exactly.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 120))
    dim = int(rng.choice([3, 16, 384, 1536] if seed % 3 else [1536]))
    if seed % 3 == 0:
        n = 1400  # 8.6 MB: several blocks of 4 MiB
    keys = [cache_key("ns", f"text {seed} {i}") for i in range(n)]
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    store = make_store(keys, vectors)
    damaged = rng.choice(n, int(rng.integers(1, 4)), replace=False).tolist()
    for slot in damaged:
        kind = KINDS[int(rng.integers(len(KINDS)))]
        row = store.read_row(slot)
        bad = _damage(row, kind, rng)
        if kind != "bit flips":  # what the previous format's sum would have served
            assert legacy_row_sums(bad[None]) == legacy_row_sums(row[None])
        store.write_row(slot, bad)
    cache = store.open()
    try:
        for slot in damaged:
            with pytest.raises(CacheCorruptionError, match="checksum"):
                cache.get([keys[slot]], dim)
        with pytest.raises(CacheCorruptionError):
            cache.get(keys, dim)
        intact = [i for i in range(n) if i not in damaged]
        order = rng.permutation(intact)
        found, got = cache.get([keys[i] for i in order], dim)
        assert found.all()
        np.testing.assert_array_equal(got, vectors[order])
    finally:
        if isinstance(store, _Directory):
            cache.close()


def test_a_row_moved_to_another_key_fails_its_digest(tmp_path, redis_server):
    pytest.importorskip("redis")
    # The digest is salted with the key: a value copied under another key (or a record
    # pointed at another entry's row) is not served as that key's vector.
    keys = [cache_key("ns", f"text {i}") for i in range(4)]
    vectors = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    with redis_store(redis_server) as cache:
        cache.put(keys, vectors)
        client = redis_server.client()
        client.set(
            f"{cache.prefix}:e:{keys[1].hex()}", client.get(f"{cache.prefix}:e:{keys[0].hex()}")
        )
        with pytest.raises(CacheCorruptionError, match="checksum"):
            cache.get([keys[1]], 8)
    directory = tmp_path / "cache"
    with _closing(EmbeddingCache(directory)) as c:
        c.put(keys, vectors)
    with sqlite3.connect(directory / INDEX_FILENAME) as conn:
        metas = dict(conn.execute("SELECT id, meta FROM entries"))
        first, second = (int.from_bytes(k[:8], "little", signed=True) for k in keys[:2])
        record = bytearray(metas[second])
        record[20:28] = metas[first][20:28]  # the slot of the first entry's row
        conn.execute("UPDATE entries SET meta = ? WHERE id = ?", (bytes(record), second))
    conn.close()
    with _closing(EmbeddingCache(directory)) as c:
        with pytest.raises(CacheCorruptionError, match="checksum"):
            c.get([keys[1]], 8)
        np.testing.assert_array_equal(c.get([keys[0]], 8)[1], vectors[:1])


class _closing:
    def __init__(self, cache):
        self.cache = cache

    def __enter__(self):
        return self.cache

    def __exit__(self, *exc_info):
        self.cache.close()


# -- the upgrade from format 1 -------------------------------------------------------------


def _texts(n, seed=0):
    return [f"review {seed}-{i}: soft fabric, runs small" for i in range(n)]


def _embedder(fake_server, cache):
    return OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache)


def _expected(texts):
    return np.stack([expected_vector(MODEL, text) for text in texts]).astype(np.float32)


def test_a_directory_cache_of_format_1_is_upgraded_in_place_and_never_paid_again(
    fake_server, tmp_path
):
    texts = _texts(60)
    directory = tmp_path / "cache"
    namespace = _embedder(fake_server, directory)._backend().cache_namespace
    write_v1_directory(directory, [cache_key(namespace, t) for t in texts], _expected(texts))
    (vector_file,) = directory.glob("vectors-*.f32")
    X = _embedder(fake_server, directory).transform(texts)
    np.testing.assert_array_equal(X, _expected(texts))
    assert fake_server.stats(texts=False)["requests"] == 0
    with sqlite3.connect(directory / INDEX_FILENAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert {len(m) for (m,) in conn.execute("SELECT meta FROM entries")} == {36}
    conn.close()
    # The vectors stay where they were, in their file of version 1.
    assert directory.glob("vectors-*.f32").__next__() == vector_file
    assert struct.unpack_from("<I", vector_file.read_bytes(), 8)[0] == 1
    # Upgraded rows are now checked by their digest: a swap is caught.
    with open(vector_file, "r+b") as handle:
        handle.seek(HEADER_SIZE + 5 * 1536 * 4)
        a, b = struct.unpack("<II", handle.read(8))
        handle.seek(HEADER_SIZE + 5 * 1536 * 4)
        handle.write(struct.pack("<II", b, a))
    with pytest.raises(CacheCorruptionError, match="checksums"):
        _embedder(fake_server, directory).transform(texts)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_rows_of_format_1_failing_their_sum_still_fail_after_the_upgrade(tmp_path):
    keys = [cache_key("ns", f"text {i}") for i in range(30)]
    vectors = np.random.default_rng(1).standard_normal((30, 16)).astype(np.float32)
    directory = tmp_path / "cache"
    write_v1_directory(directory, keys, vectors)
    (vector_file,) = directory.glob("vectors-*.f32")
    with open(vector_file, "r+b") as handle:  # one flipped bit in row 7
        handle.seek(HEADER_SIZE + 7 * 16 * 4 + 9)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x10]))
    with _closing(EmbeddingCache(directory)) as cache:
        with pytest.raises(CacheCorruptionError, match="checksums"):
            cache.get([keys[7]], 16)
        others = keys[:7] + keys[8:]
        found, got = cache.get(others, 16)
        assert found.all()
        np.testing.assert_array_equal(got, np.delete(vectors, 7, axis=0))


def test_an_interrupted_upgrade_leaves_format_1_and_the_next_open_finishes_it(
    tmp_path, monkeypatch
):
    keys = [cache_key("ns", f"text {i}") for i in range(50)]
    vectors = np.random.default_rng(2).standard_normal((50, 8)).astype(np.float32)
    directory = tmp_path / "cache"
    write_v1_directory(directory, keys, vectors)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_upgrade, "row_digests", crash)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(directory)
    with sqlite3.connect(directory / INDEX_FILENAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    monkeypatch.undo()
    with _closing(EmbeddingCache(directory)) as cache:
        np.testing.assert_array_equal(cache.get(keys, 8)[1], vectors)


def test_processes_opening_a_format_1_cache_at_once_upgrade_it_once(tmp_path):
    keys = [cache_key("ns", f"text {i}") for i in range(200)]
    vectors = np.random.default_rng(3).standard_normal((200, 32)).astype(np.float32)
    directory = tmp_path / "cache"
    write_v1_directory(directory, keys, vectors)
    results, errors = [], []

    def open_and_read():
        try:
            with _closing(EmbeddingCache(directory)) as cache:
                results.append(cache.get(keys, 32)[1])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_and_read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for got in results:
        np.testing.assert_array_equal(got, vectors)


def test_a_read_only_cache_of_format_1_is_read_by_its_sums_and_left_as_it_is(tmp_path):
    keys = [cache_key("ns", f"text {i}") for i in range(20)]
    vectors = np.random.default_rng(4).standard_normal((20, 8)).astype(np.float32)
    directory = tmp_path / "cache"
    write_v1_directory(directory, keys, vectors)
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    more = [cache_key("ns", f"more {i}") for i in range(5)]
    with _closing(EmbeddingCache(directory, read_only=True)) as cache:
        np.testing.assert_array_equal(cache.get(keys, 8)[1], vectors)
        cache.put(more, vectors[:5])
        assert cache.get(more, 8)[0].all()
        (vector_file,) = directory.glob("vectors-*.f32")
        with open(vector_file, "r+b") as handle:  # damage the old sum catches
            handle.seek(HEADER_SIZE + 3)
            handle.write(b"\xff")
        with pytest.raises(CacheCorruptionError, match="checksums"):
            cache.get(keys[:1], 8)
        with open(vector_file, "r+b") as handle:
            handle.seek(HEADER_SIZE)
            handle.write(before[vector_file.name][HEADER_SIZE : HEADER_SIZE + 8])
    after = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
    # Nothing written but SQLite's empty log and its shared-memory file, which let it
    # read while another process writes (in a directory it may write to).
    assert after.pop(f"{INDEX_FILENAME}-wal", b"") == b""
    after.pop(f"{INDEX_FILENAME}-shm", None)
    assert after == before


def test_a_newer_format_is_refused_by_name(tmp_path, redis_server):
    pytest.importorskip("redis")
    keys = [cache_key("ns", f"text {i}") for i in range(3)]
    directory = tmp_path / "cache"
    write_v1_directory(directory, keys, np.ones((3, 4)))
    with sqlite3.connect(directory / INDEX_FILENAME) as conn:
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    for read_only in (False, True):
        with pytest.raises(CacheError, match=r"format version 3, but .* reads version 2"):
            EmbeddingCache(directory, read_only=read_only)
    with redis_store(redis_server) as cache:
        cache.put(keys, np.ones((3, 4)))
        client = redis_server.client()
        name = f"{cache.prefix}:e:{keys[0].hex()}"
        client.set(name, b"SKv3" + client.get(name)[4:])
        with pytest.raises(CacheError, match=r"format version 3, but .* reads version 2"):
            cache.get(keys, 4)


def test_redis_values_of_format_1_are_served_and_rewritten_in_format_2(fake_server, redis_server):
    pytest.importorskip("redis")
    texts = _texts(40, seed=1)
    with redis_store(redis_server) as cache:
        namespace = _embedder(fake_server, cache)._backend().cache_namespace
        keys = [cache_key(namespace, t) for t in texts]
        client = redis_server.client()
        write_v1_redis(client, cache.prefix, keys[:20], _expected(texts[:20]))
        write_v1_redis(client, cache.prefix, keys[20:], _expected(texts[20:]), ttl_ms=600_000)
        assert cache.stats()["entries_by_dim"] == {1536: 40}
        # A put of keys held in format 1 keeps them (the first write wins), no error.
        cache.put(keys[:2], np.zeros((2, 1536)) + 0.5)
        X = _embedder(fake_server, cache).transform(texts)
        np.testing.assert_array_equal(X, _expected(texts))
        assert fake_server.stats(texts=False)["requests"] == 0
        for i, key in enumerate(keys):
            value = client.get(f"{cache.prefix}:e:{key.hex()}")
            assert value[:4] == b"SKv2" and len(value) == 16 + 4 * 1536
            ttl = client.pttl(f"{cache.prefix}:e:{key.hex()}")
            assert (ttl == -1) if i < 20 else (0 < ttl <= 600_000)
        np.testing.assert_array_equal(cache.get(keys, 1536)[1], _expected(texts))
        assert cache.stats()["entries_by_dim"] == {1536: 40}


def test_redis_values_of_format_1_failing_their_sum_are_refused(redis_server):
    pytest.importorskip("redis")
    keys = [cache_key("ns", f"text {i}") for i in range(6)]
    vectors = np.random.default_rng(5).standard_normal((6, 8)).astype(np.float32)
    with redis_store(redis_server) as cache:
        client = redis_server.client()
        write_v1_redis(client, cache.prefix, keys, vectors)
        name = f"{cache.prefix}:e:{keys[2].hex()}"
        value = bytearray(client.get(name))
        value[20] ^= 1
        client.set(name, bytes(value))
        with pytest.raises(CacheCorruptionError, match="checksum"):
            cache.get(keys, 8)
        assert client.get(name) == bytes(value)  # not rewritten
        others = keys[:2] + keys[3:]
        np.testing.assert_array_equal(cache.get(others, 8)[1], np.delete(vectors, 2, axis=0))


def test_v1_helpers_match_the_checksum_format_1_defined():
    # The helpers stand for the previous release's writer: their sum is its sum.
    vectors = np.random.default_rng(6).standard_normal((5, 7)).astype(np.float32)
    words = vectors.view(np.uint32).astype(np.uint64)
    np.testing.assert_array_equal(v1_sums(vectors), (words.sum(axis=1) % 2**32).astype(np.uint32))
