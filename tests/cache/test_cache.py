"""The persistent embedding cache: correctness, concurrency, crashes, corruption, CLI."""

import contextlib
import copy
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from skembed._cache import (
    INDEX_FILENAME,
    CacheCorruptionError,
    CacheError,
    CacheWarning,
    EmbeddingCache,
    _directory,
    _files,
    cache_key,
    default_cache_dir,
    resolve_cache,
)
from tests.cache.helpers import ROOT, directory_store
from tests.cache.helpers import keys as _keys
from tests.cache.helpers import run_cli as _skembed
from tests.cache.helpers import vectors as _vectors


def _vector_file(path):
    (name,) = [p for p in os.listdir(path) if p.startswith("vectors-")]
    return Path(path) / name


@pytest.fixture
def cache(tmp_path):
    with directory_store(tmp_path / "cache") as cache:
        yield cache


@pytest.fixture
def filled(tmp_path):
    """A closed cache of ten 16-d vectors under namespace "ns"."""
    directory = tmp_path / "cache"
    cache = EmbeddingCache(directory)
    cache.put(_keys("ns", 10), _vectors(10, 16))
    cache.close()
    return directory


# -- keys ------------------------------------------------------------------------------


def test_cache_key_separates_namespaces_and_framing():
    assert cache_key("ns-a", "text") != cache_key("ns-b", "text")
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("ns", "text") != cache_key("ns", "text ")
    assert cache_key("ns", "caf\u00e9") != cache_key("ns", "cafe\u0301")
    assert cache_key("ns", "text") == cache_key("ns", "text")
    assert len(cache_key("ns", "\ud800 lone surrogate")) == 32


# -- reading and writing ---------------------------------------------------------------


def test_round_trip(cache):
    keys, vectors = _keys("ns", 50), _vectors(50, 16)
    cache.put(keys, vectors.astype(np.float64))
    found, got = cache.get(keys, 16)
    assert found.all()
    assert got.dtype == np.float32 and got.shape == (50, 16)
    np.testing.assert_array_equal(got, vectors)


def test_batched_get_with_mixed_hits_duplicates_and_any_order(cache):
    keys, vectors = _keys("ns", 100), _vectors(100, 8)
    cache.put(keys[:30], vectors[:30])
    cache.put(keys[60:], vectors[60:])
    order = np.random.default_rng(1).permutation(100)
    query = [keys[i] for i in order] + [keys[5], keys[5], keys[45]]
    expected_found = np.array([i < 30 or i >= 60 for i in order] + [True, True, False])
    found, got = cache.get(query, 8)
    np.testing.assert_array_equal(found, expected_found)
    reference = vectors[np.append(order, [5, 5, 45])]
    np.testing.assert_array_equal(got[found], reference[found])
    assert not got[~found].any()  # rows of misses are zero


@pytest.mark.parametrize(
    "select",
    [
        lambda n: np.arange(n),  # file order: read straight into the result
        lambda n: np.arange(n)[::-1],  # reversed: read in file order, then scattered
        lambda n: np.arange(0, n, 2),  # dense: the gaps are read and dropped
        lambda n: np.arange(0, n, 7),  # sparse: one read per row
        lambda n: np.random.default_rng(3).choice(n, 50),  # scattered, with repeats
    ],
    ids=["in order", "reversed", "every 2nd", "every 7th", "random"],
)
def test_reads_of_every_shape_span_several_blocks(cache, select):
    n = 3000  # 4 KiB rows: about three 4 MiB read blocks
    keys, vectors = _keys("ns", n), _vectors(n, 1024)
    cache.put(keys, vectors)
    chosen = select(n)
    found, got = cache.get([keys[i] for i in chosen], 1024)
    assert found.all()
    np.testing.assert_array_equal(got, vectors[chosen])


def test_empty_get_and_put(cache):
    found, got = cache.get([], 4)
    assert found.shape == (0,) and got.shape == (0, 4)
    cache.put([], np.zeros((0, 4)))
    assert cache.stats()["entries"] == 0


def test_key_array_input(cache):
    keys = _keys("ns", 5)
    array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(5, 32)
    cache.put(array, _vectors(5, 4))
    assert cache.get(keys, 4)[0].all()


def test_namespaces_do_not_share_entries(cache):
    cache.put(_keys("model-a|1536", 3), _vectors(3, 4))
    assert not cache.get(_keys("model-b|1536", 3), 4)[0].any()
    assert cache.get(_keys("model-a|1536", 3), 4)[0].all()


