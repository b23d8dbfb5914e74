"""Batch API mode end to end: the real SDK against the fake server's Files/Batch endpoints."""

import io
import json
import os
import signal
import time

import numpy as np
import openai
import pytest

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._embed import embed_texts
from skembed.backends import EmbeddingAPIError
from skembed.backends._openai_batch import OpenAIBatchBackend
from tests._backends import openai_batch_backend
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 32


@pytest.fixture
def server(fake_server):
    fake_server.configure_batches(completion_seconds=0.15)
    return fake_server


@pytest.fixture
def cache(tmp_path):
    store = EmbeddingCache(tmp_path / "cache")
    yield store
    store.close()


def _texts(prefix, n):
    return [f"{prefix} text {i}" for i in range(n)]


@pytest.fixture
def openai_embedder_params(cache):
    return {
        "batch_size": 8,
        "batch_poll_interval": 0.02,
        "dimensions": DIM,
        "batch_api": True,
        "cache": cache,
    }


def _backend(server, **params):
    return openai_batch_backend(
        base_url=server.base_url, dimensions=DIM, batch_size=8, poll_interval=0.02, **params
    )


def _expected(texts):
    return np.stack([expected_vector(MODEL, t, DIM) for t in texts])


def _assert_embedded_once(server, texts):
    counts = server.stats()["text_counts"]
    assert [counts.get(t) for t in texts] == [1] * len(texts)


def test_completed_batch_matches_online_and_serves_it(server, openai_embedder, cache):
    texts = _texts("done", 40)
    X = openai_embedder().transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert stats["batches_created"] == 1
    assert stats["batch_lines"] == 5  # 40 inputs, 8 per request line
    assert stats["requests"] == 0  # nothing went to the online endpoint
    # Same cache namespace: an online transformer now pays for nothing.
    online = OpenAIEmbeddingTransformer(base_url=server.base_url, dimensions=DIM, cache=cache)
    np.testing.assert_array_equal(online.transform(texts), X)
    assert server.stats()["requests"] == 0
    _assert_embedded_once(server, texts)


def test_online_results_serve_a_batch_job(server, openai_embedder, cache):
    texts = _texts("online first", 10)
    online = OpenAIEmbeddingTransformer(base_url=server.base_url, dimensions=DIM, cache=cache)
    online.transform(texts[:6])
    X = openai_embedder().transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    assert server.stats()["batch_inputs"] == 4
    _assert_embedded_once(server, texts)


def test_batch_price_is_half_the_list_price(server):
    backend = _backend(server)
    assert backend.usd_per_million_tokens == pytest.approx(0.01)
    assert _backend(server, usd_per_million_tokens=0.5).usd_per_million_tokens == 0.5


def test_job_is_split_over_the_per_batch_limits(server, cache):
    server.configure_batches(max_requests_per_batch=3, max_inputs_per_batch=20)
    texts = _texts("split", 60)
    backend = _backend(server, max_requests_per_batch=3, max_inputs_per_batch=20)
    vectors, _ = embed_texts(texts, backend, cache)
    np.testing.assert_allclose(vectors, _expected(texts), atol=1e-6)
    stats = server.stats()
    # 60 inputs in lines of 8 (eight lines); at most 20 inputs (so 2 lines) per batch.
    assert stats["batches_created"] == 4
    assert stats["batch_inputs"] == 60
    _assert_embedded_once(server, texts)


def test_fake_server_refuses_a_batch_over_its_limits(server):
    server.configure_batches(max_requests_per_batch=2)
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key)
    upload = _upload(client, ["x0", "x1", "x2"])
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    while batch.status not in ("completed", "failed"):
        time.sleep(0.02)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert batch.errors.data[0].code == "too_many_requests"
    assert batch.output_file_id is None


def test_partially_failed_batch_is_retried(server, openai_embedder, cache):
    server.configure_batches(plans=[{"fail_fraction": 0.5}])
    texts = _texts("partial", 48)
    X = openai_embedder().transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert stats["batches_created"] == 2
    assert stats["batch_inputs"] == 48  # the failed lines were answered 500: not embedded
    _assert_embedded_once(server, texts)


def test_failed_validation_is_resubmitted(server, openai_embedder, cache):
    server.configure_batches(plans=[{"outcome": "failed"}])
    texts = _texts("invalid once", 12)
    X = openai_embedder().transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    assert server.stats()["batches_created"] == 2


