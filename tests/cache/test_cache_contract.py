"""What every cache store promises, checked on each: the directory store and Redis."""

import os
import pickle
import threading
import time

import numpy as np
import pytest

from skembed._cache import CacheStore, resolve_cache
from tests.cache.helpers import directory_store, redis_store
from tests.cache.helpers import keys as _keys
from tests.cache.helpers import vectors as _vectors


@pytest.fixture(params=["directory", "redis"])
def store(request, tmp_path):
    if request.param == "directory":
        builder = directory_store(tmp_path / "cache")
    else:
        builder = redis_store(request.getfixturevalue("redis_server"))
    with builder as cache:
        yield cache


def _another_handle(store):
    """A second handle on the same store, as another process would open it."""
    return pickle.loads(pickle.dumps(store))


def test_every_store_is_a_cache_store(store):
    assert isinstance(store, CacheStore)
    assert resolve_cache(store) is store
    assert isinstance(_another_handle(store), type(store))


def test_put_is_idempotent_first_write_wins(store):
    keys = _keys("ns", 10)
    first, second = _vectors(10, 4, seed=1), _vectors(10, 4, seed=2)
    store.put(keys, first)
    store.put(keys + keys[:3], np.vstack([second, second[:3]]))
    assert store.stats()["entries"] == 10
    np.testing.assert_array_equal(store.get(keys, 4)[1], first)


def test_lock_is_exclusive_across_threads(store):
    inside, overlaps = [0], []

    def work():
        for _ in range(20):
            with store.lock("ns"):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.001)
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1 and len(overlaps) == 60


# -- keys ------------------------------------------------------------------------------


def _key_forms(keys):
    """The same keys in every form a store accepts."""
    array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
    wide = np.zeros((len(keys), 64), dtype=np.uint8)
    wide[:, 16:48] = array
    return {
        "list of bytes": list(keys),
        "tuple": tuple(keys),
        "generator": (key for key in keys),
        "bytearray": [bytearray(key) for key in keys],
        "uint8 array": array,
        "non-contiguous array": wide[:, 16:48],
    }


@pytest.mark.parametrize(
    "form",
    ["list of bytes", "tuple", "generator", "bytearray", "uint8 array", "non-contiguous array"],
)
def test_every_store_accepts_the_same_key_forms(store, form):
    keys = _keys("ns", 6)
    store.put(_key_forms(keys[:4])[form], _vectors(4, 8))
    found, got = store.get(_key_forms(keys)[form], 8)
    assert found.tolist() == [True] * 4 + [False] * 2
    np.testing.assert_array_equal(got[:4], _vectors(4, 8))
    assert not got[4:].any()


_BAD_KEYS = {
    "short": (lambda keys: [keys[0], keys[1][:31], keys[2]], "Key 1 is not a 32-byte digest"),
    "long": (lambda keys: [keys[0], keys[1] + b"x", keys[2]], "Key 1 is not a 32-byte digest"),
    "a text": (lambda keys: [keys[0], "a text, not a key", keys[2]], "Key 1 is not a 32-byte"),
    "None": (lambda keys: [keys[0], keys[1], None], "Key 2 is not a 32-byte digest"),
    "an int": (lambda keys: [7, keys[1], keys[2]], "Key 0 is not a 32-byte digest"),
    "half keys": (
        lambda keys: np.zeros((3, 16), dtype=np.uint8),
        r"A key array must have shape \(n, 32\), got \(3, 16\)",
    ),
    "flat array": (
        lambda keys: np.zeros(96, dtype=np.uint8),
        r"A key array must have shape \(n, 32\), got \(96,\)",
    ),
}


@pytest.mark.parametrize("bad", list(_BAD_KEYS))
def test_every_store_refuses_the_same_bad_keys(store, bad):
    make, message = _BAD_KEYS[bad]
    keys = make(_keys("ns", 3))
    with pytest.raises(ValueError, match=message):
        store.get(keys, 4)
    with pytest.raises(ValueError, match=message):
        store.put(keys, _vectors(3, 4))
    stats = store.stats()
    assert stats["entries"] == 0 and (stats["hits"], stats["misses"]) == (0, 0)


