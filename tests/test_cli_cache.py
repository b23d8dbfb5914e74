"""``skembed cache info|clear``: JSON output, a Redis cache by URL, and ``clear`` on a
damaged cache (it removes what cannot be read, keeps what can, and says which).

tests/cache/test_cache.py covers the plain-text ``info`` and ``clear``.
"""

import json
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from skembed._cache import INDEX_FILENAME, CacheWarning, EmbeddingCache, RedisEmbeddingCache
from skembed._cache._ledger import _stored_bytes
from tests.cache.helpers import ROOT, keys, run_cli, vectors


@pytest.fixture
def two_widths(tmp_path):
    """A closed cache: 30 16-d vectors (namespace a) and 20 8-d ones (namespace b)."""
    directory = tmp_path / "cache"
    cache = EmbeddingCache(directory)
    cache.put(keys("a", 30), vectors(30, 16))
    cache.put(keys("b", 20), vectors(20, 8, seed=1))
    cache.state("batch_jobs/ledger.json").write(b'{"paid": true}')
    cache.close()
    return directory


def read(directory, namespace, n, dim):
    cache = EmbeddingCache(directory)
    try:
        return cache.get(keys(namespace, n), dim, count=False)
    finally:
        cache.close()


def test_info_json(two_widths, tmp_path):
    done = run_cli("cache", "info", "--dir", two_widths, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["path"] == str(two_widths) and info["exists"] and info["writable"]
    assert info["entries"] == 50 and info["entries_by_dim"] == {"8": 20, "16": 30}
    assert info["size_bytes"] >= 50 * 8 * 4
    missing = json.loads(run_cli("cache", "info", "--dir", tmp_path / "none", "--json").stdout)
    assert missing == {"path": str(tmp_path / "none"), "exists": False, "entries": 0}


def test_info_and_clear_of_a_redis_cache(redis_server):
    url = redis_server.url()
    store = RedisEmbeddingCache(url)
    store.put(keys("r", 12), vectors(12, 16))
    store.close()
    info = run_cli("cache", "info", "--redis", url, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["entries_by_dim"] == {"16": 12}
    assert "entries: 12 (12 of 16-d)" in run_cli("cache", "info", "--redis", url).stdout
    cleared = run_cli("cache", "clear", "--redis", url)
    assert cleared.returncode == 0, cleared.stderr
    assert "Removed 12 entries" in cleared.stdout
    assert json.loads(run_cli("cache", "info", "--redis", url, "--json").stdout)["entries"] == 0
    both = run_cli("cache", "info", "--redis", url, "--dir", "/tmp")
    assert both.returncode == 2


def vector_file(directory, dim):
    (path,) = Path(directory).glob(f"vectors-{dim}-*.f32")
    return path


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clear_of_damaged_rows_removes_them_and_keeps_the_rest(two_widths, seed):
    rng = np.random.default_rng(seed)
    damaged = sorted(rng.choice(30, int(rng.integers(1, 5)), replace=False).tolist())
    path = vector_file(two_widths, 16)
    with open(path, "r+b") as handle:
        for slot in damaged:  # one flipped byte per damaged row (slots in put order)
            handle.seek(64 + slot * 16 * 4 + int(rng.integers(0, 64)))
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0xFF]))
    done = run_cli("cache", "clear", "--dir", two_widths)
    assert done.returncode == 0, done.stderr
    assert f"{path.name}: {len(damaged)} entries cannot be read" in done.stderr
    assert f"Removed {len(damaged)} entries that cannot be read and kept {50 - len(damaged)}" in (
        done.stdout
    )
    found, got = read(two_widths, "a", 30, 16)
    intact = [i for i in range(30) if i not in damaged]
    assert found.tolist() == [i in intact for i in range(30)]
    np.testing.assert_array_equal(got[intact], vectors(30, 16)[intact])
    found, got = read(two_widths, "b", 20, 8)
    assert found.all()
    np.testing.assert_array_equal(got, vectors(20, 8, seed=1))
    # Healthy now: a second clear removes everything, as a clear does.
    again = run_cli("cache", "clear", "--dir", two_widths)
    assert f"Removed {50 - len(damaged)} entries" in again.stdout
    assert not read(two_widths, "b", 20, 8)[0].any()


@pytest.mark.parametrize("damage", ["header", "missing", "truncated"])
def test_clear_of_a_damaged_vector_file_keeps_the_other_file(two_widths, damage):
    path = vector_file(two_widths, 16)
    if damage == "header":
        with open(path, "r+b") as handle:
            handle.write(b"NOTMAGIC")
    elif damage == "missing":
        path.unlink()
    else:
        os.truncate(path, 64 + 10 * 16 * 4 + 7)  # 10 rows and a bit survive
    done = run_cli("cache", "clear", "--dir", two_widths)
    assert done.returncode == 0, done.stderr
    lost = 20 if damage == "truncated" else 30
    assert f"Removed {lost} entries that cannot be read and kept {50 - lost}" in done.stdout
    found, got = read(two_widths, "a", 30, 16)
    assert found.sum() == 30 - lost
    np.testing.assert_array_equal(got[found], vectors(30, 16)[found])
    assert read(two_widths, "b", 20, 8)[0].all()
    if damage != "truncated":
        assert not list(Path(two_widths).glob("vectors-16-*"))


