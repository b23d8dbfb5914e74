"""Batch API mode end to end: the real SDK against the fake server's Files/Batch endpoints."""

import io
import json
import os
import pickle
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


# -- malformed output lines: failed lines, resubmitted, then named ----------------------
#
# The property behind every test below: each text is either cached with its own vector
# or named by the error, never both; a text is paid for (embedded by the server) once
# per line that carried it, and a line that came back readable is never sent again. The
# server embeds (and charges) a malformed line too, so with lines of ``k`` inputs
#     sum of the texts' embed counts == texts cached + k * malformed lines
# holds exactly when no readable line was paid twice.


def _small_backend(server, batch_size, **params):
    return openai_batch_backend(
        base_url=server.base_url,
        dimensions=DIM,
        batch_size=batch_size,
        poll_interval=0.01,
        **params,
    )


def _outcome(texts, backend, cache):
    """Run the job; the EmbeddingAPIError it ends with, or None (any other error fails)."""
    try:
        embed_texts(texts, backend, cache)
    except EmbeddingAPIError as error:
        return error
    return None


def _cached_or_named(texts, backend, cache, error):
    """Assert each text is cached with its own vector or named by ``error``; the found mask."""
    found, vectors = cache.get([_key(backend, t) for t in texts], DIM, count=False)
    np.testing.assert_allclose(vectors[found], _expected(np.array(texts)[found]), atol=1e-6)
    named = set(error.rows) if error is not None else set()
    assert named == set(np.flatnonzero(~found).tolist())
    return found


def _assert_no_good_line_paid_twice(server, texts, found, batch_size):
    stats = server.stats()
    paid = sum(stats["text_counts"].get(t, 0) for t in texts)
    assert paid == found.sum() + batch_size * stats["batch_malformed_lines"]
    return stats["text_counts"]


def _random_malformed_job(server, seed, prefix):
    """Random sizes, malformed shares and positions (the fake's seed) for ``seed``."""
    rng = np.random.default_rng(seed)
    batch_size = int(rng.choice([1, 2, 3, 8]))
    texts = _texts(f"{prefix} {seed}", batch_size * int(rng.integers(2, 13)))
    server.configure_batches(
        malformed_output_fraction=float(rng.uniform(0.05, 0.7)),
        malformed_output_lines=int(rng.integers(0, 2)),
        fail_seed=seed,
    )
    return rng, batch_size, texts


@pytest.mark.parametrize("seed", range(6))
def test_malformed_output_lines_are_resubmitted_then_named(server, cache, seed):
    server.configure_batches(completion_seconds=0.05)
    _, batch_size, texts = _random_malformed_job(server, seed, "malformed")
    backend = _small_backend(server, batch_size)
    error = _outcome(texts, backend, cache)
    found = _cached_or_named(texts, backend, cache, error)
    counts = _assert_no_good_line_paid_twice(server, texts, found, batch_size)
    if error is not None:
        assert "malformed" in error.message
        assert server.api_key.encode() not in pickle.dumps(error)
        # A text is named only after its line came back malformed in every attempt.
        attempts = backend.max_resubmits + 1
        assert [counts[texts[row]] for row in error.rows] == [attempts] * len(error.rows)
    assert not list(_ledger_dir(cache).glob("*.json"))  # consumed: nothing to resume
    # A re-run sends only the texts named, never one already cached.
    again = _outcome(texts, backend, cache)
    after = _assert_no_good_line_paid_twice(
        server, texts, _cached_or_named(texts, backend, cache, again), batch_size
    )
    assert [after[t] for t in np.array(texts)[found]] == [counts[t] for t in np.array(texts)[found]]
    assert not list(_ledger_dir(cache).glob("*.json"))


def _alarm(run, after):
    """Run ``run()``, raising KeyboardInterrupt in it (Ctrl-C) ``after`` seconds in.

    Returns what it raised, or None if it ended first.
    """
    armed = [True]

    def interrupt(signum, frame):
        if armed[0]:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, after)
        try:
            run()
        except (KeyboardInterrupt, EmbeddingAPIError) as error:
            return error
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return None


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
@pytest.mark.parametrize("seed", range(8))
def test_interrupted_job_with_malformed_lines_resumes_without_repaying(server, cache, seed):
    rng, batch_size, texts = _random_malformed_job(server, seed, "interrupted malformed")
    seconds = float(rng.uniform(0.1, 0.3))
    server.configure_batches(completion_seconds=seconds)
    backend = _small_backend(server, batch_size, max_inputs_per_batch=batch_size * 4)
    # Anywhere from the first upload to the resubmissions' polling.
    after = seconds * float(rng.uniform(0.02, 2.5))
    _alarm(lambda: embed_texts(texts, backend, cache), after=after)
    found, _ = cache.get([_key(backend, t) for t in texts], DIM, count=False)
    before = server.stats()["text_counts"]
    # Run again (as after a restart): what a recorded batch carries is awaited, not
    # paid again; what was cached is not asked for.
    rerun = _small_backend(server, batch_size, max_inputs_per_batch=batch_size * 4)
    error = _outcome(texts, rerun, cache)
    final = _cached_or_named(texts, rerun, cache, error)
    counts = _assert_no_good_line_paid_twice(server, texts, final, batch_size)
    cached_first = np.array(texts)[found]
    assert [counts[t] for t in cached_first] == [before[t] for t in cached_first]
    assert not list(_ledger_dir(cache).glob("*.json"))


