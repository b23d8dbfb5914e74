"""LocalEmbeddingTransformer: the estimator contract on top of the local backend."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skembed import LocalEmbeddingTransformer
from skembed.backends import InputTooLongError
from tests._backends import local_backend

SENTENCES = ["A cat sits on the mat.", "The stock market fell today.", "A kitten on a rug."]


@pytest.fixture(scope="module")
def reference():
    return local_backend(long_input="truncate").embed(SENTENCES)


def test_transform_matches_the_backend(reference):
    X = LocalEmbeddingTransformer(cache=None).fit_transform(pd.Series(SENTENCES))
    assert X.dtype == np.float32
    np.testing.assert_allclose(X, reference, atol=1e-6)


def test_cache_serves_the_second_call_and_keys_on_the_model(tmp_path, reference):
    from skembed._cache import EmbeddingCache, cache_key

    path = tmp_path / "local.sqlite"
    embedder = LocalEmbeddingTransformer(cache=str(path))
    np.testing.assert_allclose(embedder.transform(SENTENCES), reference, atol=1e-6)
    store = EmbeddingCache(path)
    namespace = embedder._backend().cache_namespace
    assert "all-MiniLM-L6-v2" in namespace  # the model's identity is in every key
    found, cached = store.get([cache_key(namespace, t) for t in SENTENCES], 384)
    assert found.all()
    np.testing.assert_allclose(cached, reference, atol=1e-6)
    # Another max_length is another vector space: nothing is shared with it.
    other = LocalEmbeddingTransformer(cache=str(path), max_length=128)._backend()
    assert other.cache_namespace != namespace


def test_same_input_policy_as_the_openai_transformer():
    with pytest.raises(ValueError, match="string object received"):
        LocalEmbeddingTransformer(cache=None).transform("one text")
    with pytest.raises(ValueError, match=r"missing value \(None/NaN\) at row 1"):
        LocalEmbeddingTransformer(cache=None).transform(["ok", None])
    X = LocalEmbeddingTransformer(cache=None, on_invalid_text="zero").transform(["ok", " "])
    np.testing.assert_array_equal(X[1], 0)


def test_long_input_error_names_the_row():
    texts = ["short", "word " * 400]
    with pytest.raises(InputTooLongError) as info:
        LocalEmbeddingTransformer(cache=None, long_input="error").transform(texts)
    assert info.value.rows == (1,)
    assert "row 1" in str(info.value)


def test_pickle_and_clone_without_the_onnx_session(reference):
    embedder = LocalEmbeddingTransformer(cache=None)
    embedder.transform(SENTENCES[:1])
    blob = pickle.dumps(embedder)
    assert b"onnxruntime" not in blob and b"InferenceSession" not in blob
    restored = pickle.loads(blob)
    np.testing.assert_allclose(restored.transform(SENTENCES), reference, atol=1e-6)
    np.testing.assert_allclose(clone(embedder).transform(SENTENCES), reference, atol=1e-6)


def test_feature_names_and_pandas_output():
    embedder = LocalEmbeddingTransformer(cache=None).set_output(transform="pandas")
    out = embedder.fit_transform(pd.DataFrame({"t": SENTENCES[:2]}))
    assert out.shape == (2, 384)
    assert out.columns[0] == "t_0"  # named after the column fit saw (#16)
    unnamed = embedder.fit_transform(SENTENCES[:2])
    assert unnamed.columns[0] == "localembeddingtransformer0"
