"""The persistent cache end to end: each distinct text paid for once, never a wrong vector."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skembed import EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import cache_key
from tests.cache.helpers import ROOT as REPO
from tests.fake_openai import expected_vector


def labelled_texts(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    words = [["refund", "broken", "late", "awful"], ["great", "perfect", "love", "superb"]]
    texts = [f"{' '.join(rng.choice(words[c], 2))} order {i}" for i, c in enumerate(y)]
    return texts, y


def test_grid_search_pays_each_text_once_and_a_rerun_sends_nothing(fake_server, tmp_path):
    fake_server.configure(vector_mode="bag_of_words")
    texts, y = labelled_texts(300)
    cache = str(tmp_path / "cache")

    def search():
        embedder = OpenAIEmbeddingTransformer(
            base_url=fake_server.base_url, dimensions=64, cache=cache
        )
        model = Pipeline([("embed", embedder), ("clf", LogisticRegression())])
        return GridSearchCV(model, {"clf__C": [0.1, 1, 10]}, cv=5, n_jobs=2).fit(texts, y)

    assert search().best_score_ > 0.9
    stats = fake_server.stats()
    assert stats["inputs"] == len(set(texts))  # 15 fits + refit, one payment per text
    assert stats["times_embedded_max"] == 1

    fake_server.reset_stats()
    search()
    assert fake_server.stats(texts=False)["requests"] == 0


@pytest.mark.parametrize(
    "changed",
    [
        {"dimensions": 256},
        {"model": "text-embedding-3-large"},
        {"base_url": "localhost"},
        {"long_input": "chunk"},  # long texts' vectors differ from their truncation's
    ],
    ids=["dimensions", "model", "base_url", "long_input"],
)
def test_another_model_dimensions_or_endpoint_never_reads_a_cached_vector(
    fake_server, tmp_path, changed
):
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["same text", "another text"]
    first = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache)
    first.transform(texts)
    params = {"base_url": fake_server.base_url, **changed}
    if params["base_url"] == "localhost":  # the same server under another name
        params["base_url"] = fake_server.base_url.replace("127.0.0.1", "localhost")
    fake_server.reset_stats()
    X = OpenAIEmbeddingTransformer(cache=cache, **params).transform(texts)
    assert fake_server.stats()["inputs"] == 2  # fetched again, not read from the cache
    model = params.get("model", "text-embedding-3-small")
    want = np.stack([expected_vector(model, t, params.get("dimensions")) for t in texts])
    np.testing.assert_allclose(X, want, atol=1e-6)


def test_dimensions_served_from_cached_full_vectors(fake_server, tmp_path):
    cache = str(tmp_path / "cache")
    texts = [f"text {i}" for i in range(50)]
    for dimensions in (None, 1024, 256, 64):
        embedder = OpenAIEmbeddingTransformer(
            base_url=fake_server.base_url,
            dimensions=dimensions,
            dimensions_from_full=True,
            cache=cache,
        )
        X = embedder.transform(texts)
        want = np.stack([expected_vector("text-embedding-3-small", t, dimensions) for t in texts])
        np.testing.assert_allclose(X, want, atol=1e-6)  # what the API itself returns
    assert fake_server.stats()["times_embedded_max"] == 1


def test_dimensions_from_full_is_refused_where_it_is_not_exact(fake_server):
    embedder = OpenAIEmbeddingTransformer(
        model="my-model", dimensions=32, dimensions_from_full=True, cache=None
    )
    with pytest.raises(ValueError, match="truncations of the full one"):
        embedder.fit(["x"])


def test_cache_files_hold_neither_texts_nor_the_key(fake_server, tmp_path):
    secret_texts = ["patient 4411 diagnosis confidential", "salary of Jane Roe: 91,000"]
    OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, cache=str(tmp_path / "cache")
    ).transform(secret_texts)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for needle in [*secret_texts, fake_server.api_key, "Jane Roe", "4411"]:
            assert needle.encode() not in data, (path, needle)


def test_each_call_reports_hits_and_misses(fake_server, tmp_path, caplog):
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, cache=str(tmp_path / "cache")
    )
    embedder.transform(["a", "b"])
    with caplog.at_level(logging.INFO, logger="skembed"):
        embedder.transform(["a", "b", "c", "a"])
    assert "embedded 4 rows (3 distinct): 2 from cache, 1 sent" in caplog.text


CHILD = textwrap.dedent(
    """
    import sys
    from skembed import OpenAIEmbeddingTransformer
    base_url, cache, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    texts = [f"shared text {i}" for i in range(start, stop)]
    OpenAIEmbeddingTransformer(base_url=base_url, cache=cache, batch_size=int(sys.argv[5]),
                               max_concurrency=int(sys.argv[6])).transform(texts)
    print("done")
    """
)


def run_child(server, cache, start, stop, batch_size=64, concurrency=4):
    env = {**os.environ, "OPENAI_API_KEY": server.api_key, "PYTHONPATH": str(REPO)}
    args = [server.base_url, cache, start, stop, batch_size, concurrency]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_sharing_one_cache_never_pay_twice(fake_server, tmp_path):
    fake_server.configure(latency=0.05)
    cache = str(tmp_path / "cache")
    children = [run_child(fake_server, cache, 0, 600), run_child(fake_server, cache, 300, 900)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    stats = fake_server.stats()
    assert stats["inputs"] == 900
    assert stats["times_embedded_max"] == 1
    store = EmbeddingCache(cache)
    namespace = OpenAIEmbeddingTransformer(base_url=fake_server.base_url)._backend()
    keys = [cache_key(namespace.cache_namespace, f"shared text {i}") for i in range(900)]
    found, vectors = store.get(keys, 1536)
    assert found.all()
    want = np.stack(
        [expected_vector("text-embedding-3-small", f"shared text {i}") for i in range(900)]
    )
    np.testing.assert_allclose(vectors, want, atol=1e-6)


def test_kill_9_mid_job_then_rerun_resends_nothing_received(fake_server, tmp_path):
    fake_server.configure(latency=0.1)
    cache = str(tmp_path / "cache")
    child = run_child(fake_server, cache, 0, 1000, batch_size=20, concurrency=2)
    deadline = time.monotonic() + 60
    while fake_server.stats(texts=False)["inputs"] < 300:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()

    # What the killed process received is in the cache, readable...
    namespace = OpenAIEmbeddingTransformer(base_url=fake_server.base_url)._backend()
    texts = [f"shared text {i}" for i in range(1000)]
    keys = [cache_key(namespace.cache_namespace, t) for t in texts]
    received, _ = EmbeddingCache(cache).get(keys, 1536)
    assert 300 - 2 * 20 <= received.sum() < 1000

    # ...and the re-run sends only the rest.
    fake_server.reset_stats()
    X = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=cache).transform(texts)
    resent = set(fake_server.stats()["text_counts"])
    assert resent == {t for t, got in zip(texts, received, strict=True) if not got}
    want = np.stack([expected_vector("text-embedding-3-small", t) for t in texts])
    np.testing.assert_allclose(X, want, atol=1e-6)


class _MeetingBackend:
    """A backend whose ``embed`` returns only once two calls are inside it at once."""

    cache_namespace = "meeting"
    model_name = "_MeetingBackend"
    n_dimensions = 4
    usd_per_million_tokens = 0.0

    def __init__(self, pays_per_text):
        self.pays_per_text = pays_per_text
        self.resumable = False
        self.meeting = threading.Barrier(2, timeout=2)

    def check_inputs(self, texts):
        pass

    def count_billed_tokens(self, texts):
        return np.zeros(len(texts), dtype=np.int64)

    def embed(self, texts, on_result=None, meter=None):
        self.meeting.wait()
        vectors = np.full((len(texts), 4), 0.5, dtype=np.float32)
        if on_result is not None:
            on_result(np.arange(len(texts)), vectors)
        return vectors


@pytest.mark.parametrize("pays_per_text", [True, False])
def test_workers_with_different_texts_fetch_in_parallel_through_one_cache(tmp_path, pays_per_text):
    # Two workers embedding different texts through one cache never wait for each
    # other: a paid backend claims its texts (tests/test_claims.py: shared texts are
    # still paid once), a free one (the local model) claims nothing.
    from skembed._embed import embed_texts

    backend = _MeetingBackend(pays_per_text)
    cache = EmbeddingCache(tmp_path / "cache")
    errors = []

    def worker(texts):
        try:
            embed_texts(texts, backend, cache)
        except threading.BrokenBarrierError as error:
            errors.append(error)

    threads = [
        threading.Thread(target=worker, args=([f"{name} {i}" for i in range(3)],))
        for name in ("left", "right")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Serialised calls would never meet: the first one's barrier would time out.
    assert errors == []
    keys = [cache_key("meeting", f"{name} {i}") for name in ("left", "right") for i in range(3)]
    assert cache.get(keys, 4)[0].all()


def test_a_model_of_unknown_width_pays_for_its_probe_once(fake_server, tmp_path):
    # Without ``dimensions`` the width of an unregistered model is learnt from one text;
    # a later call served by the cache must not pay for that probe again.
    fake_server.configure(extra_models={"house-model": 24})
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, model="house-model", cache=tmp_path / "cache"
    )
    texts = [f"text {i}" for i in range(10)]
    first = embedder.transform(texts)
    assert first.shape == (10, 24)
    fake_server.reset_stats()
    np.testing.assert_array_equal(embedder.transform(texts), first)
    assert fake_server.stats(texts=False)["requests"] == 0
