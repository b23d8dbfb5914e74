"""A model of unknown width pays for its first text once, not once per clone, fold and
process: the width learnt from its first answer is kept in the cache (both stores).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from skembed import EmbeddingAPIError, EmbeddingCache, OpenAIEmbeddingTransformer
from skembed._cache import CacheCorruptionError, cache_key
from skembed._cache._base import width_state
from tests.cache.helpers import ROOT, redis_store
from tests.fake_openai import expected_vector


@pytest.fixture(params=["directory", "redis"])
def store(request, tmp_path):
    """A fresh store of either kind."""
    if request.param == "directory":
        cache = EmbeddingCache(tmp_path / "cache")
        yield cache
        cache.close()
        return
    pytest.importorskip("redis")
    with redis_store(request.getfixturevalue("redis_server")) as cache:
        yield cache


def house_model(fake_server, name, width):
    fake_server.configure(extra_models={name: width})
    return OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, model=name, cache=None, batch_size=8, max_concurrency=2
    )


def expected(name, width, texts):
    return np.stack([expected_vector(name, t, native_dim=width) for t in texts])


@pytest.mark.parametrize("seed", range(4))
def test_clones_and_folds_of_a_model_of_unknown_width_pay_each_text_once(fake_server, store, seed):
    rng = np.random.default_rng(seed)
    name, width = f"house-model-{seed}", int(rng.integers(3, 80))
    pool = [f"ticket {seed}-{i}: the app crashes on start" for i in range(60)]
    template = house_model(fake_server, name, width).set_params(cache=store)
    seen = set()
    # A first job, then clones (a fresh backend: nothing learnt) on random folds, some
    # entirely cached, some with new texts: only never-seen texts are ever sent.
    for call in range(int(rng.integers(3, 7))):
        texts = list(rng.choice(pool, int(rng.integers(1, 30)), replace=True))
        model = template if call == 0 else clone(template)
        X = model.transform(texts)
        np.testing.assert_allclose(X, expected(name, width, texts), atol=1e-6)
        seen.update(texts)
        counts = fake_server.stats()["text_counts"]
        assert counts == dict.fromkeys(seen, 1)
    assert store.recorded_width(template._backend().cache_namespace) == width


def test_another_process_reads_the_width_from_the_cache_and_sends_nothing(fake_server, tmp_path):
    texts = [f"line {i}" for i in range(15)]
    cache = tmp_path / "cache"
    model = house_model(fake_server, "house-model", 24).set_params(cache=str(cache))
    model.transform(texts)
    fake_server.reset_stats()
    script = (
        "import sys\n"
        "from skembed import OpenAIEmbeddingTransformer\n"
        "model = OpenAIEmbeddingTransformer(base_url=sys.argv[1], model='house-model',"
        " cache=sys.argv[2])\n"
        "print(model.transform([line.rstrip() for line in sys.stdin]).shape)\n"
        "print(model.estimate_cost(['line 1', 'line 99']).n_cached)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, fake_server.base_url, str(cache)],
        input="\n".join(texts),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    # The estimate, too, reads the cache at the recorded width: 'line 1' is cached.
    assert child.stdout.splitlines() == ["(15, 24)", "1"]
    assert fake_server.stats(texts=False)["requests"] == 0


def test_a_model_that_changed_width_is_refused_by_name_and_nothing_is_mixed(fake_server, store):
    old_texts = [f"old {i}" for i in range(10)]
    house_model(fake_server, "house-model", 24).set_params(cache=store).transform(old_texts)
    # The server now answers 32-d vectors under the same name.
    model = house_model(fake_server, "house-model", 32).set_params(cache=store)
    fake_server.reset_stats()
    with pytest.raises(EmbeddingAPIError, match=r"returned 32-d vectors, but 24 .*recorded"):
        model.transform([*old_texts, "a new text"])
    assert fake_server.stats()["text_counts"] == {"a new text": 1}  # refused, not cached
    namespace = model._backend().cache_namespace
    assert not store.get([cache_key(namespace, "a new text")], 24)[0].any()
    assert set(store.stats()["entries_by_dim"]) == {24}
    # The cached vectors of the old width are still served, without a request.
    fake_server.reset_stats()
    X = clone(model).transform(old_texts)
    np.testing.assert_allclose(X, expected("house-model", 24, old_texts), atol=1e-6)
    assert fake_server.stats(texts=False)["requests"] == 0
    # Recording another width for the space is refused too; clear() forgets it.
    with pytest.raises(ValueError, match="records 24-d vectors .* now returns 32-d"):
        store.record_width(namespace, 32)
    store.clear()
    assert store.recorded_width(namespace) is None
    Y = clone(model).transform(old_texts)
    assert Y.shape == (10, 32)
    assert store.recorded_width(namespace) == 32


def test_a_damaged_width_record_is_an_error_naming_it(fake_server, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    model = house_model(fake_server, "house-model", 12).set_params(cache=cache)
    model.transform(["one", "two"])
    namespace = model._backend().cache_namespace
    blob = cache.state(width_state(namespace))
    assert json.loads(blob.read()) == {"n_dimensions": 12}
    blob.write(b"{not json")
    with pytest.raises(CacheCorruptionError, match="width record .* is damaged") as info:
        clone(model).transform(["one"])
    assert info.value.path == blob.location
    blob.delete()  # the advice: the next call pays one text to learn it again
    fake_server.reset_stats()
    clone(model).transform(["one", "two"])
    assert sum(fake_server.stats()["text_counts"].values()) == 1
    cache.close()
