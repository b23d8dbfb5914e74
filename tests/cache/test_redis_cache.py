"""The Redis cache store against a real redis-server: the SQLite store's guarantees, shared."""

import copy
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import cloudpickle
import joblib
import numpy as np
import pytest

from skembed._cache import CacheCorruptionError, CacheError, RedisEmbeddingCache, resolve_cache
from skembed._redis import split_password
from tests.cache.helpers import ROOT, redis_store
from tests.cache.helpers import keys as _keys
from tests.cache.helpers import vectors as _vectors
from tests.fake_openai import expected_vector
from tests.redis_server import free_port

redis = pytest.importorskip("redis")


@pytest.fixture
def cache(redis_server):
    """A cache under a prefix of its own, so tests never see each other's keys."""
    with redis_store(redis_server) as cache:
        yield cache


def _entry(cache, key):
    return f"{cache.prefix}:e:{key.hex()}"


# -- reading and writing ---------------------------------------------------------------


def test_round_trip_with_mixed_hits_duplicates_and_any_order(cache):
    keys, vectors = _keys("ns", 100), _vectors(100, 8)
    cache.put(keys[:30], vectors[:30].astype(np.float64))
    cache.put(keys[60:], vectors[60:])
    order = np.random.default_rng(1).permutation(100)
    query = [keys[i] for i in order] + [keys[5], keys[5], keys[45]]
    expected_found = np.array([i < 30 or i >= 60 for i in order] + [True, True, False])
    found, got = cache.get(query, 8)
    np.testing.assert_array_equal(found, expected_found)
    assert got.dtype == np.float32 and got.shape == (103, 8)
    reference = vectors[np.append(order, [5, 5, 45])]
    np.testing.assert_array_equal(got[found], reference[found])
    assert not got[~found].any()  # rows of misses are zero


