"""Per-text claims: workers never wait for each other's texts, and never pay twice.

A worker claims the texts it is about to send; others skip them, fetch the rest at
once, and read the claimed ones from the cache when their owner has stored them. A
dead worker's claims lapse and are taken over.

The promises, tested as properties over random overlaps, sizes and kills (several
seeds), with the fake server counting what it embedded:

- every vector returned or cached is its own text's;
- a text is paid twice only if it was in flight in a worker that was killed;
- nothing is lost: a final run sends only texts no worker stored;
- workers with disjoint texts run at once (the server sees their requests overlap),
  where one lock per vector space made them take turns.
"""

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer, RedisEmbeddingCache, _embed
from skembed._cache import cache_key
from skembed._cache._claims import LocalClaims, SQLiteClaims
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 16


def keys_of(texts, namespace="ns"):
    return [cache_key(namespace, t) for t in texts]


@pytest.fixture(params=["local", "sqlite", "redis"])
def claims(request, tmp_path):
    if request.param == "local":
        return LocalClaims()
    if request.param == "sqlite":
        return SQLiteClaims(str(tmp_path / "claims.sqlite3"), str(tmp_path))
    server = request.getfixturevalue("redis_server")
    return RedisEmbeddingCache(server.url(), prefix=f"claims-{os.getpid()}-{time.time()}").claims()


# -- the claims themselves, in every store ---------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_claims_are_exclusive_until_released_or_lapsed(claims, seed):
    rng = np.random.default_rng(seed)
    pool = keys_of([f"text {seed} {i}" for i in range(int(rng.integers(5, 60)))])
    owners = ["a", "b", "c"]
    held = {}  # key -> owner
    for _ in range(30):
        owner = owners[int(rng.integers(3))]
        chosen = sorted(set(rng.choice(len(pool), int(rng.integers(1, len(pool) + 1))).tolist()))
        keys = [pool[i] for i in chosen]
        if rng.random() < 0.7:
            taken = claims.take(keys, owner, 60)
            for key, got in zip(keys, taken, strict=True):
                # Mine if it was free or already mine, never another's.
                assert got == (held.get(key, owner) == owner)
                if got:
                    held[key] = owner
        else:
            claims.release(keys, owner)
            for key in keys:
                if held.get(key) == owner:
                    del held[key]


def test_a_lapsed_claim_is_taken_over_and_a_renewed_one_is_not(claims):
    dead, alive = keys_of(["dead"]), keys_of(["alive"])
    assert claims.take(dead + alive, "first", 0.3).all()
    time.sleep(0.15)
    claims.renew(alive, "first", 5)
    time.sleep(0.3)
    assert claims.take(dead + alive, "second", 5).tolist() == [True, False]


# -- the job: threads ------------------------------------------------------------------


def make(server, cache, **params):
    return OpenAIEmbeddingTransformer(
        model=MODEL,
        dimensions=DIM,
        base_url=server.base_url,
        cache=cache,
        batch_size=8,
        max_concurrency=2,
        **params,
    )


def expected(texts):
    return np.stack([expected_vector(MODEL, t, DIM) for t in texts])


