"""A damaged cache gives a clear error naming the file and what to do, or starts empty:
never a wrong vector.

tests/cache/test_cache.py covers a truncated vector file, a modified vector, a replaced or
missing vector file, a garbage index, garbage in index records, a newer index format
and a foreign database. This file adds the cases it lacks, checks that the advice in
each message works, fuzzes both files, and goes end to end through the transformer.
"""

import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import INDEX_FILENAME, CacheCorruptionError, CacheError, cache_key
from tests.cache.helpers import run_cli as skembed_cli
from tests.fake_openai import expected_vector

N, DIM = 40, 16
KEYS = [cache_key("ns", f"text {i}") for i in range(N)]
VECTORS = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


@pytest.fixture
def filled(tmp_path):
    """A closed cache holding VECTORS under KEYS."""
    directory = tmp_path / "cache"
    cache = EmbeddingCache(directory)
    cache.put(KEYS, VECTORS)
    cache.close()
    return directory


def vector_file(directory):
    (path,) = Path(directory).glob("vectors-*.f32")
    return path


def read_all(directory, dim=DIM):
    cache = EmbeddingCache(directory)
    try:
        return cache.get(KEYS, dim)
    finally:
        cache.close()


def assert_starts_over_after_clear(directory):
    """The advice 'python -m skembed cache clear' works, and the cache is usable again."""
    cleared = skembed_cli("cache", "clear", "--dir", directory)
    assert cleared.returncode == 0, cleared.stderr
    found, _ = read_all(directory)
    assert not found.any()
    cache = EmbeddingCache(directory)
    cache.put(KEYS, VECTORS)
    np.testing.assert_array_equal(cache.get(KEYS, DIM)[1], VECTORS)
    cache.close()
    assert [p.name for p in Path(directory).glob("vectors-*")] == [vector_file(directory).name]


# -- the index ---------------------------------------------------------------------------


def test_truncated_index_names_it_and_deleting_it_starts_an_empty_cache(filled):
    index = filled / INDEX_FILENAME
    os.truncate(index, index.stat().st_size // 2)
    with pytest.raises(CacheCorruptionError, match="is damaged") as info:
        read_all(filled)
    assert info.value.path == str(index)
    assert f"python -m skembed cache clear --dir {filled}" in str(info.value)
    assert f"delete the directory {filled}" in str(info.value)
    # Following the advice: the index and the vector files it pointed at go, and the
    # cache starts empty (every key a miss, to be fetched again).
    orphan = vector_file(filled)
    assert_starts_over_after_clear(filled)
    assert not orphan.exists()
    # Deleting only the index works too: the next clear removes the orphaned file.
    orphan = vector_file(filled)
    index.unlink()
    found, _ = read_all(filled)
    assert not found.any()
    assert_starts_over_after_clear(filled)
    assert not orphan.exists()


def test_index_truncated_to_nothing_is_an_empty_cache(filled):
    os.truncate(filled / INDEX_FILENAME, 0)
    found, vectors = read_all(filled)
    assert not found.any() and not vectors.any()


def test_garbage_in_the_write_ahead_log_is_ignored(filled):
    (filled / f"{INDEX_FILENAME}-wal").write_bytes(np.random.default_rng(1).bytes(8192))
    found, vectors = read_all(filled)
    assert found.all()
    np.testing.assert_array_equal(vectors, VECTORS)


# -- the vector file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda h: h.write(b"NOTMAGIC"), "does not match the index"),
        (lambda h: (h.seek(8), h.write(struct.pack("<I", 3))), "has format version 3, but"),
        (lambda h: (h.seek(12), h.write(struct.pack("<I", 8))), "does not match the index"),
        (lambda h: h.truncate(30), r"is truncated \(no header\)"),
        (lambda h: h.truncate(0), r"is truncated \(no header\)"),
    ],
    ids=["garbage-magic", "newer-format", "header-width", "cut-in-header", "empty"],
)
def test_damaged_vector_file_header_names_the_file_and_clear_repairs_it(filled, damage, message):
    path = vector_file(filled)
    with open(path, "r+b") as handle:
        damage(handle)
    with pytest.raises(CacheCorruptionError, match=message) as info:
        read_all(filled)
    assert info.value.path == str(path)
    assert f"python -m skembed cache clear --dir {filled}" in str(info.value)
    assert_starts_over_after_clear(filled)


