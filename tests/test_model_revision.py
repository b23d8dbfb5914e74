"""A model re-pulled behind its name never gets the old weights' vectors from the cache.

The fake server's ``model_revisions`` knob changes the weights behind a name (every text
a new vector, as after ``ollama pull``). Two remedies:

- ``model_revision``: the user's name for the weights, part of the cache identity;
- ``fingerprint=True``: each process embeds one probe text once per vector space, and
  the identity names the revision that vector is matched to among those the cache met.

The property: whatever the sequence of re-pulls and process starts, every vector a
``transform`` returns is its text's vector under the weights being served, and each
text is paid once per revision it is asked under.
"""

import json

import numpy as np
import pytest
from sklearn.base import clone

from skembed import CacheCorruptionError, EmbeddingCache, OpenAIEmbeddingTransformer
from skembed.backends import _fingerprint
from skembed.backends._fingerprint import PROBE_TEXT, SAME_REVISION_COSINE, resolve_revision
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"
DIM = 16


def served(revision):
    """The fake server's model key for ``revision`` (see ``served_model_key``)."""
    return MODEL if revision is None else f"{MODEL}@{revision}"


@pytest.fixture(autouse=True)
def new_process():
    """Each test starts as a new process would: no revision resolved yet."""
    _fingerprint._resolved.clear()
    yield
    _fingerprint._resolved.clear()


def make(fake_server, cache, **params):
    return OpenAIEmbeddingTransformer(
        model=MODEL, dimensions=DIM, base_url=fake_server.base_url, cache=cache, **params
    )


def expected(texts, revision):
    return np.array([expected_vector(served(revision), t, DIM, native_dim=1536) for t in texts])


def per_text(fake_server):
    return fake_server.stats()["text_counts"]


# -- model_revision ---------------------------------------------------------------------


def test_model_revision_keeps_the_default_identity_when_unset_and_changes_it_when_set():
    base = OpenAIEmbeddingTransformer(dimensions=DIM, base_url="http://127.0.0.1:9/v1")
    default = base._make_backend().cache_namespace
    # Unset: the identity of every cache written before the parameter existed.
    assert default == f"openai|http://127.0.0.1:9/v1|{MODEL}|{DIM}"
    names = {
        clone(base).set_params(model_revision=rev)._make_backend().cache_namespace
        for rev in ("a", "b", "2024-06", "sha256:0f1e")
    }
    assert len(names) == 4 and default not in names


def test_a_new_model_revision_pays_again_and_never_serves_the_old_vectors(fake_server, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["a cat", "a dog", "stocks fell"]
    old = make(fake_server, cache, model_revision="v1").transform(texts)
    np.testing.assert_allclose(old, expected(texts, None), atol=1e-6)

    fake_server.configure(model_revisions={MODEL: "v2"})
    fake_server.reset_stats()
    new = make(fake_server, cache, model_revision="v2").transform(texts)
    np.testing.assert_allclose(new, expected(texts, "v2"), atol=1e-6)
    assert per_text(fake_server) == {t: 1 for t in texts}
    # The old revision's vectors are still there for whoever names it.
    fake_server.reset_stats()
    again = make(fake_server, cache, model_revision="v1").transform(texts)
    np.testing.assert_array_equal(again, old)
    assert per_text(fake_server) == {}


# -- fingerprint: the matching --------------------------------------------------------


def _unit(vector):
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize("seed", range(4))
def test_run_to_run_noise_keeps_the_revision_and_other_weights_start_a_new_one(tmp_path, seed):
    rng = np.random.default_rng(seed)
    width = int(rng.integers(8, 1536))
    cache = EmbeddingCache(tmp_path / "cache")
    weights = [_unit(rng.standard_normal(width)) for _ in range(3)]
    seen = {}
    for step in range(12):
        which = int(rng.integers(len(weights)))
        # Float32-level noise of a GPU or another thread count: the same weights.
        noisy = _unit(weights[which] + rng.normal(0, 1e-7, width))
        _fingerprint._resolved.clear()  # a new process
        revision = resolve_revision("space", lambda v=noisy: v, cache)
        assert seen.setdefault(which, revision) == revision, step
    # Distinct weights, distinct revisions (random unit vectors are far apart).
    assert len(set(seen.values())) == len(seen)
    record = json.loads(cache.state(_state_name("space")).read())
    assert len(record["revisions"]) == len(seen)


def _state_name(namespace):
    from skembed._cache._base import lock_name

    return f"fingerprints/{lock_name(namespace)}.json"


def test_the_threshold_separates_a_close_variant_of_the_same_weights(tmp_path):
    # A requantised model is close but not the same: its vectors must not be mixed in.
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal(384))
    variant = _unit(base + 0.02 * _unit(rng.standard_normal(384)))
    assert base @ variant < SAME_REVISION_COSINE
    cache = EmbeddingCache(tmp_path / "cache")
    first = resolve_revision("space", lambda: base, cache)
    _fingerprint._resolved.clear()
    assert resolve_revision("space", lambda: variant, cache) != first