# -- counting --------------------------------------------------------------------------


def test_every_store_counts_hits_and_misses_per_row_and_keeps_totals(store):
    keys = _keys("ns", 10)
    store.put(keys[:6], _vectors(6, 4))
    store.get(keys + keys[:2], 4)  # duplicates count once per row: 8 hits, 4 misses
    store.get(keys, 4, count=False)
    store.get([], 4)
    with pytest.raises(ValueError, match="cached with a 4-d vector"):
        store.get(keys[:3], 8)  # a refused look-up counts nothing
    stats = store.stats()
    assert (stats["hits"], stats["misses"]) == (8, 4)
    assert (stats["total_hits"], stats["total_misses"]) == (8, 4)
    store.close()  # saves this handle's counts
    other = _another_handle(store)
    stats = other.stats()
    assert (stats["hits"], stats["misses"], stats["total_hits"], stats["total_misses"]) == (
        0,
        0,
        8,
        4,
    )
    other.get(keys[:1], 4)
    assert other.stats()["total_hits"] == 9
    other.clear()
    stats = other.stats()
    assert (stats["entries"], stats["total_hits"], stats["total_misses"]) == (0, 0, 0)
    other.close()


# -- fork ------------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@needs_fork
def test_fork_child_reads_writes_and_counts_through_the_inherited_handle(store):
    keys = _keys("parent", 4)
    store.put(keys[:3], _vectors(3, 4))
    store.get(keys, 4)  # the parent's 3 hits and 1 miss, not saved yet
    pid = os.fork()
    if pid == 0:  # child: use the inherited handle, then leave without cleanup
        status = 1
        try:
            found, got = store.get(keys[:2], 4)
            store.put(_keys("child", 2), _vectors(2, 4, seed=7))
            stats = store.stats()  # the child counts from zero
            with store.lock("ns"):  # a lock of its own, that works
                pass
            store.close()  # saves the child's 2 hits, never the parent's
            ok = found.all() and (got == _vectors(3, 4)[:2]).all()
            status = 0 if ok and (stats["hits"], stats["misses"]) == (2, 0) else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's handle still works, and sees what the child wrote.
    found, got = store.get(_keys("child", 2), 4, count=False)
    assert found.all()
    np.testing.assert_array_equal(got, _vectors(2, 4, seed=7))
    assert store.get(keys[:3], 4, count=False)[0].all()
    assert (store.stats()["hits"], store.stats()["misses"]) == (3, 1)
    store.close()
    stats = _another_handle(store).stats()
    assert (stats["total_hits"], stats["total_misses"]) == (5, 1)


# -- resumable state -------------------------------------------------------------------


def test_state_is_read_replaced_and_deleted_whole_and_outlives_clear(store):
    blob = store.state("batch_jobs/ledger.json")
    assert blob.read() is None
    blob.write(b'{"version": 1}')
    blob.write(b'{"version": 2}')
    assert blob.read() == b'{"version": 2}'
    assert _another_handle(store).state("batch_jobs/ledger.json").read() == b'{"version": 2}'
    assert store.state("batch_jobs/other.json").read() is None
    store.put(_keys("ns", 2), _vectors(2, 4))
    store.clear()  # entries go; state stays (it leads to work already paid for)
    assert store.stats()["entries"] == 0
    assert blob.read() == b'{"version": 2}'
    blob.delete()
    assert blob.read() is None
    blob.delete()  # nothing to delete: no error


@pytest.mark.parametrize(
    "name", ["ledger.json", "../escape/x", "batch_jobs/", "/abs/x", "a/../b", "a/.hidden", 3]
)
def test_state_names_are_checked(store, name):
    with pytest.raises(ValueError, match="A state name is '<room>/<item>'"):
        store.state(name)


def test_every_store_is_a_valid_cache_parameter(store):
    from skembed import OpenAIEmbeddingTransformer

    OpenAIEmbeddingTransformer(cache=store)._validate_params()  # no InvalidParameterError
