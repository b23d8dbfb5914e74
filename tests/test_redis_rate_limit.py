"""The rate limiter shared through Redis, against a real redis-server and the fake OpenAI server."""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from skembed import OpenAIEmbeddingTransformer
from skembed._tokens import count_tokens
from skembed.backends import EmbeddingError
from skembed.backends._rate_limit import HEADROOM_SECONDS
from skembed.backends._redis_rate_limit import RedisRateLimiter, rate_limiter_from_url

redis = pytest.importorskip("redis")
# A real redis-server for this module (the Redis cache tests' fixture).

ROOT = Path(__file__).resolve().parents[1]
MINUTE = 60.0


def _headers(tokens_per_minute, tokens_left, requests_per_minute=60_000, requests_left=1000):
    return {
        "x-ratelimit-limit-tokens": str(tokens_per_minute),
        "x-ratelimit-remaining-tokens": str(tokens_left),
        "x-ratelimit-limit-requests": str(requests_per_minute),
        "x-ratelimit-remaining-requests": str(requests_left),
    }


@pytest.fixture
def account(request):
    """An account identity of this test's own, so tests never share buckets."""
    return f"test|{request.node.name}|{time.monotonic_ns()}"


def _limiter(server, account, **kwargs):
    return RedisRateLimiter(server.url(), account, **kwargs)


def _wait(limiter, n_tokens):
    """Seconds the script asks to wait for ``n_tokens`` (taking them when 0)."""
    return limiter._run("take", n_tokens)


# -- the Lua bucket -----------------------------------------------------------------------


def test_unpaced_until_limits_are_learnt(redis_server, account):
    limiter = _limiter(redis_server, account)
    assert _wait(limiter, 10**9) == 0  # nothing known: only 429s slow us down
    limiter.observe({"content-type": "application/json"})  # a server without limits
    assert _wait(limiter, 10**9) == 0


def test_learnt_limits_pace_a_worker_that_starts_later(redis_server, account):
    first = _limiter(redis_server, account)
    # 10 tokens/s; 101 = the 100 taken below and the margin of headroom (1 token).
    first.observe(_headers(tokens_per_minute=600, tokens_left=101), n_tokens=0)
    late = _limiter(redis_server, account)  # another worker, knowing nothing locally
    assert _wait(late, 60) == 0
    assert _wait(first, 40) == 0  # both take from the same tokens
    wait = _wait(late, 50)
    # 50 missing tokens at 10 per second, and the margin of headroom.
    assert 4.8 < wait - HEADROOM_SECONDS <= 5.0
    assert 0 < redis_server.client().pttl(late.key) <= 3_600_000  # forgotten when unused


def test_requests_sent_before_the_limits_were_known_count_against_them(redis_server, account):
    workers = [_limiter(redis_server, account) for _ in range(3)]
    for worker in workers:  # the first wave: three workers, nothing known yet
        assert _wait(worker, 30) == 0
    # The first answer: 101 left after its own 30; the other two may still be in flight.
    workers[0].observe(_headers(tokens_per_minute=600, tokens_left=101), n_tokens=30)
    assert _wait(workers[1], 40) == 0  # 41 left: 40, and the margin (1 token at 10/s)
    # 101 - 60 - 40 = 1 left: 10 tokens and the margin's 1 take 1 s at 10 tokens/s.
    assert 0.9 < _wait(workers[2], 10) <= 1.0


