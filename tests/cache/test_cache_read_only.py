"""A cache that can be read but not written is served, not ignored.

A shared warm cache on a network file system, a cache baked into a container image,
another user's directory: its vectors are served (no request for a cached text), new
ones go to a private temporary cache (each paid once, then served), a CacheWarning says
so once, and ``skembed cache info`` works on it.

The tests run as root here, which chmod does not stop: a read-only view of a directory
is a read-only bind mount when ``mount`` works (root), a chmod when the tests do not run
as root, an immutable directory (``chattr +i``) otherwise, else the test is skipped;
``EmbeddingCache(path, read_only=True)`` forces the same mode anywhere.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import INDEX_FILENAME, CacheError, CacheWarning, cache_key
from tests.cache.helpers import ROOT, write_v1_directory
from tests.cache.helpers import run_cli as skembed_cli
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIMENSIONS = 64


@contextlib.contextmanager
def read_only_view(directory, where):
    """A path showing ``directory`` read-only to this process (see the module docstring)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield directory
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    view = where / "read-only-view"
    view.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(directory), str(view)], capture_output=True
    )
    if mounted.returncode == 0:
        try:
            yield view
        finally:
            busy = subprocess.run(["umount", str(view)], capture_output=True).returncode
            if busy:
                subprocess.run(["umount", "-l", str(view)], check=True)
        # The caches opened there were closed: none may keep a file of it open.
        assert not busy, "a file of the read-only cache is still open"
        return
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode:
        pytest.skip("cannot make a directory read-only here (no mount, no chattr)")
    try:
        yield directory
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def texts_of(seed, n):
    return [f"note {seed}-{i}: the parcel came late" for i in range(n)]


def expected(texts):
    return np.stack([expected_vector(MODEL, text, DIMENSIONS) for text in texts])


def embedder(fake_server, cache):
    return OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, dimensions=DIMENSIONS, cache=cache, batch_size=16
    )


def make_warm(fake_server, directory, texts):
    """A cache in ``directory`` holding ``texts``, closed (no handle left open)."""
    cache = EmbeddingCache(directory)
    embedder(fake_server, cache).transform(texts)
    cache.close()


def snapshot(directory):
    return {
        p.relative_to(directory): (p.read_bytes() if p.is_file() else None)
        for p in Path(directory).rglob("*")
    }


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("how", ["mounted read-only", "read_only=True"])
def test_a_read_only_cache_serves_its_vectors_and_pays_each_new_text_once(
    fake_server, tmp_path, seed, how
):
    rng = np.random.default_rng(seed)
    warm_texts = texts_of(seed, int(rng.integers(20, 80)))
    directory = tmp_path / "warm"
    make_warm(fake_server, directory, warm_texts)
    before = snapshot(directory)
    new_texts = texts_of(seed + 100, int(rng.integers(1, 40)))
    asked = [*rng.choice(warm_texts, int(rng.integers(1, len(warm_texts)))), *new_texts]
    asked = [asked[i] for i in rng.permutation(len(asked))]
    fake_server.reset_stats()
    with contextlib.ExitStack() as stack:
        if how == "read_only=True":
            path, cache = directory, EmbeddingCache(directory, read_only=True)
        else:
            path = stack.enter_context(read_only_view(directory, tmp_path))
            cache = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cache is None:
                cache = EmbeddingCache(path)
            model = embedder(fake_server, cache)
            first = model.transform(asked)
            second = model.transform(asked + warm_texts)
        np.testing.assert_allclose(first, expected(asked), atol=1e-6)
        np.testing.assert_allclose(second, expected(asked + warm_texts), atol=1e-6)
        # Cached texts were never sent; each new one was sent once, then served.
        assert fake_server.stats()["text_counts"] == dict.fromkeys(set(new_texts), 1)
        said = [w for w in caught if issubclass(w.category, CacheWarning)]
        assert len(said) == (0 if how == "read_only=True" else 1)
        if said:
            assert "not writable" in str(said[0].message)
            assert "reading its vectors" in str(said[0].message)
        stats = cache.stats()
        assert stats["read_only"] and stats["path"] == str(path)
        assert stats["entries"] == len(warm_texts)
        assert stats["fallback_entries"] == len(set(new_texts))
        cache.close()
    after = snapshot(directory)
    if how == "read_only=True":  # SQLite's empty log and shared memory, at most
        assert after.pop(Path(f"{INDEX_FILENAME}-wal"), b"") == b""
        after.pop(Path(f"{INDEX_FILENAME}-shm"), None)
    assert after == before


