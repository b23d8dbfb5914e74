"""Workers sharing one cache: per-text claims against one lock per vector space.

The fake OpenAI server runs as its own process (100 ms per request, no rate limit).
Workers are processes, each an ``OpenAIEmbeddingTransformer(max_concurrency=2,
batch_size=50)`` through one cache (a directory, or a Redis server with ``--store
redis``). Two scenarios, each timed with claims and with the former namespace lock,
which the baseline reproduces by holding ``cache.lock(namespace)`` around each worker's
``transform``, exactly where the job held it before claims:

- **disjoint**: 4 workers x 2,000 different texts each. Target: wall time <= 0.35x the
  namespace lock's (ideal 0.25x: the workers no longer take turns);
- **same**: 4 workers x the same 2,000 texts. Target: each text paid exactly once, wall
  time <= 1.2x one worker alone.

Each run starts from an empty cache; the server's per-text counts tell what was paid.
The clock starts once every worker is ready: its ``openai`` SDK imported and its
tokeniser loaded (about 1.5 s of CPU per process, which four processes starting at once
on two cores would otherwise spend inside the timed part, under claims but not under the
lock, where each worker starts after the previous one finished). ``--cold`` times them
from a cold start instead, one-time costs included.

Usage::

    python benchmarks/bench_claims.py [--store directory|redis] [--texts 2000] [--cold]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer, RedisEmbeddingCache
from tests.fake_openai import FakeOpenAIServer

MODEL = "text-embedding-3-small"
DIM = 64
N_WORKERS = 4


def make_cache(spec):
    kind, where = spec
    return (
        RedisEmbeddingCache(where[0], prefix=where[1]) if kind == "redis" else EmbeddingCache(where)
    )


def worker(base_url, key, spec, texts, under_lock, cold, ready, start):
    os.environ["OPENAI_API_KEY"] = key
    if not cold:  # one-time costs of a process, paid before the clock starts
        import openai  # noqa: F401

        from skembed._tokens import get_encoding

        get_encoding("cl100k_base")
    cache = make_cache(spec)
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL,
        dimensions=DIM,
        base_url=base_url,
        cache=cache,
        max_concurrency=2,
        batch_size=50,
    )
    namespace = embedder._backend().cache_namespace
    ready.release()
    start.wait()
    lock = cache.lock(namespace) if under_lock else contextlib.nullcontext()
    with lock:
        embedder.transform(texts)


def run(server, spec, text_sets, under_lock, cold):
    """Wall seconds for the workers (one per text set), and the server's counts."""
    server.reset_stats()
    context = multiprocessing.get_context("fork")
    start = context.Event()
    ready = context.Semaphore(0)
    processes = [
        context.Process(
            target=worker,
            args=(server.base_url, server.api_key, spec, texts, under_lock, cold, ready, start),
        )
        for texts in text_sets
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire(timeout=120)
    time.sleep(0.5)  # every worker waiting on the event, the machine quiet again
    began = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - began
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    return seconds, server.stats()["text_counts"]


def fresh_spec(store, redis_url, label):
    if store == "redis":
        return ("redis", (redis_url, f"bench-claims-{label}-{time.time_ns()}"))
    return ("directory", tempfile.mkdtemp(prefix=f"bench-claims-{label}-"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["directory", "redis"], default="directory")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument(
        "--cold", action="store_true", help="start the clock before the workers import openai"
    )
    args = parser.parse_args(argv)

    redis_context = contextlib.nullcontext(None)
    if args.store == "redis":
        from tests.redis_server import running_redis_server

        redis_context = running_redis_server(tempfile.mkdtemp())
    with redis_context as redis_server, FakeOpenAIServer(latency=0.1) as server:
        url = None if redis_server is None else redis_server.url()
        n = args.texts
        disjoint = [[f"worker {w} text {i}" for i in range(n)] for w in range(N_WORKERS)]
        same = [[f"shared text {i}" for i in range(n)]] * N_WORKERS
        print(
            f"store={args.store}, {N_WORKERS} workers x {n} texts, 100 ms per request, "
            f"max_concurrency=2, {'cold' if args.cold else 'warm'} workers, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        rows = []
        lock_s, _ = run(server, fresh_spec(args.store, url, "lock"), disjoint, True, args.cold)
        claim_s, counts = run(
            server, fresh_spec(args.store, url, "claims"), disjoint, False, args.cold
        )
        assert set(counts.values()) == {1} and len(counts) == N_WORKERS * n
        rows.append(("disjoint: namespace lock", lock_s, 1.0))
        rows.append(("disjoint: claims", claim_s, claim_s / lock_s))
        one_s, _ = run(server, fresh_spec(args.store, url, "one"), same[:1], False, args.cold)
        same_s, counts = run(server, fresh_spec(args.store, url, "same"), same, False, args.cold)
        paid_twice = sum(1 for v in counts.values() if v > 1)
        rows.append(("same texts: one worker alone", one_s, 1.0))
        rows.append((f"same texts: {N_WORKERS} workers, claims", same_s, same_s / one_s))
        for name, seconds, ratio in rows:
            print(f"  {name:<36} {seconds:7.2f} s   {ratio:5.2f}x")
        print(f"  disjoint target <= 0.35x the lock: {claim_s / lock_s:.2f}x")
        print(
            f"  same texts: paid {sum(counts.values())} for {len(counts)} texts "
            f"({paid_twice} twice); target <= 1.2x one worker: {same_s / one_s:.2f}x"
        )
        print(f"  load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