def test_token_capacity_is_shared_once_any_worker_learnt_it(redis_server, account):
    first, other = _limiter(redis_server, account), _limiter(redis_server, account)
    assert first.token_capacity() is None and other.token_capacity() is None
    first.observe({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"})
    assert other.token_capacity() == float("inf")  # requests limited, tokens not said
    assert _wait(first, 100) == 0
    first.observe(_headers(tokens_per_minute=6000, tokens_left=900), n_tokens=100)
    state = redis_server.client().hgetall(first.key)
    assert other.token_capacity() == 1000  # what was left and what the answer used
    assert redis_server.client().hgetall(first.key) == state  # read only


def test_bucket_refills_with_server_time_up_to_its_capacity(redis_server, account):
    limiter = _limiter(redis_server, account)
    assert _wait(limiter, 50) == 0  # the request whose answer teaches the limits
    limiter.observe(_headers(tokens_per_minute=6000, tokens_left=0), n_tokens=50)  # 100/s
    # A request of the whole bucket (50) waits for a full one, with no margin beyond.
    assert 0.45 < _wait(limiter, 50) <= 0.5
    time.sleep(0.2)
    assert 0.2 < _wait(limiter, 50) <= 0.31
    time.sleep(0.5)
    # Full (capacity 50 = remaining + used): larger requests wait for a full bucket, then go.
    assert _wait(limiter, 500) == 0
    assert 4.9 < _wait(limiter, 50) <= 5.0  # charged in full: 500 tokens at 100 per second


def test_a_request_waits_for_both_buckets(redis_server, account):
    limiter = _limiter(redis_server, account)
    assert _wait(limiter, 1) == 0
    limiter.observe(
        _headers(
            tokens_per_minute=10**6, tokens_left=10**5, requests_per_minute=60, requests_left=2
        )
    )
    assert _wait(limiter, 1) == 0
    # One request left, the margin not: out of requests (one per second), not tokens.
    assert 0.05 < _wait(limiter, 1) <= HEADROOM_SECONDS


def test_takes_are_atomic_across_threads(redis_server, account):
    limiter = _limiter(redis_server, account)
    # 1 token/s; 105 = ten takes of 10 and the margin (0.1 token), not eleven.
    limiter.observe(_headers(tokens_per_minute=60, tokens_left=105), n_tokens=0)
    workers = [_limiter(redis_server, account) for _ in range(4)]
    granted = []

    def take(worker):
        for _ in range(8):
            granted.append(_wait(worker, 10) == 0)

    threads = [threading.Thread(target=take, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 10  # exactly the tokens there are, never more


def test_pause_holds_every_worker_and_empties_the_buckets(redis_server, account):
    one, other = _limiter(redis_server, account), _limiter(redis_server, account)
    one.observe(_headers(tokens_per_minute=60_000, tokens_left=1000))  # 1000/s, full
    one.pause(0.4)  # a 429 seen by one worker
    assert 0.35 < _wait(other, 1) <= 0.4
    start = time.monotonic()
    assert other.acquire(10)
    assert 0.35 < time.monotonic() - start < 1.0
    # The pause also stopped the refill before it: the bucket restarts from empty.
    assert 0.3 < _wait(other, 1000) <= 0.61  # full (~0 s) had it not been emptied


def test_acquire_returns_false_when_stopped_and_takes_nothing(redis_server, account):
    limiter = _limiter(redis_server, account)
    assert _wait(limiter, 10) == 0
    limiter.observe(_headers(tokens_per_minute=600, tokens_left=0), n_tokens=10)  # 10/s
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    start = time.monotonic()
    assert limiter.acquire(10, stop) is False
    assert time.monotonic() - start < 0.6  # not the whole 1 s wait
    assert 0.15 < _wait(limiter, 10) <= 0.85  # nothing was taken while waiting
    stop.set()
    assert limiter.acquire(0, stop) is False


def test_accounts_and_names_have_separate_buckets(redis_server, account):
    base = _limiter(redis_server, account)
    assert _wait(base, 1) == 0
    base.observe(_headers(tokens_per_minute=60, tokens_left=0), n_tokens=1)
    assert _wait(base, 1) > 0
    for other in (
        _limiter(redis_server, account, name="team-b"),
        _limiter(redis_server, account + "|another-model"),
    ):
        assert other.key != base.key
        assert _wait(other, 1) == 0
    assert account not in base.key  # Redis holds a digest, not the identity


# -- configuration and failures ------------------------------------------------------------


def test_url_with_a_password_is_refused_without_repeating_it(fake_server):
    for url in (
        "redis://:hunter2secret@127.0.0.1:6379/0",
        "redis://127.0.0.1/0?password=hunter2secret",
    ):
        embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, rate_limiter=url)
        with pytest.raises(ValueError, match="must not contain a password") as info:
            embedder.fit(["a"])
        assert "hunter2secret" not in str(info.value)
        assert "SKEMBED_REDIS_PASSWORD" in str(info.value)
    with pytest.raises(ValueError, match="redis://, rediss:// or unix://"):
        OpenAIEmbeddingTransformer(rate_limiter="http://127.0.0.1:6379").fit(["a"])


def test_name_in_the_url_and_password_from_the_environment(redis_server, account, monkeypatch):
    named = rate_limiter_from_url(f"{redis_server.url()}?name=team-a", account)
    assert named.name == "team-a" and named.url == redis_server.url()
    assert named.key != rate_limiter_from_url(redis_server.url(), account).key
    assert repr(named) == f"RedisRateLimiter({redis_server.url()!r}, name='team-a')"
    client = redis_server.client()
    client.acl_setuser("ratelimit", enabled=True, passwords=["+pw-from-env"], categories=["+@all"],
                       keys=["*"])  # fmt: skip
    try:
        url = f"redis://ratelimit@127.0.0.1:{redis_server.port}/0"
        monkeypatch.setenv("SKEMBED_REDIS_PASSWORD", "pw-from-env")
        assert rate_limiter_from_url(url, account)._run("take", 1) == 0
        monkeypatch.setenv("SKEMBED_REDIS_PASSWORD", "wrong-password")
        with pytest.raises(EmbeddingError, match="shared rate limiter") as info:
            rate_limiter_from_url(url, account)._run("take", 1)
        assert "wrong-password" not in str(info.value)
    finally:
        client.acl_deluser("ratelimit")


def test_unreachable_server_is_an_embedding_error(fake_server):
    port = _closed_port()
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, cache=None, rate_limiter=f"redis://127.0.0.1:{port}/0"
    )
    with pytest.raises(EmbeddingError, match=f"shared rate limiter redis://127.0.0.1:{port}/0"):
        embedder.transform(["a", "b"])
    assert fake_server.stats(texts=False)["requests"] == 0  # nothing sent unpaced


def _closed_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- several workers, one account ---------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys

    import openai  # noqa: F401  (imported before READY, so that the start is simultaneous)

    from skembed import OpenAIEmbeddingTransformer
    from skembed._tokens import count_tokens
    from tests.test_redis_rate_limit import _embedder, _texts

    base_url, limiter, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    texts = _texts(seed)
    count_tokens(texts)
    embedder = _embedder(base_url, None if limiter == "none" else limiter)
    print("READY", flush=True)
    sys.stdin.readline()
    print("DONE", embedder.transform(texts).shape[0], flush=True)
    """
)
_N_TEXTS = 240


def _texts(seed):
    rng = np.random.default_rng(seed)
    return [" ".join(map(str, rng.integers(0, 10_000, 40))) for _ in range(_N_TEXTS)]


def _embedder(base_url, rate_limiter):
    return OpenAIEmbeddingTransformer(
        base_url=base_url,
        cache=None,
        rate_limiter=rate_limiter,
        batch_size=20,
        max_concurrency=2,
        max_retries=100,  # local limiters keep colliding: they must not give up
    )


def _run_three_workers(server, rate_limiter, seed):
    """Two threads (one transformer each) and a subprocess embed at once; their time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": server.api_key}
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER, server.base_url, rate_limiter or "none", str(seed)],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout.readline().strip() == "READY"
        results = {}

        def embed(i):
            results[i] = _embedder(server.base_url, rate_limiter).transform(_texts(seed + i))

        threads = [threading.Thread(target=embed, args=(i,)) for i in (1, 2)]
        start = time.monotonic()
        worker.stdin.write("go\n")
        worker.stdin.flush()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert worker.stdout.readline().split() == ["DONE", str(_N_TEXTS)]
        elapsed = time.monotonic() - start
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert [results[i].shape for i in (1, 2)] == [(_N_TEXTS, 1536)] * 2
    return elapsed


@pytest.mark.slow
def test_workers_sharing_the_limiter_stay_under_the_account_limit(
    redis_server, fake_server, account
):
    total = sum(int(count_tokens(_texts(seed)).sum()) for seed in range(3))
    # The three workers' tokens are ~2 s of the account's budget, the burst 0.5 s of it.
    tpm = int(total / 2 * MINUTE)
    rejected, elapsed = {}, {}
    for mode, rate_limiter, seed in (("local", None, 0), ("shared", redis_server.url(1), 10)):
        fake_server.configure(tpm=tpm, burst_seconds=0.5)  # a full bucket for each run
        fake_server.reset_stats()
        elapsed[mode] = _run_three_workers(fake_server, rate_limiter, seed)
        stats = fake_server.stats(texts=False)
        rejected[mode] = stats["requests_by_status"].get("429", 0)
        assert stats["inputs"] == 3 * _N_TEXTS  # each text sent once, whatever was refused
    print(f"429s: {rejected}; seconds: {elapsed}")
    # The first wave (3 workers x 2 requests, ~1/6 of the budget) fits in the burst; after
    # it, the workers take from one bucket and the server almost never refuses.
    assert rejected["shared"] <= 2
    assert rejected["local"] >= rejected["shared"] + 2  # measured 3-8 local, 0 shared
    # Paced, not slowed down: the ideal is 1.5 s (2 s of budget minus the 0.5 s burst).
    assert elapsed["shared"] < 8
