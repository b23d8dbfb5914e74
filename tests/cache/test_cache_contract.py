"""What every cache store promises, checked on each: the directory store and Redis."""

import threading
import time

import numpy as np
import pytest

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
