"""skembed on a real Dask cluster: two worker processes sharing one persistent cache."""

import os

import cloudpickle
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer
from skembed._cache import resolve_cache
from tests.fake_openai import expected_vector

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

# Starting two worker processes that import scikit-learn takes seconds.
pytestmark = pytest.mark.slow

ENV_NAMES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SKEMBED_CACHE_DIR")


@pytest.fixture(scope="module")
def client(fake_openai_server, tmp_path_factory):
    """A Client of a LocalCluster of two single-threaded worker processes.

    A worker process copies the environment when it starts, so the key, the endpoint
    and the cache directory it will need are set before the cluster starts.
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", fake_openai_server.api_key)
        env.setenv("OPENAI_BASE_URL", fake_openai_server.base_url)
        env.setenv("SKEMBED_CACHE_DIR", str(tmp_path_factory.mktemp("dask_default_cache")))
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            distributed.Client(cluster) as dask_client,
        ):
            yield dask_client


def labelled_texts(n, tag, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    words = [["refund", "broken", "late", "awful"], ["great", "perfect", "love", "superb"]]
    texts = [f"{tag}: {' '.join(rng.choice(words[c], 2))} order {i}" for i, c in enumerate(y)]
    return texts, y


def cache_lookups(path):
    """Texts this process looked up in the cache at ``path`` (hits + misses)."""
    stats = resolve_cache(path).stats()
    return stats["hits"] + stats["misses"]


def read_env():
    return {name: os.environ.get(name) for name in ENV_NAMES}


def test_workers_are_other_processes_with_the_environment_they_need(client):
    pids = client.run(os.getpid)
    assert len(pids) == 2
    assert os.getpid() not in pids.values()
    for worker_env in client.run(read_env).values():
        assert worker_env == read_env()


def test_grid_search_on_dask_pays_each_text_once_and_matches_a_local_run(
    client, fake_server, tmp_path
):
    fake_server.configure(vector_mode="bag_of_words")
    texts, y = labelled_texts(240, "grid")
    cache = str(tmp_path / "shared-cache")

    def search(cache):
        embedder = OpenAIEmbeddingTransformer(
            base_url=fake_server.base_url, dimensions=64, cache=cache, max_concurrency=2
        )
        model = Pipeline([("embed", embedder), ("clf", LogisticRegression())])
        return GridSearchCV(model, {"clf__C": [0.1, 1, 10]}, cv=3)

    with joblib.parallel_config(backend="dask", n_jobs=-1):
        on_dask = search(cache).fit(texts, y)

    stats = fake_server.stats()
    assert set(stats["text_counts"]) == set(texts)
    assert stats["times_embedded_max"] == 1  # 9 fits, 9 scores and the refit: one payment
    # Both workers did the embedding; the refit (in this process) found it all cached.
    assert all(n > 0 for n in client.run(cache_lookups, cache).values())
    assert resolve_cache(cache).stats()["misses"] == 0

    local = search(str(tmp_path / "local-cache")).fit(texts, y)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == local.best_params_
    assert on_dask.best_score_ > 0.9


def test_cross_val_score_on_dask_uses_the_environment_of_the_workers(client, fake_server):
    # No base_url, no cache path: both come from OPENAI_BASE_URL and SKEMBED_CACHE_DIR.
    texts, y = labelled_texts(200, "cv")
    model = Pipeline([("embed", OpenAIEmbeddingTransformer()), ("clf", LogisticRegression())])
    folds = KFold(4, shuffle=True, random_state=0)
    with joblib.parallel_config(backend="dask", n_jobs=-1):
        on_dask = cross_val_score(model, texts, y, cv=folds)

    stats = fake_server.stats()
    assert set(stats["text_counts"]) == set(texts)
    assert stats["times_embedded_max"] == 1
    default = os.environ["SKEMBED_CACHE_DIR"]
    assert sum(client.run(cache_lookups, default).values()) > 0
    assert cache_lookups(default) == 0  # nothing ran in this process

    fake_server.reset_stats()
    local = cross_val_score(model, texts, y, cv=folds)
    assert fake_server.stats(texts=False)["requests"] == 0  # the workers' cache, read here
    np.testing.assert_allclose(on_dask, local)


def test_an_embedder_with_a_live_client_travels_to_workers_without_it(client, fake_server):
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=None)
    texts = ["first text", "second text"]
    here = embedder.transform(texts)  # builds the SDK client, which holds locks
    assert "_backend_cache" in embedder.__dict__

    payload = cloudpickle.dumps(embedder)
    assert fake_server.api_key.encode() not in payload
    assert "_backend_cache" not in cloudpickle.loads(payload).__dict__

    there = client.submit(lambda e, t: (os.getpid(), e.transform(t)), embedder, texts).result()
    assert there[0] != os.getpid()
    np.testing.assert_array_equal(there[1], here)


def text_frame(texts, npartitions):
    frame = pd.DataFrame(
        {"text": texts, "n": np.arange(len(texts))}, index=100 + np.arange(len(texts))
    )
    return dd.from_pandas(frame, npartitions=npartitions)


def test_map_partitions_recipe_with_the_openai_embedder_on_workers(client, fake_server, tmp_path):
    texts = [f"row {i % 150} of a big column" for i in range(300)]
    ddf = text_frame(texts, npartitions=6)
    embedder = OpenAIEmbeddingTransformer(dimensions=32, cache=str(tmp_path / "cache"))
    names = embedder.get_feature_names_out()
    meta = pd.DataFrame(np.empty((0, len(names)), dtype=np.float32), columns=names)

    # The recipe of docs/dask.rst, written out by hand.
    vectors = ddf["text"].map_partitions(
        lambda part: pd.DataFrame(embedder.transform(part), index=part.index, columns=names),
        meta=meta,
    )
    result = client.compute(vectors).result()

    want = np.stack([expected_vector("text-embedding-3-small", t, 32) for t in texts])
    np.testing.assert_allclose(result.to_numpy(), want, atol=1e-6)
    assert result.index.tolist() == ddf.index.compute().tolist()
    assert fake_server.stats()["times_embedded_max"] == 1  # partitions share the cache


def local_models_loaded():
    """Thread counts of the local model sessions this process has built."""
    from skembed.backends import _local

    return sorted(key for key in _local._loaded if key != "tokenizer")


def test_embed_partitions_with_the_local_model_matches_in_process(client):
    from skembed._dask import embed_partitions

    topics = ["cats", "markets", "rain"]
    texts = [f"Sentence number {i} about {topics[i % 3]}." for i in range(120)]
    ddf = text_frame(texts, npartitions=4)
    kept = ddf[(ddf["n"] < 30) | (ddf["n"] >= 60)]
    assert kept.map_partitions(len).compute().tolist() == [30, 0, 30, 30]

    embedder = LocalEmbeddingTransformer(n_threads=1, cache=None)
    vectors = embed_partitions(embedder, kept["text"])
    assert vectors.npartitions == 4
    assert list(vectors.columns) == list(embedder.get_feature_names_out())
    result = client.compute(vectors).result()

    assert all(loaded == [1] for loaded in client.run(local_models_loaded).values())
    in_process = LocalEmbeddingTransformer(cache=None).transform(kept["text"].compute())
    np.testing.assert_allclose(result.to_numpy(), in_process, atol=1e-5)
    assert (result.dtypes == np.float32).all()
    assert result.index.tolist() == kept.index.compute().tolist()
    assert vectors.to_dask_array(lengths=True).shape == in_process.shape


def test_embed_partitions_refuses_what_it_cannot_embed():
    from skembed._dask import embed_partitions

    embedder = LocalEmbeddingTransformer(cache=None)
    with pytest.raises(TypeError, match="dask Series"):
        embed_partitions(embedder, pd.Series(["a"]))
    two = dd.from_pandas(pd.DataFrame({"a": ["x"], "b": ["y"]}), npartitions=1)
    with pytest.raises(ValueError, match="one text column"):
        embed_partitions(embedder, two)
    unknown = OpenAIEmbeddingTransformer(model="my-model")
    with pytest.raises(ValueError, match="dimensions"):
        embed_partitions(unknown, two["a"])
