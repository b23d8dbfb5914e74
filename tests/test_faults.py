"""Fault suite: a long job through server errors, dropped connections, 429 bursts and
timeouts completes with the right vectors and pays for each text once; a persistent
outage ends in a clear error, in bounded time, with everything received kept.

The fake server charges ("embeds", in ``/stats`` ``text_counts``) a text only when it
answers 200 with its vector; every injected fault but ``slow`` answers before charging.
So ``times_embedded_max == 1`` says that no text was ever sent again after it was paid
for. A ``slow`` fault answers 200 (charged) after the client's timeout, like a real
answer the client stopped waiting for: the one case where paying twice is unavoidable.
"""

import math
import time

import numpy as np
import pytest

from skembed import EmbeddingCache
from skembed._cache import cache_key
from skembed.backends import EmbeddingAPIError, _retry
from skembed.backends._openai import PROBE_MAX_INPUTS
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 64  # small vectors keep 20,000 of them cheap to send, decode and compare


def expected(texts):
    return np.stack([expected_vector(MODEL, text, DIM) for text in texts])


@pytest.fixture
def openai_embedder_params():
    return {"dimensions": DIM}


def cache_namespace(openai_embedder):
    return openai_embedder()._backend().cache_namespace


def worst_backoff(retries):
    """Longest total wait of ``retries`` back-offs without retry-after (jitter at most 1)."""
    return sum(
        min(_retry._BACKOFF_CAP, _retry._BACKOFF_BASE * 2**attempt) for attempt in range(retries)
    )


@pytest.mark.slow
def test_twenty_thousand_texts_through_every_kind_of_fault(fake_server, openai_embedder):
    texts = [f"fault suite text {i}" for i in range(20_000)]
    p_fail = {"500": 0.10, "drop": 0.05, "timeout": 0.02}
    n_429 = 8
    fake_server.configure(
        # A burst of 429s first, then random faults on every request.
        faults=[{"kind": "429", "retry_after": 0.5}] * n_429,
        p_500=p_fail["500"],
        p_drop=p_fail["drop"],
        p_timeout=p_fail["timeout"],
        timeout_seconds=2.0,  # the server sleeps past the client's timeout, then hangs up
        fault_seed=10,
    )
    batch_size = 50
    start = time.perf_counter()
    X = openai_embedder(batch_size=batch_size, max_concurrency=8, timeout=1.0).transform(texts)
    elapsed = time.perf_counter() - start

    # Every row is the server's clean vector for its text, in order.
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    stats = fake_server.settled_stats()
    by_status = stats["requests_by_status"]
    # Each kind of fault did happen...
    assert by_status["429"] == n_429
    for kind in p_fail:
        assert by_status[kind] >= 1, by_status
    # ...yet each text was paid for exactly once: none lost, none twice.
    assert stats["inputs"] == len(texts)
    assert len(stats["text_counts"]) == len(texts)
    assert stats["times_embedded_max"] == 1
    # Retries in line with the fault rate: failed attempts before n successes at failure
    # rate p average n p / (1 - p); allow five standard deviations (sqrt(n p) / (1 - p))
    # above that, plus the 429 burst.
    n_ok = by_status["200"]
    assert n_ok >= len(texts) / batch_size
    p = sum(p_fail.values())
    retries = stats["requests"] - n_ok
    assert retries <= n_429 + (n_ok * p + 5 * math.sqrt(n_ok * p)) / (1 - p), by_status
    print(
        f"\n20,000 texts in {elapsed:.1f} s: {stats['requests']} requests, "
        f"{retries} retried ({dict(sorted(by_status.items()))}), texts lost 0, paid twice 0"
    )