def test_vectors_of_several_widths_live_side_by_side(cache):
    cache.put(_keys("small", 4), _vectors(4, 3))
    cache.put(_keys("large", 4), _vectors(4, 300))
    np.testing.assert_array_equal(cache.get(_keys("large", 4), 300)[1], _vectors(4, 300))
    assert cache.stats()["entries_by_dim"] == {3: 4, 300: 4}


def test_bad_inputs_are_rejected_with_clear_errors(cache):
    keys = _keys("ns", 3)
    with pytest.raises(ValueError, match="Key 1 is not a 32-byte digest"):
        cache.get([keys[0], b"short", keys[2]], 4)
    with pytest.raises(ValueError, match="Key 0 is not a 32-byte digest"):
        cache.put(["a text, not a key"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="one vector per key"):
        cache.put(keys, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        cache.get(keys, 0)
    bad = np.zeros((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="Vector 2 contains NaN"):
        cache.put(keys, bad)
    assert cache.stats()["entries"] == 0
    with pytest.raises(ValueError, match="max_size_bytes"):
        EmbeddingCache(cache.path, max_size_bytes=0)


def test_wrong_length_is_rejected(cache):
    keys = _keys("ns", 3)
    cache.put(keys, _vectors(3, 8))
    with pytest.raises(ValueError, match=r"Key 0 is cached with a 8-d vector .*vectors-8-"):
        cache.get(keys, 16)
    with pytest.raises(ValueError, match="Key 1 is cached with a 8-d vector"):
        cache.put([_keys("other", 1)[0], keys[2]], _vectors(2, 16))
    # Nothing of the refused batch was stored, and the 8-d entries are intact.
    assert cache.stats()["entries_by_dim"] == {8: 3}
    np.testing.assert_array_equal(cache.get(keys, 8)[1], _vectors(3, 8))


def test_threads_share_one_handle(cache):
    errors = []

    def work(seed):
        try:
            for batch in range(10):
                keys = _keys("threads", 20, start=100 * seed + (20 * batch) % 60)
                cache.put(keys, np.full((20, 8), float(seed)))
                found, got = cache.get(keys, 8)
                assert found.all() and (got == seed).all()
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


# -- privacy and permissions -----------------------------------------------------------


def test_store_holds_no_text_namespace_or_key(cache, monkeypatch):
    canary_key = "sk-canary-9f8e7d6c5b4a39281706"
    monkeypatch.setenv("OPENAI_API_KEY", canary_key)
    namespace = "https://api.example.invalid/v1|text-embedding-3-small|1536"
    texts = [f"confidential patient note {i} zebra-quartz" for i in range(20)]
    needles = [canary_key, namespace, "zebra-quartz", "confidential", "text-embedding"]

    def scan():
        files = [p for p in Path(cache.path).rglob("*") if p.is_file()]
        assert any(p.name.startswith("vectors-") for p in files)
        for path in files:
            data = path.read_bytes()
            for needle in needles:
                assert needle not in str(path)
                for encoding in ("utf-8", "utf-16-le"):
                    assert needle.encode(encoding) not in data, (path, needle)

    with cache.lock(namespace):
        cache.put([cache_key(namespace, t) for t in texts], _vectors(20, 8))
    cache.get([cache_key(namespace, t) for t in texts], 8)
    scan()  # with the write-ahead log in use
    cache.close()
    scan()


def test_files_are_private_to_the_user(cache):
    cache.put(_keys("ns", 2), _vectors(2, 4))
    with cache.lock("ns"):
        pass
    assert os.stat(cache.path).st_mode & 0o777 == 0o700
    for path in Path(cache.path).rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path


@contextlib.contextmanager
def _read_only(directory):
    """Make ``directory`` unwritable, even for root (immutable), or skip the test."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        undo = ["chmod", "700", str(directory)]
    elif subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
        pytest.skip("cannot make a directory read-only here (chattr +i failed)")
    else:
        undo = ["chattr", "-i", str(directory)]
    try:
        yield directory
    finally:
        subprocess.run(undo, check=True)


def test_read_only_location_falls_back_to_a_temporary_cache(tmp_path):
    with _read_only(tmp_path), pytest.warns(CacheWarning, match="not writable"):
        cache = EmbeddingCache(tmp_path / "cache")
    assert not str(cache.path).startswith(str(tmp_path))
    cache.put(_keys("ns", 3), _vectors(3, 4))
    assert cache.get(_keys("ns", 3), 4)[0].all()
    cache.close()
    fallback = cache.path
    _files.remove_tree(fallback, os.getpid())  # what the exit hook does
    assert not os.path.exists(fallback)


def test_existing_cache_made_read_only_is_read_and_takes_new_vectors_beside_it(filled):
    # More in tests/cache/test_cache_read_only.py.
    with _read_only(filled):
        with pytest.warns(CacheWarning, match="not writable") as caught:
            cache = EmbeddingCache(filled)
            found, got = cache.get(_keys("ns", 12), 16)
            cache.put(_keys("ns", 12), _vectors(12, 16))
            again = cache.get(_keys("ns", 12), 16)
        assert len(caught) == 1
        assert Path(cache.path) == filled and cache.stats()["read_only"]
        assert found.tolist() == [True] * 10 + [False] * 2
        np.testing.assert_array_equal(got[:10], _vectors(10, 16))
        assert again[0].all()
        np.testing.assert_array_equal(again[1], _vectors(12, 16))
        cache.close()


# -- several processes, crashes --------------------------------------------------------

_WRITER = """
import sys
import numpy as np
from skembed._cache import EmbeddingCache, cache_key

cache = EmbeddingCache(sys.argv[1])
start, stop, step = map(int, sys.argv[2:5])
for first in range(start, stop, step):
    ids = range(first, first + step)
    vectors = np.array([np.random.default_rng(i).standard_normal(32) for i in ids])
    cache.put([cache_key("shared", str(i)) for i in ids], vectors)
    print(first, flush=True)
"""


def _expected(ids):
    return np.array([np.random.default_rng(i).standard_normal(32) for i in ids], np.float32)


def test_two_processes_writing_overlapping_keys(tmp_path):
    directory = tmp_path / "cache"
    EmbeddingCache(directory).close()  # both writers then race on writes only
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(directory), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (("0", "3000", "100"), ("1500", "4500", "50"))
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
    cache = EmbeddingCache(directory)
    keys = [cache_key("shared", str(i)) for i in range(4500)]
    found, got = cache.get(keys, 32)
    assert found.all()
    np.testing.assert_array_equal(got, _expected(range(4500)))
    assert cache.stats()["entries"] == 4500  # no key stored twice
    cache.close()


@pytest.mark.slow
def test_kill_9_during_puts_loses_nothing_acknowledged(tmp_path):
    directory = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    chance = random.Random(0)
    acknowledged = []
    start = 0
    for _ in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(directory), str(start), "10000000", "200"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(chance.randint(2, 12)):
            acknowledged.append(int(writer.stdout.readline()))
        time.sleep(chance.uniform(0, 0.02))
        writer.send_signal(signal.SIGKILL)
        # Lines printed before the kill were printed after their put() returned.
        acknowledged += [int(line) for line in writer.stdout.read().split()]
        writer.wait()
        start = acknowledged[-1] + 1000  # the next writer also appends after a torn tail
    cache = EmbeddingCache(directory)
    ids = [first + j for first in acknowledged for j in range(200)]
    found, got = cache.get([cache_key("shared", str(i)) for i in ids], 32)
    assert found.all()
    np.testing.assert_array_equal(got, _expected(ids))
    # Whatever else made it in is whole (the checksums verified every row read).
    everything = [cache_key("shared", str(i)) for i in range(start + 2000)]
    assert cache.get(everything, 32)[0].sum() == cache.stats()["entries"]
    cache.close()


def test_fork_child_reopens_its_own_handles(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    cache = resolve_cache(tmp_path / "cache")
    cache.put(_keys("parent", 3), _vectors(3, 4))
    pid = os.fork()
    if pid == 0:  # child: use the inherited handle, then leave without cleanup
        status = 1
        try:
            found, _ = cache.get(_keys("parent", 3), 4)
            cache.put(_keys("child", 2), _vectors(2, 4))
            status = 0 if found.all() else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get(_keys("child", 2), 4)[0].all()
    assert cache.get(_keys("parent", 3), 4)[0].all()


def test_lock_is_exclusive_across_processes(cache):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from skembed._cache import EmbeddingCache\n"
            "with EmbeddingCache(sys.argv[1]).lock('ns'):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(1.0)\n",
            cache.path,
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    started = time.perf_counter()
    with cache.lock("another namespace"):
        assert time.perf_counter() - started < 0.5
    with cache.lock("ns"):
        waited = time.perf_counter() - started
    holder.wait(timeout=30)
    assert waited > 0.5


# -- other handles changing the store --------------------------------------------------


def test_reader_survives_clear_and_eviction_by_another_handle(tmp_path):
    reader = EmbeddingCache(tmp_path / "cache")
    writer = EmbeddingCache(tmp_path / "cache")
    keys, vectors = _keys("ns", 60), _vectors(60, 256)
    writer.put(keys, vectors)
    assert reader.get(keys, 256)[0].all()  # the reader now holds the vector file open
    writer.clear()
    assert not reader.get(keys, 256)[0].any()
    writer.put(keys[:30], vectors[:30])
    np.testing.assert_array_equal(reader.get(keys[:30], 256)[1], vectors[:30])
    # Eviction rewrites the vector file; the reader follows the index to the new one.
    bounded = EmbeddingCache(tmp_path / "cache", max_size_bytes=80_000)
    bounded.put(keys[30:], vectors[30:])
    assert len(list(Path(bounded.path).glob("vectors-*"))) == 1
    found, got = reader.get(keys, 256)
    assert 0 < found.sum() < 60
    np.testing.assert_array_equal(got[found], vectors[found])
    for handle in (reader, writer, bounded):
        handle.close()


def test_directory_deleted_under_an_open_handle(cache):
    import shutil

    cache.put(_keys("ns", 3), _vectors(3, 4))
    shutil.rmtree(cache.path)
    assert not cache.get(_keys("ns", 3), 4)[0].any()
    cache.put(_keys("ns", 3), _vectors(3, 4))
    assert cache.get(_keys("ns", 3), 4)[0].all()


# -- corruption ------------------------------------------------------------------------


def test_truncated_vector_file_is_an_error_naming_it(filled):
    path = _vector_file(filled)
    os.truncate(path, 64 + 5 * 16 * 4 + 10)
    cache = EmbeddingCache(filled)
    # Rows still wholly in the file are intact and served.
    np.testing.assert_array_equal(cache.get(_keys("ns", 5), 16)[1], _vectors(10, 16)[:5])
    with pytest.raises(CacheCorruptionError, match=f"{path}.*truncated") as info:
        cache.get(_keys("ns", 10), 16)
    assert info.value.path == str(path)
    cache.close()


def test_modified_vector_is_never_returned(filled):
    path = _vector_file(filled)
    with open(path, "r+b") as handle:
        handle.seek(64 + 3 * 16 * 4 + 8)
        handle.write(b"\x01")
    cache = EmbeddingCache(filled)
    with pytest.raises(CacheCorruptionError, match=f"in {path} do not match their checksums"):
        cache.get(_keys("ns", 10), 16)
    assert cache.get(_keys("ns", 3), 16)[0].all()
    cache.close()


def test_replaced_or_missing_vector_file_is_an_error(filled, tmp_path):
    other = EmbeddingCache(tmp_path / "other")
    other.put(_keys("ns", 10), _vectors(10, 16, seed=5))
    other.close()
    path = _vector_file(filled)
    os.replace(_vector_file(tmp_path / "other"), path)
    cache = EmbeddingCache(filled)
    with pytest.raises(CacheCorruptionError, match=f"{path} does not match the index"):
        cache.get(_keys("ns", 1), 16)
    cache.close()
    os.unlink(path)
    cache = EmbeddingCache(filled)
    with pytest.raises(CacheCorruptionError, match=f"{path} is listed in the index but missing"):
        cache.get(_keys("ns", 1), 16)
    with pytest.raises(CacheCorruptionError, match="missing"):
        cache.put(_keys("ns", 1, start=50), _vectors(1, 16))
    cache.close()


def test_garbage_index_is_an_error_naming_it(filled):
    index = filled / INDEX_FILENAME
    data = bytearray(index.read_bytes())
    data[4096:] = np.random.default_rng(0).bytes(len(data) - 4096)
    index.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptionError, match=f"{index} is damaged"):
        cache = EmbeddingCache(filled)
        cache.get(_keys("ns", 10), 16)
    index.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(CacheCorruptionError, match=f"{index} is damaged"):
        EmbeddingCache(filled)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file_id", 77, "points at vector file #77"),
        ("slot", -1, "is damaged"),
        ("slot", 10**6, "truncated"),
        ("id", 12345, "is damaged"),
        ("digest", 1, "do not match their checksums"),
        (None, None, "is damaged"),  # a record of the wrong length
    ],
)
def test_garbage_in_index_records_is_an_error(filled, field, value, message):
    with sqlite3.connect(filled / INDEX_FILENAME) as conn:
        rowid, meta = conn.execute("SELECT id, meta FROM entries ORDER BY id LIMIT 1").fetchone()
        if field is None:
            meta = meta[:-1]
        else:
            record = np.frombuffer(meta, dtype=_files.RECORD).copy()
            record[field] = value
            meta = record.tobytes()
        conn.execute("UPDATE entries SET meta = ? WHERE id = ?", (meta, rowid))
    conn.close()
    cache = EmbeddingCache(filled)
    with pytest.raises(CacheCorruptionError, match=message):
        cache.get(_keys("ns", 10), 16)
    cache.close()


def test_prefix_collision_is_a_miss_never_a_wrong_vector(cache):
    first = bytes(range(32))
    twin = first[:8] + bytes(24)  # same 64-bit row id, different key
    cache.put([first], np.ones((1, 4)))
    found, got = cache.get([twin, first], 4)
    assert found.tolist() == [False, True] and not got[0].any()
    cache.put([twin], np.full((1, 4), 2.0))  # cannot be stored: stays a miss
    assert cache.get([twin], 4)[0].tolist() == [False]
    np.testing.assert_array_equal(cache.get([first], 4)[1], np.ones((1, 4)))


def test_unknown_format_version_or_foreign_database(filled, tmp_path):
    with sqlite3.connect(filled / INDEX_FILENAME) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(CacheError, match=r"format version 99.*reads version 2"):
        EmbeddingCache(filled)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / INDEX_FILENAME) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    with pytest.raises(CacheError, match="did not create"):
        EmbeddingCache(foreign)


# -- size limit ------------------------------------------------------------------------


def _bounded_bytes(directory):
    """Index database (pages, including the write-ahead log's) plus vector files."""
    conn = sqlite3.connect(f"file:{directory / INDEX_FILENAME}?mode=ro", uri=True)
    pages, page_size = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size")
    )
    conn.close()
    vectors = sum(p.stat().st_size for p in directory.glob("vectors-*"))
    return pages * page_size + vectors


def test_lru_eviction_respects_the_bound_and_recency(tmp_path, monkeypatch):
    clock = [1_000_000]
    monkeypatch.setattr(_directory, "_now", lambda: clock[0])
    directory = tmp_path / "cache"
    limit = 400_000
    cache = EmbeddingCache(directory, max_size_bytes=limit)
    group_a, group_b = _keys("a", 20), _keys("b", 150)
    cache.put(group_a, _vectors(20, 256, seed=1))
    clock[0] += 1
    cache.put(group_b, _vectors(150, 256, seed=2))
    clock[0] += 10_000
    assert cache.get(group_a, 256)[0].all()  # A is now more recently used than B
    clock[0] += 10_000
    entries, seed = cache.stats()["entries"], 3
    while cache.stats()["entries"] >= entries:  # fill until the first eviction
        entries = cache.stats()["entries"]
        recent = _keys(f"c{seed}", 50)
        cache.put(recent, _vectors(50, 256, seed=seed))
        assert _bounded_bytes(directory) <= limit
        seed += 1
    # The least recently *used* went first: B, although A was written before it.
    assert 0 < cache.get(group_b, 256, count=False)[0].sum() < 150
    np.testing.assert_array_equal(cache.get(group_a, 256)[1], _vectors(20, 256, seed=1))
    assert cache.get(recent, 256)[0].all()
    for more in range(seed, seed + 6):
        cache.put(_keys(f"c{more}", 50), _vectors(50, 256, seed=more))
        assert _bounded_bytes(directory) <= limit
    cache.close()


# -- handles: resolution, pickling, statistics -----------------------------------------


def test_resolve_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKEMBED_CACHE_DIR", str(tmp_path / "default"))
    assert resolve_cache(None) is None and resolve_cache(False) is None
    default = resolve_cache("default")
    assert default.path == str(tmp_path / "default") == default_cache_dir()
    assert resolve_cache(True) is default
    by_path = resolve_cache(tmp_path / "elsewhere")
    assert resolve_cache(str(tmp_path / "elsewhere")) is by_path
    assert resolve_cache(by_path) is by_path
    with pytest.raises(TypeError, match="'cache' parameter"):
        resolve_cache(3)


def test_default_dir_without_the_environment_variable(monkeypatch):
    monkeypatch.delenv("SKEMBED_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == "/somewhere/cache/skembed"
    assert default_cache_dir().endswith(("skembed", os.path.join("skembed", "Cache")))


def test_pickle_and_deepcopy_carry_only_the_location(cache):
    cache.put(_keys("ns", 3), _vectors(3, 4))
    bounded = EmbeddingCache(cache.path, max_size_bytes=10**9)
    for copied in (pickle.loads(pickle.dumps(bounded)), copy.deepcopy(bounded)):
        assert copied.path == cache.path and copied.max_size_bytes == 10**9
        assert copied.get(_keys("ns", 3), 4)[0].all()
        copied.close()
    assert len(pickle.dumps(cache)) < 300
    assert repr(bounded) == f"EmbeddingCache({cache.path!r}, max_size_bytes=1000000000)"
    bounded.close()


def test_stats_count_hits_and_misses_and_persist_totals(cache):
    keys = _keys("ns", 10)
    cache.put(keys[:6], _vectors(6, 4))
    cache.get(keys, 4)
    cache.get(keys, 4, count=False)
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (6, 4, 6)
    assert stats["size_bytes"] >= 6 * 4 * 4
    cache.close()
    reopened = EmbeddingCache(cache.path)
    stats = reopened.stats()
    assert (stats["hits"], stats["total_hits"], stats["total_misses"]) == (0, 6, 4)
    reopened.clear()
    stats = reopened.stats()
    assert (stats["entries"], stats["total_hits"]) == (0, 0)
    assert not [p for p in os.listdir(cache.path) if p.startswith("vectors-")]
    reopened.close()


# -- command line ----------------------------------------------------------------------


def test_cli_info_and_clear(filled, tmp_path):
    cache = EmbeddingCache(filled)
    cache.get(_keys("ns", 12), 16)  # 10 hits, 2 misses, saved on close
    cache.close()
    info = _skembed("cache", "info", "--dir", filled)
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert f"path:    {filled}" in lines
    assert "entries: 10 (10 of 16-d)" in lines
    assert "hits:    10" in lines and "misses:  2" in lines
    cleared = _skembed("cache", "clear", SKEMBED_CACHE_DIR=filled)  # the default directory
    assert cleared.returncode == 0, cleared.stderr
    assert f"Removed 10 entries from {filled}" in cleared.stdout
    assert "entries: 0" in _skembed("cache", "info", "--dir", filled).stdout
    missing = _skembed("cache", "info", "--dir", tmp_path / "none")
    assert "No embedding cache" in missing.stdout
    assert not (tmp_path / "none").exists()


def test_cli_reports_a_damaged_cache(filled, capsys):
    from skembed.__main__ import main

    (filled / INDEX_FILENAME).write_bytes(b"garbage" * 1000)
    assert main(["cache", "info", "--dir", str(filled)]) == 1
    assert "is damaged" in capsys.readouterr().err


def test_cli_refuses_a_read_only_cache(filled, capsys):
    from skembed.__main__ import main

    with _read_only(filled):
        assert main(["cache", "clear", "--dir", str(filled)]) == 1
    assert "not writable" in capsys.readouterr().err
    assert EmbeddingCache(filled).stats()["entries"] == 10


def test_no_warning_in_normal_use(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = EmbeddingCache(tmp_path / "cache")
        cache.put(_keys("ns", 2), _vectors(2, 4))
        cache.get(_keys("ns", 2), 4)
        cache.close()


def test_interrupt_right_after_the_commit_of_a_new_vector_file_keeps_it(tmp_path, monkeypatch):
    # Ctrl-C between the index's COMMIT and the end of the write: the rows are committed,
    # so the new vector file they live in must stay (it was deleted: "listed but missing").
    real = _directory.transaction

    @contextlib.contextmanager
    def interrupted_after_commit(conn):
        with real(conn):
            yield
        raise KeyboardInterrupt

    store = EmbeddingCache(tmp_path / "cache")
    keys, vectors = _keys("interrupted", 3), _vectors(3, 8)
    monkeypatch.setattr(_directory, "transaction", interrupted_after_commit)
    with pytest.raises(KeyboardInterrupt):
        store.put(keys, vectors)
    monkeypatch.setattr(_directory, "transaction", real)
    found, got = store.get(keys, 8)
    assert found.all()
    np.testing.assert_array_equal(got, vectors)
    store.close()