def test_persistent_line_failure_names_rows_and_keeps_the_rest(server, openai_embedder, cache):
    texts = _texts("persistent", 32)
    texts[21] = "poison pill"
    server.configure_batches(fail_texts=["poison pill"])
    embedder = openai_embedder(batch_size=4)
    with pytest.raises(EmbeddingAPIError, match="HTTP 400") as info:
        embedder.transform(texts)
    rows = info.value.rows
    assert 21 in rows
    # Lines of 4 inputs are halved on each resubmission: 3 attempts narrow it to one.
    assert rows == (21,)
    # Everything else was cached before the error: an online call pays for nothing.
    online = OpenAIEmbeddingTransformer(base_url=server.base_url, dimensions=DIM, cache=cache)
    others = [t for i, t in enumerate(texts) if i != 21]
    np.testing.assert_allclose(online.transform(others), _expected(others), atol=1e-6)
    assert server.stats()["requests"] == 0
    assert server.stats()["batches_created"] == 3  # the first try and two resubmissions


def test_expired_batch_keeps_the_completed_part(server, openai_embedder, cache):
    server.configure_batches(plans=[{"outcome": "expired", "complete_fraction": 0.5}])
    texts = _texts("expired", 32)
    X = openai_embedder().transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert stats["batches_created"] == 2
    assert stats["batch_inputs"] == 32  # half in the expired batch, half resubmitted
    _assert_embedded_once(server, texts)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_interrupted_job_resumes_its_batches(server, openai_embedder, cache):
    server.configure_batches(completion_seconds=1.0)
    texts = _texts("resume", 40)
    embedder = openai_embedder()

    def interrupt(signum, frame):
        raise KeyboardInterrupt  # what Ctrl-C does while the job polls

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            embedder.transform(texts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert server.stats()["batches_created"] == 1
    # Run again: the recorded batch is awaited, not paid for again.
    X = embedder.transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert stats["batches_created"] == 1
    assert stats["batch_files_uploaded"] == 1
    _assert_embedded_once(server, texts)
    # The ledger forgets a batch once it is consumed.
    assert not list(_ledger_dir(cache).glob("*.json"))


def test_resume_after_part_was_cached_waits_only_for_the_rest(server, cache):
    # A re-run asks only for what is not cached yet: another set of texts, same batches.
    server.configure_batches(plans=[{"seconds": 0.1}, {"seconds": 1.0}])
    texts = _texts("half cached", 32)
    backend = _backend(server, max_inputs_per_batch=16)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            embed_texts(texts, backend, cache)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    found, _ = cache.get([_key(backend, t) for t in texts], DIM, count=False)
    assert found.sum() == 16  # the fast batch was read and cached before the stop
    vectors, report = embed_texts(texts, backend, cache)
    np.testing.assert_allclose(vectors, _expected(texts), atol=1e-6)
    assert report.n_embedded == 16
    assert server.stats()["batches_created"] == 2
    _assert_embedded_once(server, texts)


def _key(backend, text):
    from skembed._cache import cache_key

    return cache_key(backend.cache_namespace, text)


def _ledger_dir(cache=None):
    """Where the job's ledgers are: in its cache's directory, else the default one."""
    import os
    from pathlib import Path

    from skembed._cache import default_cache_dir

    return Path(os.path.join(cache.path if cache else default_cache_dir(), "batch_jobs"))


def _interrupted(run, after=0.5):
    """Run ``run()`` and stop it with a KeyboardInterrupt (Ctrl-C) ``after`` seconds in."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, after)
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_ledger_lives_in_the_cache_directory_of_the_job(
    server, openai_embedder, tmp_path, monkeypatch
):
    monkeypatch.setenv("SKEMBED_CACHE_DIR", str(tmp_path / "default"))
    server.configure_batches(completion_seconds=1.0)
    texts = _texts("ledger in its cache", 40)
    embedder = openai_embedder(cache=str(tmp_path / "cache"))
    _interrupted(lambda: embedder.transform(texts))
    (ledger,) = (tmp_path / "cache" / "batch_jobs").glob("*.json")
    data = ledger.read_bytes()
    assert json.loads(data)["batches"][0]["batch"] is not None
    # Digests only: neither a text nor the key.
    assert not any(text.encode() in data for text in texts) and server.api_key.encode() not in data
    assert ledger.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "default").exists()  # nothing under the default directory
    # Run again: the recorded batch is awaited, not paid for again.
    X = embedder.transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert (stats["batches_created"], stats["batch_files_uploaded"]) == (1, 1)
    _assert_embedded_once(server, texts)
    assert not ledger.exists()
    assert not (tmp_path / "default").exists()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_ledger_lives_under_the_redis_prefix_of_the_job(
    server, openai_embedder, redis_server, tmp_path, monkeypatch
):
    from skembed import RedisEmbeddingCache

    monkeypatch.setenv("SKEMBED_CACHE_DIR", str(tmp_path / "default"))
    server.configure_batches(completion_seconds=1.0)
    texts = _texts("ledger in redis", 40)
    cache = RedisEmbeddingCache(redis_server.url(), prefix="batch-ledger-test")
    embedder = openai_embedder(cache=cache)
    _interrupted(lambda: embedder.transform(texts))
    client = redis_server.client()
    (name,) = client.keys("batch-ledger-test:state:batch_jobs/*.json")
    assert not any(text.encode() in client.get(name) for text in texts)
    assert not (tmp_path / "default").exists()
    X = embedder.transform(texts)
    np.testing.assert_allclose(X, _expected(texts), atol=1e-6)
    assert server.stats()["batches_created"] == 1
    _assert_embedded_once(server, texts)
    assert not client.exists(name)
    cache.clear()


def test_a_job_without_a_cache_keeps_its_ledger_in_the_default_directory(
    server, tmp_path, monkeypatch
):
    monkeypatch.setenv("SKEMBED_CACHE_DIR", str(tmp_path / "default"))
    backend = _backend(server)
    place = backend._ledger_place(None)
    assert os.path.dirname(place.location) == str(tmp_path / "default" / "batch_jobs")
    # The same file as the default cache's: a job stopped without a cache resumes with it.
    default = EmbeddingCache(tmp_path / "default")
    assert backend._ledger_place(default).location == place.location
    default.close()
    explicit = _backend(server, state_dir=str(tmp_path / "mine"))._ledger_place(default)
    assert os.path.dirname(explicit.location) == str(tmp_path / "mine")


def test_batch_api_refuses_azure():
    with pytest.raises(ValueError, match="Azure"):
        OpenAIEmbeddingTransformer(
            base_url="https://example.invalid", api_version="2024-02-01", batch_api=True
        ).fit(["a"])


def test_stop_between_upload_and_create_neither_uploads_nor_creates_twice(
    server, cache, monkeypatch
):
    texts = _texts("crash before create", 16)
    backend = _backend(server)
    real_create = OpenAIBatchBackend._create_batch

    def crash(self, file_id):
        raise KeyboardInterrupt  # the file is uploaded and recorded, the batch not created

    monkeypatch.setattr(OpenAIBatchBackend, "_create_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(texts, backend, cache)
    assert server.stats()["batches_created"] == 0
    monkeypatch.setattr(OpenAIBatchBackend, "_create_batch", real_create)
    vectors, _ = embed_texts(texts, backend, cache)
    np.testing.assert_allclose(vectors, _expected(texts), atol=1e-6)
    stats = server.stats()
    assert (stats["batch_files_uploaded"], stats["batches_created"]) == (1, 1)
    _assert_embedded_once(server, texts)


def test_a_batch_is_created_once_per_file(server):
    # If the answer to a create is lost, the retry must find the batch, not pay twice.
    backend = _backend(server)
    client = backend.client()
    upload = _upload(client, ["x"])
    first = backend._create_batch(upload.id)
    assert backend._create_batch(upload.id).id == first.id
    assert server.stats()["batches_created"] == 1


def _upload(client, texts):
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": MODEL, "input": [text]},
        }
        for i, text in enumerate(texts)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")


def test_fake_server_cancel_list_delete_and_key(server):
    server.configure_batches(completion_seconds=5.0)
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    upload = _upload(client, ["a", "b"])
    assert client.files.content(upload.id).content.count(b"\n") == 2
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert [b.id for b in client.batches.list()] == [batch.id]
    time.sleep(0.6)  # past validation
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status == "cancelled"
    errors = client.files.content(cancelled.error_file_id).content.splitlines()
    assert [json.loads(e)["error"]["code"] for e in errors] == ["batch_cancelled"] * 2
    assert client.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(upload.id)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0).batches.list()
    assert server.stats(texts=False)["times_embedded_max"] == 0