def test_slow_answers_the_client_abandoned_are_the_only_ones_paid_twice(
    fake_server, openai_embedder
):
    # The real API bills an answer even when the client stopped waiting for it; nothing
    # on the client's side can tell, so its retry pays again. Only those texts may.
    texts = [f"slow text {i}" for i in range(1_000)]
    fake_server.configure(faults=[{"kind": "ok"}, {"kind": "slow", "seconds": 2.5}] * 3)
    X = openai_embedder(batch_size=50, max_concurrency=4, timeout=1.0).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    stats = fake_server.settled_stats()
    assert stats["requests_by_status"]["slow"] == 3
    # The probe (the first texts, alone, while the limits are unknown), then 50 a request.
    assert stats["requests_by_status"]["200"] == 1 + -(-(len(texts) - PROBE_MAX_INPUTS) // 50)
    paid_twice = {text for text, n in stats["text_counts"].items() if n > 1}
    assert stats["times_embedded_max"] == 2
    assert len(paid_twice) == stats["inputs"] - len(texts) <= 3 * 50


def test_persistent_500s_end_in_a_clear_error_in_bounded_time_keeping_what_arrived(
    fake_server, openai_embedder, tmp_path
):
    texts = [f"outage text {i}" for i in range(2_000)]
    n_ok, max_retries = 10, 3
    # Ten requests succeed, then the server fails every request for as long as it runs.
    fake_server.configure(faults=[{"kind": "ok"}] * n_ok, p_500=1.0)
    cache = str(tmp_path / "cache")
    start = time.perf_counter()
    with pytest.raises(EmbeddingAPIError) as info:
        openai_embedder(
            cache=cache, batch_size=50, max_concurrency=4, max_retries=max_retries
        ).transform(texts)
    elapsed = time.perf_counter() - start
    error = info.value
    assert error.status_code == 500
    assert f"gave up after {max_retries} retries" in str(error)
    assert "The server had an error" in str(error)
    assert error.rows  # the rows that are missing are named
    # Jittered back-offs take between half and all of the schedule; the job stops at the
    # first request that runs out of retries, so the whole schedule bounds it.
    assert worst_backoff(max_retries) / 2 <= elapsed <= worst_backoff(max_retries) + 3
    stats = fake_server.settled_stats()
    assert stats["requests_by_status"]["200"] == n_ok
    # No request was tried more than 1 + max_retries times: the outage is not hammered.
    assert stats["requests_by_status"]["500"] <= (len(texts) // 50 - n_ok) * (1 + max_retries)

    # Everything the ten successful requests (the probe and nine of 50) returned is in
    # the cache, exactly.
    paid = set(stats["text_counts"])
    assert len(paid) == PROBE_MAX_INPUTS + (n_ok - 1) * 50
    keys = [cache_key(cache_namespace(openai_embedder), text) for text in texts]
    store = EmbeddingCache(cache)
    found, vectors = store.get(keys, DIM)
    store.close()
    assert {t for t, hit in zip(texts, found, strict=True) if hit} == paid
    np.testing.assert_allclose(vectors[found], expected(np.array(texts)[found]), atol=1e-6)

    # After the outage, a re-run sends only what was missing.
    fake_server.reset()
    X = openai_embedder(cache=cache, batch_size=50).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    assert set(fake_server.stats()["text_counts"]) == set(texts) - paid


def test_default_retry_schedule_is_bounded():
    # Without retry-after headers, a request gives up after at most this long asleep:
    # 0.5 + 1 + 2 + 4 + 8 + 16 + 20 + 20 s with the default of 8 retries.
    assert worst_backoff(8) == 71.5
    draws = [_retry._backoff(attempt) for attempt in range(12) for _ in range(50)]
    assert max(draws) <= _retry._BACKOFF_CAP
    assert min(draws) >= _retry._BACKOFF_BASE / 2


class _FullDisk(EmbeddingCache):
    """A cache whose disk fills up after two writes."""

    def __init__(self, path):
        super().__init__(path)
        self.writes = 0
        self.handed = 0  # keys passed to put up to the first failing call, included

    def put(self, keys, vectors):
        self.writes += 1
        if self.writes <= 3:
            self.handed += len(keys)
        if self.writes > 2:
            raise OSError(28, "No space left on device")
        super().put(keys, vectors)


def test_a_failing_cache_write_stops_the_job_instead_of_paying_for_the_rest(
    fake_server, openai_embedder, tmp_path
):
    fake_server.configure(latency=0.02)
    texts = [f"disk text {i}" for i in range(2_000)]
    cache = _FullDisk(tmp_path / "cache")
    with pytest.raises(OSError, match="No space left"):
        openai_embedder(cache=cache, batch_size=20, max_concurrency=2).transform(texts)
    # After the first failed write, only requests its two threads had under way were
    # answered (and paid for): at most one finished and one in flight per thread, not
    # the rest of the 100 the job planned.
    assert fake_server.settled_stats()["requests"] <= cache.handed // 20 + 2 * 2
    # What the good writes stored stays readable (answers that arrive after the failure
    # are offered to the cache too, in case the failure was passing).
    found, vectors = cache.get([cache_key(cache_namespace(openai_embedder), t) for t in texts], DIM)
    assert found.sum() >= 20
    np.testing.assert_allclose(vectors[found], expected(np.array(texts)[found]), atol=1e-6)
    cache.close()


def test_exhausted_quota_fails_at_once_instead_of_retrying(fake_server, openai_embedder):
    # Also a 429, but waiting cannot help: the default 8 retries would take a minute.
    embedder = openai_embedder(batch_size=50, max_concurrency=2)
    # A first call loads the tokenizer and builds the client, so that the clock below times
    # only the refusal (on a loaded machine the one-time setup alone can take seconds).
    embedder.transform(["warm up"])
    fake_server.reset_stats()
    fake_server.configure(faults=[{"kind": "quota"}] * 50)
    start = time.perf_counter()
    with pytest.raises(EmbeddingAPIError, match="HTTP 429.*exceeded your current quota") as info:
        embedder.transform([f"quota text {i}" for i in range(500)])
    assert time.perf_counter() - start < 10  # retrying with backoff would take over 60 s
    assert info.value.status_code == 429
    assert "gave up" not in str(info.value)
    # Nothing is retried: each of the two threads sent its request, and at most one more
    # it had taken before the first refusal stopped the job.
    assert fake_server.settled_stats()["requests"] <= 2 * 2