def test_a_process_probes_once_per_vector_space_and_cache(tmp_path):
    calls = []

    def probe():
        calls.append(1)
        return np.eye(4)[0]

    one, two = EmbeddingCache(tmp_path / "one"), EmbeddingCache(tmp_path / "two")
    for _ in range(3):
        resolve_revision("space", probe, one)
    assert len(calls) == 1
    resolve_revision("space", probe, two)
    resolve_revision("other space", probe, one)
    assert len(calls) == 3


def test_a_damaged_fingerprint_record_is_named(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    blob = cache.state(_state_name("space"))
    blob.write(b"{not json")
    with pytest.raises(CacheCorruptionError, match="fingerprint record") as info:
        resolve_revision("space", lambda: np.eye(4)[0], cache)
    assert info.value.path == blob.location


def test_the_namespace_is_refused_before_the_probe():
    backend = OpenAIEmbeddingTransformer(fingerprint=True, dimensions=DIM)._make_backend()
    with pytest.raises(RuntimeError, match="probe"):
        backend.cache_namespace  # noqa: B018


# -- fingerprint: end to end, as a property ----------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_fingerprint_never_serves_stale_vectors_and_pays_once_per_revision(
    fake_server, tmp_path, seed
):
    rng = np.random.default_rng(seed)
    cache_path = tmp_path / "cache"
    pool = [f"text {i} of seed {seed}" for i in range(40)]
    revision = None
    paid = {}  # (text, revision) -> times the server embedded it
    asked = set()
    for _ in range(int(rng.integers(4, 9))):
        if rng.random() < 0.4:  # the server re-pulls the model (maybe an old one back)
            revision = [None, "v2", "v3"][int(rng.integers(3))]
            fake_server.configure(model_revisions={} if revision is None else {MODEL: revision})
        _fingerprint._resolved.clear()  # each transform in a new process
        fake_server.reset_stats()
        texts = [pool[i] for i in rng.choice(len(pool), int(rng.integers(1, 15)))]
        embedder = make(fake_server, EmbeddingCache(cache_path), fingerprint=True)
        vectors = embedder.transform(texts)
        np.testing.assert_allclose(vectors, expected(texts, revision), atol=1e-6)
        counts = per_text(fake_server)
        assert counts.pop(PROBE_TEXT, 0) == 1  # one probe per process
        for text, n in counts.items():
            paid[(text, revision)] = paid.get((text, revision), 0) + n
        asked.update((t, revision) for t in texts)
    assert set(paid) <= asked
    assert all(n == 1 for n in paid.values()), paid


def test_fingerprint_with_estimate_cost_counts_what_the_new_weights_lack(fake_server, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["a cat", "a dog"]
    make(fake_server, cache, fingerprint=True).transform(texts)
    assert make(fake_server, cache, fingerprint=True).estimate_cost(texts).n_cached == 2
    fake_server.configure(model_revisions={MODEL: "v2"})
    _fingerprint._resolved.clear()
    assert make(fake_server, cache, fingerprint=True).estimate_cost(texts).n_cached == 0


def test_fingerprint_with_the_batch_api_probes_through_a_plain_request(fake_server, tmp_path):
    fake_server.configure_batches(completion_seconds=0.05)
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["a cat", "a dog"]
    embedder = make(fake_server, cache, fingerprint=True, batch_api=True, batch_poll_interval=0.02)
    np.testing.assert_allclose(embedder.transform(texts), expected(texts, None), atol=1e-6)
    stats = fake_server.stats()
    assert stats["text_counts"] == {PROBE_TEXT: 1, "a cat": 1, "a dog": 1}