@pytest.mark.parametrize("leftover", ["log and shared memory", "log only"])
def test_a_read_only_cache_left_by_a_process_that_did_not_close_it(fake_server, tmp_path, leftover):
    # Copied while a process had it open: the last commits are only in the write-ahead
    # log. Read-only, SQLite reads it with its -shm file, or from a private copy of
    # both when the -shm file is missing and cannot be created.
    texts = texts_of(7, 30)
    live = tmp_path / "live"
    cache = EmbeddingCache(live)
    embedder(fake_server, cache).transform(texts)
    directory = tmp_path / "copy"
    shutil.copytree(live, directory)
    cache.close()
    assert (directory / f"{INDEX_FILENAME}-wal").stat().st_size > 0
    if leftover == "log only":
        (directory / f"{INDEX_FILENAME}-shm").unlink()
    fake_server.reset_stats()
    with read_only_view(directory, tmp_path) as path:
        with pytest.warns(CacheWarning, match="not writable"):
            cache = EmbeddingCache(path)
        X = embedder(fake_server, cache).transform(texts)
        cache.close()
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_cli_info_works_on_a_read_only_cache_and_clear_refuses_it(fake_server, tmp_path):
    directory = tmp_path / "warm"
    make_warm(fake_server, directory, texts_of(1, 12))
    with read_only_view(directory, tmp_path) as path:
        info = skembed_cli("cache", "info", "--dir", path)
        assert info.returncode == 0, info.stderr
        assert f"entries: 12 (12 of {DIMENSIONS}-d)" in info.stdout.splitlines()
        assert "mode:    read-only" in info.stdout
        cleared = skembed_cli("cache", "clear", "--dir", path)
        assert cleared.returncode == 1
        assert "not writable" in cleared.stderr
    with pytest.raises(CacheError, match="read_only=True: it cannot be cleared"):
        EmbeddingCache(directory, read_only=True).clear()
    assert EmbeddingCache(directory).stats()["entries"] == 12


def test_info_leaves_a_cache_as_it_is(tmp_path):
    # Even writable: 'info' opens read-only, so it does not upgrade an older format.
    keys = [cache_key("ns", f"text {i}") for i in range(5)]
    directory = tmp_path / "old"
    write_v1_directory(directory, keys, np.ones((5, 4)))
    info = skembed_cli("cache", "info", "--dir", directory)
    assert info.returncode == 0, info.stderr
    assert "entries: 5 (5 of 4-d)" in info.stdout.splitlines()
    import sqlite3

    with sqlite3.connect(directory / INDEX_FILENAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


def test_a_read_only_cache_in_another_process(fake_server, tmp_path):
    # What a worker process sees: its own fallback, the same vectors, no request.
    texts = texts_of(3, 25)
    directory = tmp_path / "warm"
    make_warm(fake_server, directory, texts)
    script = (
        "import sys, warnings\n"
        "from skembed import EmbeddingCache, OpenAIEmbeddingTransformer\n"
        "warnings.simplefilter('error')\n"
        "cache = EmbeddingCache(sys.argv[2], read_only=True)\n"
        "model = OpenAIEmbeddingTransformer(base_url=sys.argv[1], dimensions=int(sys.argv[3]),"
        " cache=cache)\n"
        "X = model.transform([line.rstrip() for line in sys.stdin])\n"
        "print(X.shape[0], cache.stats()['fallback_entries'])\n"
    )
    fake_server.reset_stats()
    child = subprocess.run(
        [sys.executable, "-c", script, fake_server.base_url, str(directory), str(DIMENSIONS)],
        input="\n".join([*texts, "a new text"]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [str(len(texts) + 1), "1"]
    assert fake_server.stats()["text_counts"] == {"a new text": 1}


def test_state_of_a_read_only_cache_is_read_there_and_changed_beside_it(tmp_path):
    directory = tmp_path / "warm"
    cache = EmbeddingCache(directory)
    cache.state("batch_jobs/ledger.json").write(b"original")
    cache.close()
    before = snapshot(directory)
    cache = EmbeddingCache(directory, read_only=True)
    blob = cache.state("batch_jobs/ledger.json")
    assert blob.read() == b"original"
    blob.write(b"changed")
    assert blob.read() == b"changed"
    blob.delete()
    assert blob.read() is None
    assert cache.state("batch_jobs/other.json").read() is None
    cache.close()
    after = snapshot(directory)
    after.pop(Path(f"{INDEX_FILENAME}-wal"), None)
    after.pop(Path(f"{INDEX_FILENAME}-shm"), None)
    assert after == before


def test_a_read_only_directory_without_a_cache_falls_back_as_a_whole(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only_view(empty, tmp_path) as path:
        with pytest.warns(CacheWarning, match="holds no cache to read"):
            cache = EmbeddingCache(Path(path) / "cache")
        assert not str(cache.path).startswith(str(tmp_path))
        keys = [cache_key("ns", f"text {i}") for i in range(3)]
        cache.put(keys, np.ones((3, 4)))
        assert cache.get(keys, 4)[0].all()
        cache.close()