def run_threads(jobs):
    results, errors = {}, []

    def work(name, embedder, texts):
        try:
            results[name] = embedder.transform(texts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("store", ["directory", "redis"])
def test_workers_with_disjoint_texts_fetch_at_once(fake_server, tmp_path, request, store):
    fake_server.configure(latency=0.05)
    if store == "redis":
        server = request.getfixturevalue("redis_server")
        cache = RedisEmbeddingCache(server.url(), prefix=f"disjoint-{time.time()}")
    else:
        cache = EmbeddingCache(tmp_path / "cache")
    sets = {w: [f"worker {w} text {i}" for i in range(64)] for w in range(4)}
    jobs = [(w, make(fake_server, cache), texts) for w, texts in sets.items()]
    results = run_threads(jobs)
    for w, texts in sets.items():
        np.testing.assert_allclose(results[w], expected(texts), atol=1e-6)
    stats = fake_server.stats()
    assert stats["times_embedded_max"] == 1
    # Each worker keeps at most 2 requests in flight: more at once means they overlapped,
    # which one lock per vector space never allowed.
    assert stats["peak_concurrency"] > 2


@pytest.mark.parametrize("seed", range(4))
def test_overlapping_workers_pay_each_text_once(fake_server, tmp_path, seed):
    rng = np.random.default_rng(seed)
    fake_server.configure(latency=float(rng.uniform(0, 0.03)))
    cache = EmbeddingCache(tmp_path / "cache")
    pool = [f"seed {seed} text {i}" for i in range(int(rng.integers(20, 200)))]
    sets = [
        [pool[i] for i in rng.choice(len(pool), int(rng.integers(1, len(pool) + 1)))]
        for _ in range(int(rng.integers(2, 6)))
    ]
    results = run_threads([(w, make(fake_server, cache), texts) for w, texts in enumerate(sets)])
    for w, texts in enumerate(sets):
        np.testing.assert_allclose(results[w], expected(texts), atol=1e-6)
    counts = fake_server.stats()["text_counts"]
    assert set(counts) == {t for texts in sets for t in texts}
    assert set(counts.values()) == {1}


def test_a_dead_workers_claims_are_taken_over_after_they_lapse(fake_server, tmp_path, monkeypatch):
    monkeypatch.setattr(_embed, "CLAIM_SECONDS", 0.5)
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["held by the dead", "free"]
    embedder = make(fake_server, cache)
    namespace = embedder._make_backend().cache_namespace
    # A worker that claimed the first text and died (its claim is never renewed).
    assert cache.claims().take(keys_of(texts[:1], namespace), "dead worker", 0.5).all()
    start = time.monotonic()
    np.testing.assert_allclose(embedder.transform(texts), expected(texts), atol=1e-6)
    assert time.monotonic() - start >= 0.4  # waited for the claim to lapse
    assert fake_server.stats()["text_counts"] == {t: 1 for t in texts}


# -- the job: processes killed at random -----------------------------------------------


def _worker(base_url, key, cache_path, texts, ready):
    os.environ["OPENAI_API_KEY"] = key
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL,
        dimensions=DIM,
        base_url=base_url,
        cache=cache_path,
        batch_size=4,
        max_concurrency=2,
    )
    ready.set()
    embedder.transform(texts)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_random_kills_pay_twice_only_what_was_in_flight_and_lose_nothing(
    fake_server, tmp_path, seed
):
    rng = np.random.default_rng(seed)
    fake_server.configure(latency=0.03)
    cache_path = str(tmp_path / "cache")
    pool = [f"seed {seed} text {i}" for i in range(160)]
    n_workers = 4
    sets = [
        [pool[i] for i in sorted(set(rng.choice(len(pool), int(rng.integers(40, 120))).tolist()))]
        for _ in range(n_workers)
    ]
    doomed = set(rng.choice(n_workers, int(rng.integers(1, 3)), replace=False).tolist())
    # fork: a worker starts at once (the caches and clients rebuild per process).
    context = multiprocessing.get_context("fork")
    workers = []
    for texts in sets:
        ready = context.Event()
        process = context.Process(
            target=_worker,
            args=(fake_server.base_url, fake_server.api_key, cache_path, texts, ready),
        )
        process.start()
        workers.append((process, ready))
    for w, (process, ready) in enumerate(workers):
        if w in doomed:
            ready.wait(60)
            time.sleep(float(rng.uniform(0.05, 0.4)))
            os.kill(process.pid, signal.SIGKILL)
    for process, _ in workers:
        process.join(120)
    for w, (process, _) in enumerate(workers):
        assert process.exitcode == (-signal.SIGKILL if w in doomed else 0), w

    counts = fake_server.stats()["text_counts"]
    twice = {t for t, n in counts.items() if n > 1}
    # Paid twice only if a killed worker had it in flight: at most its 2 requests of 4.
    assert twice <= {t for w in doomed for t in sets[w]}
    assert len(twice) <= len(doomed) * 2 * 4
    # Nothing lost: a final run sends only texts no worker stored, and every vector
    # (cached or new) is its own text's.
    fake_server.reset_stats()
    union = sorted({t for texts in sets for t in texts})
    final = OpenAIEmbeddingTransformer(
        model=MODEL, dimensions=DIM, base_url=fake_server.base_url, cache=cache_path
    )
    np.testing.assert_allclose(final.transform(union), expected(union), atol=1e-6)
    resent = set(fake_server.stats()["text_counts"])
    survivors = {t for w in range(n_workers) if w not in doomed for t in sets[w]}
    assert not resent & survivors
    assert resent <= {t for w in doomed for t in sets[w]}


def test_claims_held_through_a_long_fetch_are_renewed_not_taken_over(
    fake_server, tmp_path, monkeypatch
):
    # Requests slower than a claim's life: only the renewals keep the second worker
    # waiting instead of paying again.
    monkeypatch.setattr(_embed, "CLAIM_SECONDS", 0.3)
    fake_server.configure(latency=1.2)
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"slow text {i}" for i in range(8)]
    first = threading.Thread(target=make(fake_server, cache).transform, args=(texts,))
    first.start()
    time.sleep(0.4)  # the first worker's claims are taken and older than CLAIM_SECONDS
    np.testing.assert_allclose(
        make(fake_server, cache).transform(texts), expected(texts), atol=1e-6
    )
    first.join()
    assert fake_server.stats()["text_counts"] == {t: 1 for t in texts}