def test_index_and_vector_file_disagreeing_on_the_width_never_serve_a_vector(filled):
    with sqlite3.connect(filled / INDEX_FILENAME) as conn:
        conn.execute("UPDATE files SET dim = 8")
    conn.close()
    # Asked for the true width, the entries are refused as another width...
    with pytest.raises(ValueError, match=r"cached with a 8-d vector \(in .*vectors-16-"):
        read_all(filled, DIM)
    # ...and asked for the width the index claims, the file's header refuses them.
    with pytest.raises(CacheCorruptionError, match="does not match the index"):
        read_all(filled, 8)


def test_torn_tail_left_by_a_crashed_writer_is_skipped(filled):
    path = vector_file(filled)
    with open(path, "ab") as handle:  # half a row that no index entry points at
        handle.write(np.random.default_rng(2).bytes(4 * DIM // 2 + 3))
    more = [cache_key("ns", f"more {i}") for i in range(5)]
    cache = EmbeddingCache(filled)
    cache.put(more, VECTORS[:5] * 2)
    np.testing.assert_array_equal(cache.get(KEYS, DIM)[1], VECTORS)
    np.testing.assert_array_equal(cache.get(more, DIM)[1], VECTORS[:5] * 2)
    cache.close()


# -- fuzzing: whatever the damage, a served vector is the stored one ---------------------


@pytest.mark.parametrize("target", ["vectors", "index"])
# Seed 179 damages the index so that SQLite quotes undecodable text in its error.
@pytest.mark.parametrize("seed", [*range(12), 179])
def test_random_damage_never_yields_a_wrong_vector(filled, target, seed):
    rng = np.random.default_rng(seed)
    path = vector_file(filled) if target == "vectors" else filled / INDEX_FILENAME
    data = bytearray(path.read_bytes())
    for _ in range(rng.integers(1, 4)):
        start = int(rng.integers(0, len(data)))
        stop = min(len(data), start + int(rng.integers(1, 64)))
        data[start:stop] = rng.bytes(stop - start)
    if rng.random() < 0.3:
        del data[int(rng.integers(0, len(data))) :]
    path.write_bytes(bytes(data))
    try:
        found, vectors = read_all(filled)
    except CacheError as error:
        assert error.path and str(error.path) in str(error)
        assert "Delete the directory" in str(error) or "cache clear" in str(error)
        return
    except ValueError as error:  # a damaged width: refused by name, as another width
        assert "is cached with a" in str(error)
        return
    np.testing.assert_array_equal(vectors[found], VECTORS[found])
    assert not vectors[~found].any()


# -- end to end --------------------------------------------------------------------------


def test_transformer_refuses_a_damaged_cache_before_sending_anything(fake_server, tmp_path):
    texts = [f"review {i}" for i in range(30)]
    cache = str(tmp_path / "cache")
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache)
    embedder.transform(texts)
    path = vector_file(cache)
    with open(path, "r+b") as handle:  # one flipped byte in the middle of a vector
        handle.seek(64 + 7 * 1536 * 4 + 100)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x40]))
    fake_server.reset_stats()
    with pytest.raises(CacheCorruptionError, match="do not match their checksums") as info:
        embedder.transform(texts)
    assert info.value.path == str(path)
    assert fake_server.stats(texts=False)["requests"] == 0
    # The advice in the message repairs it, keeping what reads back: the re-run pays
    # again for the damaged vector only.
    assert skembed_cli("cache", "clear", "--dir", cache).returncode == 0
    X = embedder.transform(texts)
    want = np.stack([expected_vector("text-embedding-3-small", text) for text in texts])
    np.testing.assert_allclose(X, want, atol=1e-6)
    assert fake_server.stats()["text_counts"] == {texts[7]: 1}