def _base64_rows(rows):
    import base64

    return [base64.b64encode(np.asarray(r, dtype="<f4").tobytes()).decode() for r in rows]


def _rows_of(body):
    import base64

    return [
        np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in body["data"]
    ]


def _set_rows(record, rows):
    for item, encoded in zip(record["response"]["body"]["data"], _base64_rows(rows), strict=True):
        item["embedding"] = encoded


def _damage(kind, record, raw, rng):
    """``(damaged line, the number of the input to resend or None for all of them)``."""
    record = json.loads(json.dumps(record))
    body = record["response"]["body"]
    whole = None
    if kind == "cut":
        return raw[: len(raw) // 2], whole
    if kind == "cut_before_custom_id":
        return raw[:12], whole
    if kind == "not_an_object":
        return json.dumps([record]), whole
    if kind == "no_custom_id":
        del record["custom_id"]
    elif kind == "unknown_custom_id":
        record["custom_id"] = "skembed-999999"
    elif kind == "response_not_an_object":
        record["response"] = "200 OK"
    elif kind == "status_not_a_number":
        record["response"]["status_code"] = "200"
    elif kind == "body_not_an_answer":
        record["response"]["body"] = {"object": "list", "data": "none"}
    elif kind == "row_missing":
        body["data"].pop()
    elif kind == "index_out_of_range":
        body["data"][0]["index"] = len(body["data"])
    elif kind == "width_changed":
        _set_rows(record, [row[:-1] for row in _rows_of(body)])
    elif kind == "zero_row":
        rows = _rows_of(body)
        whole = int(rng.integers(len(rows)))
        rows[whole] = np.zeros_like(rows[whole])
        _set_rows(record, rows)
        # the input of that row only: the others of its line are good
        whole = (whole, [item["index"] for item in body["data"]])
    return json.dumps(record), whole


DAMAGE_KINDS = [
    "cut",
    "cut_before_custom_id",
    "not_an_object",
    "no_custom_id",
    "unknown_custom_id",
    "response_not_an_object",
    "status_not_a_number",
    "body_not_an_answer",
    "row_missing",
    "index_out_of_range",
    "width_changed",
    "zero_row",
]


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_every_kind_of_damaged_output_line_fails_only_its_inputs(server, cache, monkeypatch, kind):
    """Damage lines of the first batch as they are read: exactly their inputs go again."""
    from skembed.backends._openai_batch import _BatchJob

    server.configure_batches(completion_seconds=0.05)
    rng = np.random.default_rng(DAMAGE_KINDS.index(kind))
    texts = _texts(f"damaged {kind}", 4 * int(rng.integers(3, 9)))
    backend = _small_backend(server, 4)
    real_take = _BatchJob._take
    first_file, resent = [], []

    def take(job, raw, entry, answered):
        first_file[:] = first_file or [entry["file"]]
        if entry["file"] == first_file[0] and (not resent or rng.random() < 0.3):
            record = json.loads(raw)
            line = [job.text[d] for d in entry["lines"][record["custom_id"]]]
            raw, only = _damage(kind, record, raw, rng)
            if only is None:
                resent.extend(line)
            else:
                row, order = only
                resent.append(line[order[row]])
        return real_take(job, raw, entry, answered)

    monkeypatch.setattr(_BatchJob, "_take", take)
    vectors, _ = embed_texts(texts, backend, cache)
    np.testing.assert_allclose(vectors, _expected(texts), atol=1e-6)
    counts = server.stats()["text_counts"]
    assert {t: counts[t] for t in texts} == {t: 1 + (t in resent) for t in texts}
    assert server.stats()["batches_created"] == 2
    assert not list(_ledger_dir(cache).glob("*.json"))


def test_output_file_gone_sends_its_lines_again(server, cache, monkeypatch):
    # A file that is gone (expired, deleted by hand) is not an error on every re-run.
    from skembed.backends._openai_batch import _BatchJob

    server.configure_batches(completion_seconds=0.05)
    texts = _texts("file gone", 12)
    backend = _small_backend(server, 4)
    real_read = _BatchJob._read
    gone = []

    def read(job, file_id, entry, answered):
        if not gone:  # the first output file disappears before it is read
            gone.append(file_id)
            backend.client().files.delete(file_id)
        return real_read(job, file_id, entry, answered)

    monkeypatch.setattr(_BatchJob, "_read", read)
    vectors, _ = embed_texts(texts, backend, cache)
    np.testing.assert_allclose(vectors, _expected(texts), atol=1e-6)
    assert server.stats()["batches_created"] == 2
    assert not list(_ledger_dir(cache).glob("*.json"))