def test_clear_of_an_unreadable_index_starts_empty_and_keeps_resumable_state(two_widths):
    (two_widths / INDEX_FILENAME).write_bytes(b"garbage" * 1000)
    info = run_cli("cache", "info", "--dir", two_widths)
    assert info.returncode == 1 and "is damaged" in info.stderr
    done = run_cli("cache", "clear", "--dir", two_widths)
    assert done.returncode == 0, done.stderr
    assert f"{INDEX_FILENAME} cannot be read" in done.stderr
    assert "Removed the index and 2 vector file(s)" in done.stdout
    assert not list(Path(two_widths).glob("vectors-*"))
    assert (two_widths / "batch_jobs" / "ledger.json").read_bytes() == b'{"paid": true}'
    assert not read(two_widths, "a", 30, 16)[0].any()
    assert (
        json.loads(run_cli("cache", "info", "--dir", two_widths, "--json").stdout)["entries"] == 0
    )


def test_clear_of_malformed_index_records_removes_only_them(two_widths):
    with sqlite3.connect(two_widths / INDEX_FILENAME) as conn:
        (first,) = conn.execute("SELECT id FROM entries LIMIT 1").fetchone()
        conn.execute("UPDATE entries SET meta = x'00' WHERE id = ?", (first,))
    conn.close()
    done = run_cli("cache", "clear", "--dir", two_widths)
    assert done.returncode == 0, done.stderr
    assert "Removed 1 entries that cannot be read and kept 49" in done.stdout


# -- what the cache holds, per model; a one-time notice past a size ------------------------


def test_info_lists_the_largest_namespaces(openai_embedder, tmp_path):
    cache = str(tmp_path / "cache")
    small = openai_embedder(dimensions=8, cache=cache)
    small.transform([f"small {i}" for i in range(30)])
    small.transform([f"small {i}" for i in range(35)])  # 5 more: the tally adds them
    openai_embedder(model="text-embedding-3-large", dimensions=16, cache=cache).transform(
        [f"large {i}" for i in range(5)]
    )
    info = json.loads(run_cli("cache", "info", "--dir", cache, "--json").stdout)
    assert info["largest_namespaces"] == [
        {"model": "text-embedding-3-small", "dim": 8, "count": 35, "bytes": 35 * 8 * 4},
        {"model": "text-embedding-3-large", "dim": 16, "count": 5, "bytes": 5 * 16 * 4},
    ]
    text = run_cli("cache", "info", "--dir", cache).stdout
    assert "largest namespaces" in text and "text-embedding-3-large     16-d" in text
    # The tallies describe the vectors: a clear removes them with the vectors.
    run_cli("cache", "clear", "--dir", cache)
    cleared = json.loads(run_cli("cache", "info", "--dir", cache, "--json").stdout)
    assert cleared["largest_namespaces"] == []


def test_the_default_cache_says_once_that_it_passed_the_notice_size(
    openai_embedder, tmp_path, monkeypatch
):
    monkeypatch.setenv("SKEMBED_CACHE_DIR", str(tmp_path / "default"))
    monkeypatch.setenv("SKEMBED_CACHE_NOTICE_BYTES", "0")  # off
    embedder = openai_embedder(dimensions=64, cache="default")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.transform([f"first {i}" for i in range(5)])
    # A limit 30 kB above the size now: 200 vectors of 256 bytes pass it.
    limit = _stored_bytes(str(tmp_path / "default")) + 30_000
    monkeypatch.setenv("SKEMBED_CACHE_NOTICE_BYTES", str(limit))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.transform([f"first {i}" for i in range(10)])  # under the size: silent
    with pytest.warns(CacheWarning, match=f"past \\$SKEMBED_CACHE_NOTICE_BYTES={limit}") as seen:
        embedder.transform([f"second {i}" for i in range(200)])
    assert len(seen) == 1 and str(tmp_path / "default") in str(seen[0].message)
    with warnings.catch_warnings():  # once per cache: not again, in no process
        warnings.simplefilter("error")
        embedder.transform([f"third {i}" for i in range(200)])
        again = subprocess.run(
            [sys.executable, "-m", "skembed", "embed", "-", "-c", "t", "--out",
             str(tmp_path / "v.npz"), "--backend", "openai", "--base-url", embedder.base_url,
             "--dimensions", "64"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, input="t\nfourth\n",
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "CacheWarning" not in again.stderr
    # A cache the user chose is theirs to size: never a notice.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        openai_embedder(dimensions=64, cache=str(tmp_path / "chosen")).transform(
            [f"fifth {i}" for i in range(400)]
        )
    # A limit that is not a number is said (the vectors are cached all the same).
    monkeypatch.setenv("SKEMBED_CACHE_NOTICE_BYTES", "a lot")
    with pytest.warns(CacheWarning, match="must be a number of bytes"):
        X = embedder.transform([f"sixth {i}" for i in range(3)])
    assert X.shape == (3, 64)