def test_empty_key_array_and_bad_inputs(cache):
    found, got = cache.get([], 4)
    assert found.shape == (0,) and got.shape == (0, 4)
    cache.put([], np.zeros((0, 4)))
    keys = _keys("ns", 3)
    cache.put(np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(3, 32), _vectors(3, 4))
    assert cache.get(keys, 4)[0].all()
    with pytest.raises(ValueError, match="Key 1 is not a 32-byte digest"):
        cache.get([keys[0], b"short", keys[2]], 4)
    with pytest.raises(ValueError, match="one vector per key"):
        cache.put(keys, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        cache.get(keys, 0)
    bad = np.zeros((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="Vector 2 contains NaN"):
        cache.put(_keys("other", 3), bad)
    assert cache.stats()["entries"] == 3


def test_wrong_width_is_an_error_and_a_refused_batch_stores_nothing(cache):
    keys = _keys("ns", 3)
    cache.put(keys, _vectors(3, 8))
    with pytest.raises(ValueError, match="Key 2 is cached with a 8-d vector .*not 16-d"):
        cache.get([_keys("other", 2)[0], _keys("other", 2)[1], keys[0]], 16)
    with pytest.raises(ValueError, match="Key 1 is cached with a 8-d vector"):
        cache.put([_keys("other", 1)[0], keys[2]], _vectors(2, 16))
    assert cache.stats()["entries_by_dim"] == {8: 3}
    np.testing.assert_array_equal(cache.get(keys, 8)[1], _vectors(3, 8))


@pytest.mark.parametrize(
    "damage",
    [
        lambda value: value[:20] + bytes([value[20] ^ 1]) + value[21:],  # a flipped bit
        lambda value: value[:-4],  # truncated
        lambda value: b"XXXX" + value[4:],  # not written by skembed
        lambda value: b"hello",  # another program's value under our prefix
    ],
    ids=["bit flip", "truncated", "bad magic", "foreign"],
)
def test_damaged_value_is_never_returned(cache, redis_server, damage):
    keys = _keys("ns", 10)
    cache.put(keys, _vectors(10, 16))
    client = redis_server.client()
    name = _entry(cache, keys[3])
    client.set(name, damage(client.get(name)))
    with pytest.raises(CacheCorruptionError, match=f"{name}.*Redis embedding cache") as info:
        cache.get(keys, 16)
    assert info.value.path == redis_server.url()
    found, got = cache.get(keys[:3] + keys[4:], 16)  # the intact entries are still served
    assert found.all()
    np.testing.assert_array_equal(got, np.delete(_vectors(10, 16), 3, axis=0))
    client.delete(name)  # a deleted entry is a plain miss
    assert cache.get(keys, 16)[0].tolist() == [True] * 3 + [False] + [True] * 6


def test_big_batches_take_one_round_trip_per_chunk(cache, redis_server, monkeypatch):
    n = 20_000
    keys, vectors = _keys("ns", n), _vectors(n, 16)
    cache.put(_keys("warm-up", 1), _vectors(1, 16))  # connects and loads the script
    redis_server.client().config_resetstat()
    sends = []
    real_send = redis.connection.Connection.send_packed_command

    def counting_send(connection, command, check_health=True):
        sends.append(1)
        return real_send(connection, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting_send)
    cache.put(keys, vectors)
    found, got = cache.get(keys, 16)
    assert len(sends) == 4  # 10,000 keys per chunk: two writes and two reads
    assert found.all()
    np.testing.assert_array_equal(got, vectors)
    calls = redis_server.command_calls()
    assert (calls["evalsha"], calls["mget"]) == (2, 2)
    assert calls.get("get", 0) == 0 and calls["set"] == n  # SETs from inside the script


def test_prefixes_are_separate_and_clear_touches_only_its_own(cache, redis_server):
    neighbour = RedisEmbeddingCache(redis_server.url(), prefix=cache.prefix + "-b")
    client = redis_server.client()
    client.set("unrelated-key", b"keep me")
    keys = _keys("ns", 5)
    cache.put(keys, _vectors(5, 4))
    neighbour.put(keys[:2], _vectors(2, 4, seed=9))
    np.testing.assert_array_equal(cache.get(keys, 4)[1], _vectors(5, 4))
    with cache.lock("ns"):
        cache.clear()
        assert len(client.keys(f"{cache.prefix}:lock:*")) == 1  # a running job's lock stays
    assert cache.stats()["entries"] == 0 and not cache.get(keys, 4)[0].any()
    assert neighbour.get(keys, 4)[0].tolist() == [True, True, False, False, False]
    assert client.get("unrelated-key") == b"keep me"
    neighbour.clear()
    client.delete("unrelated-key")


def test_stats_count_hits_and_misses_across_handles(cache, redis_server):
    keys = _keys("ns", 10)
    cache.put(keys[:6], _vectors(6, 4))
    cache.put(_keys("wide", 2), _vectors(2, 300))
    cache.get(keys, 4)
    cache.get(keys, 4, count=False)
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (6, 4, 8)
    assert stats["entries_by_dim"] == {4: 6, 300: 2}
    assert stats["size_bytes"] >= 6 * 4 * 4 + 2 * 300 * 4
    assert "127.0.0.1" in stats["path"] and stats["prefix"] == cache.prefix
    cache.get(keys[:2], 4)
    cache.close()  # saves the pending counts
    other = RedisEmbeddingCache(redis_server.url(), prefix=cache.prefix)
    stats = other.stats()
    assert (stats["hits"], stats["total_hits"], stats["total_misses"]) == (0, 8, 4)
    other.clear()
    assert other.stats()["total_hits"] == 0


def test_ttl_is_set_on_write_and_an_expired_entry_is_a_miss(redis_server):
    cache = RedisEmbeddingCache(redis_server.url(), prefix="ttl-test", ttl=60)
    keys = _keys("ns", 3)
    cache.put(keys, _vectors(3, 4))
    client = redis_server.client()
    assert 50_000 < client.pttl(_entry(cache, keys[0])) <= 60_000
    client.pexpire(_entry(cache, keys[1]), 1)
    time.sleep(0.01)
    assert cache.get(keys, 4)[0].tolist() == [True, False, True]
    cache.clear()


# -- locks -------------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import os, signal, sys, time
    from skembed._cache import RedisEmbeddingCache
    url, prefix, timeout, hold, die = sys.argv[1:]
    cache = RedisEmbeddingCache(url, prefix=prefix, lock_timeout=float(timeout))
    with cache.lock("ns"):
        print("locked", flush=True)
        if die == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(hold))
    """
)


def _hold_lock(redis_server, cache, timeout, hold, die=False):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, redis_server.url(), cache.prefix,
         str(timeout), str(hold), "die" if die else "live"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_is_exclusive_across_processes_and_renewed_while_held(cache, redis_server):
    # Held for 1.5 s with a 0.6 s expiry: only renewal keeps it.
    holder = _hold_lock(redis_server, cache, timeout=0.6, hold=1.5)
    started = time.perf_counter()
    with cache.lock("another namespace"):
        assert time.perf_counter() - started < 1.0
    with cache.lock("ns"):
        waited = time.perf_counter() - started
    assert holder.wait(timeout=30) == 0
    assert waited > 1.2
    assert not redis_server.client().keys(f"{cache.prefix}:lock:*")  # released


def test_lock_of_a_killed_holder_expires(cache, redis_server):
    holder = _hold_lock(redis_server, cache, timeout=2.0, hold=60, die=True)
    holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    (name,) = redis_server.client().keys(f"{cache.prefix}:lock:*")  # still held by the dead
    started = time.perf_counter()
    with cache.lock("ns"):
        waited = time.perf_counter() - started
        assert redis_server.client().exists(name)  # now ours
    assert waited < 6  # its 2 s expiry, not forever


# -- handles: pickling, secrets, fork, resolution, failures --------------------------------


def test_pickle_carries_the_configuration_and_reconnects(cache):
    cache.put(_keys("ns", 3), _vectors(3, 4))
    bounded = RedisEmbeddingCache(cache.url, prefix=cache.prefix, ttl=3600, lock_timeout=5)
    cache.get(_keys("ns", 3), 4)  # connected: the connection must not travel
    for copied in (
        pickle.loads(pickle.dumps(bounded)),
        cloudpickle.loads(cloudpickle.dumps(bounded)),
        copy.deepcopy(bounded),
    ):
        assert (copied.url, copied.prefix, copied.ttl, copied.lock_timeout) == (
            cache.url,
            cache.prefix,
            3600,
            5,
        )
        assert copied.get(_keys("ns", 3), 4)[0].all()
        copied.close()
    assert len(pickle.dumps(cache)) < 400
    assert repr(bounded) == f"RedisEmbeddingCache({cache.url!r}, prefix={cache.prefix!r}, " + (
        "ttl=3600, lock_timeout=5)"
    )


@pytest.fixture
def password_user(redis_server):
    """An ACL user with a password (the default user stays open for the other tests)."""
    password = "pw-" + uuid.uuid4().hex
    client = redis_server.client()
    client.acl_setuser("alice", enabled=True, passwords=[f"+{password}"], keys="*",
                       commands=["+@all"])  # fmt: skip
    yield password
    client.acl_deluser("alice")


def test_password_never_in_repr_pickle_or_errors(redis_server, password_user, monkeypatch):
    monkeypatch.delenv("SKEMBED_REDIS_PASSWORD", raising=False)
    url = f"redis://alice:{password_user}@127.0.0.1:{redis_server.port}/0"
    cache = RedisEmbeddingCache(url, prefix="secret-test")
    cache.put(_keys("ns", 2), _vectors(2, 4))  # the URL's password authenticates
    assert cache.url == f"redis://alice@127.0.0.1:{redis_server.port}/0"
    assert repr(cache) == (
        f"RedisEmbeddingCache('redis://alice:***@127.0.0.1:{redis_server.port}/0', "
        "prefix='secret-test')"
    )
    for blob in (pickle.dumps(cache), cloudpickle.dumps(cache)):
        assert password_user.encode() not in blob
    assert copy.deepcopy(cache).get(_keys("ns", 2), 4)[0].all()  # in-process copy: kept
    assert password_user not in str(cache.stats())

    # A pickled copy (another worker) reads the password from the environment.
    copied = pickle.loads(pickle.dumps(cache))
    with pytest.raises(CacheError, match="not pickled: set SKEMBED_REDIS_PASSWORD") as info:
        copied.get(_keys("ns", 2), 4)
    assert password_user not in str(info.value) and password_user not in repr(info.value)
    monkeypatch.setenv("SKEMBED_REDIS_PASSWORD", password_user)
    assert pickle.loads(pickle.dumps(cache)).get(_keys("ns", 2), 4)[0].all()
    from_env = RedisEmbeddingCache(cache.url, prefix="secret-test")
    assert from_env.get(_keys("ns", 2), 4)[0].all()
    assert password_user.encode() not in pickle.dumps(from_env)
    from_env.clear()

    # As an estimator parameter the URL itself is stored: a password there is refused.
    with pytest.raises(ValueError, match="must not contain a password") as info:
        resolve_cache(url)
    assert password_user not in str(info.value)


def test_split_password_forms():
    assert split_password("redis://h:1/0") == ("redis://h:1/0", None)
    assert split_password("redis://u:p%40ss@h/0") == ("redis://u@h/0", "p@ss")
    assert split_password("unix:///tmp/r.sock?db=2&password=x") == ("unix:///tmp/r.sock?db=2", "x")
    with pytest.raises(ValueError, match="must start with redis://"):
        split_password("http://h")


def test_resolve_cache_by_url(redis_server):
    url = redis_server.url(3)
    cache = resolve_cache(url)
    assert isinstance(cache, RedisEmbeddingCache) and cache.url == url
    assert resolve_cache(url) is cache and resolve_cache(cache) is cache
    assert isinstance(resolve_cache(url.replace("redis://", "rediss://")), RedisEmbeddingCache)


def test_fork_child_uses_its_own_connection(cache):
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
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


def test_unreachable_server_is_a_cache_error_naming_it():
    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = RedisEmbeddingCache(url, socket_timeout=2)
    with pytest.raises(CacheError, match=f"Redis server of the embedding cache {url} failed"):
        cache.get(_keys("ns", 1), 4)


def test_module_imports_neither_sklearn_nor_redis_and_names_the_extra(monkeypatch):
    code = (
        "import sys, skembed._cache._redis\n"
        "assert 'sklearn' not in sys.modules and 'redis' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True
    )
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'skembed\[redis\]'"):
        RedisEmbeddingCache().get(_keys("ns", 1), 4)


def test_invalid_parameters():
    with pytest.raises(ValueError, match="prefix must be a non-empty str"):
        RedisEmbeddingCache(prefix="")
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        RedisEmbeddingCache(ttl=0)
    with pytest.raises(ValueError, match="lock_timeout must be a positive number"):
        RedisEmbeddingCache(lock_timeout=-1)


# -- end to end: the transformer, folds and processes share one Redis cache ---------------


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    words = [["refund", "broken", "late", "awful"], ["great", "perfect", "love", "superb"]]
    return [f"{' '.join(rng.choice(words[c], 2))} order {i}" for i, c in enumerate(y)], y


_CHILD = textwrap.dedent(
    """
    import sys
    from skembed import OpenAIEmbeddingTransformer
    base_url, cache, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    texts = [f"shared text {i}" for i in range(start, stop)]
    embedder = OpenAIEmbeddingTransformer(base_url=base_url, cache=cache, batch_size=50)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the parent
    embedder.transform(texts)
    """
)


@pytest.mark.slow
def test_folds_and_a_second_process_pay_each_text_once(fake_server, redis_server):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    from skembed import OpenAIEmbeddingTransformer

    url = redis_server.url(1)
    RedisEmbeddingCache(url).clear()
    fake_server.configure(vector_mode="bag_of_words")
    texts, y = _texts(200)
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, dimensions=64, cache=url)
    model = make_pipeline(embedder, LogisticRegression())
    # Threads, not processes: the processes are the second half; this keeps the test fast.
    with joblib.parallel_config(backend="threading"):
        scores = cross_val_score(model, texts, y, cv=4, n_jobs=2, error_score="raise")
    assert scores.mean() > 0.9
    stats = fake_server.stats()
    assert stats["inputs"] == len(set(texts)) and stats["times_embedded_max"] == 1

    # Another process and this one, at once, on overlapping texts: whichever takes the
    # namespace's lock first fetches; the other waits, then fetches only the rest.
    fake_server.reset()
    fake_server.configure(latency=0.1)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, fake_server.base_url, url, "0", "400"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.stdin.write("go\n")
    child.stdin.flush()
    shared = [f"shared text {i}" for i in range(600)]
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=url, batch_size=50)
    X = embedder.transform(shared[200:])
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    stats = fake_server.stats()
    assert stats["inputs"] == 600 and stats["times_embedded_max"] == 1
    want = np.stack([expected_vector("text-embedding-3-small", t) for t in shared[200:300]])
    np.testing.assert_allclose(X[:100], want, atol=1e-6)

    # What the other process stored is the API's vectors, read back here for free.
    fake_server.reset_stats()
    X = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=url).transform(shared[:100])
    assert fake_server.stats(texts=False)["requests"] == 0
    want = np.stack([expected_vector("text-embedding-3-small", t) for t in shared[:100]])
    np.testing.assert_allclose(X, want, atol=1e-6)
    RedisEmbeddingCache(url).clear()
