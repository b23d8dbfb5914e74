"""OpenAIEmbeddingTransformer end to end, through the real SDK, against the fake server."""

import pickle
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skembed import OpenAIEmbeddingTransformer
from skembed._tokens import chunk_text, count_tokens
from skembed.backends import EmbeddingAPIError, InputTooLongError
from tests.fake_openai import expected_vector

MODEL = "text-embedding-3-small"


def expected(texts, dimensions=None, model=MODEL, **kwargs):
    return np.stack([expected_vector(model, t, dimensions, **kwargs) for t in texts])


# -- output -----------------------------------------------------------------------------


def test_rows_match_the_server_vectors_in_input_order(fake_server, openai_embedder):
    # Small requests, many in flight, answers shuffled by the server: the rows must
    # still come back in the input order, mapped by each item's index.
    texts = [f"document {i} about topic {i % 7}" for i in range(500)]
    X = openai_embedder(batch_size=7, max_concurrency=8).fit_transform(texts)
    assert X.dtype == np.float32
    assert X.shape == (500, 1536)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert fake_server.stats(texts=False)["peak_concurrency"] > 1


def test_each_distinct_text_is_sent_once_within_request_limits(fake_server, openai_embedder):
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(300)]
    distinct = [" ".join(rng.choice(vocabulary, rng.integers(1, 60))) for _ in range(1500)]
    texts = distinct + distinct[:700]  # duplicates within one call
    X = openai_embedder(batch_size=100).transform(texts)
    np.testing.assert_array_equal(X[1500:], X[:700])
    stats = fake_server.stats()
    assert stats["inputs"] == len(set(distinct))
    assert stats["times_embedded_max"] == 1
    assert stats["max_inputs_per_request_sent"] <= 100
    assert stats["requests_by_status"] == {"200": stats["requests"]}


def test_requests_stay_under_the_token_budget(fake_server, openai_embedder):
    long_text = "lorem ipsum dolor sit amet " * 1000  # ~5k tokens
    texts = [f"{i} {long_text}" for i in range(150)]  # ~750k tokens in all
    openai_embedder().transform(texts)
    stats = fake_server.stats(texts=False)
    assert stats["tokens"] == count_tokens(texts).sum()
    assert stats["max_tokens_per_request_sent"] <= 270_000
    assert stats["requests"] >= 3


def test_dimensions_are_sent_and_float_format_matches_base64(openai_embedder):
    texts = ["a short text", "another one"]
    X64 = openai_embedder(dimensions=256).transform(texts)
    Xf = openai_embedder(dimensions=256, encoding_format="float").transform(texts)
    np.testing.assert_allclose(X64, expected(texts, 256), atol=1e-6)
    np.testing.assert_allclose(Xf, X64, atol=1e-6)


@pytest.mark.parametrize(
    "container",
    [
        list,
        tuple,
        np.array,
        pd.Series,
        lambda t: pd.DataFrame({"text": t}),
        lambda t: np.array(t, dtype=object).reshape(-1, 1),
        lambda t: (x for x in t),
    ],
    ids=["list", "tuple", "ndarray", "series", "dataframe", "2d-column", "generator"],
)
def test_accepts_every_one_column_container(openai_embedder, container):
    texts = ["alpha", "beta", "gamma"]
    X = openai_embedder().transform(container(texts))
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)


def test_set_output_pandas_and_feature_names(openai_embedder):
    frame = pd.DataFrame({"text": ["x", "y"]}, index=[10, 20])
    embedder = openai_embedder(dimensions=8).set_output(transform="pandas")
    out = embedder.fit_transform(frame)
    assert list(out.columns) == [f"text_{i}" for i in range(8)]  # the column's name (#16)
    unnamed = embedder.fit_transform(frame["text"].tolist())
    assert list(unnamed.columns) == [f"openaiembeddingtransformer{i}" for i in range(8)]
    assert list(out.index) == [10, 20]


# -- input policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ("just one string", "string object received"),
        (["ok", None, "fine"], r"missing value \(None/NaN\) at row 1"),
        (["ok", float("nan")], "missing value .* at row 1"),
        (["ok", "", "   \n"], r"empty or whitespace-only text at rows \[1, 2\]"),
        (["ok", 3], "found int at row 1"),
        (["ok", b"bytes"], "found bytes at row 1"),
        (["ok", ["nested"]], "found list at row 1"),
        ([], "0 sample"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), "single text column"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), "1-D sequence of texts"),
        (["ok", "bad \ud800 surrogate"], "lone surrogate.* row 1"),
    ],
)
def test_bad_input_is_refused_before_any_request(fake_server, openai_embedder, X, message):
    embedder = openai_embedder()
    with pytest.raises(ValueError, match=message):
        embedder.fit_transform(X)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_zero_policy_gives_zero_rows_for_blank_texts(fake_server, openai_embedder):
    X = openai_embedder(on_invalid_text="zero").transform(["a", None, "", "b", float("nan")])
    np.testing.assert_array_equal(X[[1, 2, 4]], 0)
    np.testing.assert_allclose(X[[0, 3]], expected(["a", "b"]), atol=1e-6)
    assert fake_server.stats()["inputs"] == 2


def test_long_input_error_names_the_row_and_sends_nothing(fake_server, openai_embedder):
    texts = ["short", "word " * 9000]
    with pytest.raises(InputTooLongError, match="8192 tokens") as info:
        openai_embedder().transform(texts)
    assert info.value.rows == (1,)
    assert "row 1" in str(info.value)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_long_input_truncate_and_chunk(fake_server, openai_embedder):
    text = " ".join(f"token{i}" for i in range(6000))  # > 8192 tokens
    truncated = openai_embedder(long_input="truncate").transform([text])
    chunked = openai_embedder(long_input="chunk").transform([text])

    pieces = chunk_text(text, 8192)
    assert len(pieces) >= 2
    np.testing.assert_allclose(truncated[0], expected([pieces[0][0]])[0], atol=1e-6)
    weights = np.array([n for _, n in pieces], dtype=np.float32)
    mean = (expected([p for p, _ in pieces]) * weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(chunked[0], mean / np.linalg.norm(mean), atol=1e-5)
    # No input over the limit ever reached the server (it would have answered 400).
    stats = fake_server.stats(texts=False)
    assert stats["requests_by_status"] == {"200": stats["requests"]}


# -- API errors ------------------------------------------------------------------------


def test_a_row_the_server_rejects_is_named_and_the_rest_is_kept(
    fake_server, openai_embedder, tmp_path
):
    # A compatible server whose model takes at most 64 tokens per input: the client
    # cannot know, the server answers 400, and the client narrows it down to the row.
    fake_server.configure(extra_models={"small-ctx": {"native_dim": 16, "max_input_tokens": 64}})
    good = [f"text {i}" for i in range(40)]
    texts = [*good[:25], "too long " * 40, *good[25:], "too long " * 40]
    embedder = openai_embedder(model="small-ctx", dimensions=16, cache=str(tmp_path / "c.sqlite"))
    with pytest.raises(EmbeddingAPIError, match="HTTP 400") as info:
        embedder.transform(texts)
    assert info.value.rows == (25, 41)  # both copies of the rejected text, user's rows
    assert info.value.status_code == 400
    assert "maximum context length" in str(info.value)
    # Everything else was paid for and cached: fixing the row sends only that row.
    fake_server.reset_stats()
    fixed = [t if not t.startswith("too long") else "now short" for t in texts]
    embedder.transform(fixed)
    assert fake_server.stats()["text_counts"] == {"now short": 1}


def test_unknown_model_fails_fast_with_404(fake_server, openai_embedder):
    with pytest.raises(EmbeddingAPIError, match="not found.*404") as info:
        openai_embedder(model="no-such-model", dimensions=8).transform(["x"])
    assert info.value.status_code == 404
    assert fake_server.stats(texts=False)["requests"] == 1  # never retried


def test_dimensions_refused_for_ada_before_any_request(openai_embedder):
    embedder = openai_embedder(model="text-embedding-ada-002", dimensions=256)
    with pytest.raises(ValueError, match="does not support the 'dimensions'"):
        embedder.fit(["x"])


def test_wrong_key_gives_401_without_echoing_the_key(fake_server, openai_embedder, monkeypatch):
    canary = "sk-canary-0123456789abcdefghijkl"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    with pytest.raises(EmbeddingAPIError, match="refused the API key") as info:
        openai_embedder().transform(["x"])
    assert info.value.status_code == 401
    assert canary not in str(info.value)
    assert canary not in repr(info.value.__dict__)
    assert fake_server.stats(texts=False)["requests"] == 1


def test_missing_key_names_the_variable(fake_server, openai_embedder, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(EmbeddingAPIError, match="OPENAI_API_KEY is not set"):
        openai_embedder().transform(["x"])
    monkeypatch.setenv("MY_KEY", fake_server.api_key)
    X = openai_embedder(api_key_env="MY_KEY").transform(["x"])
    assert X.shape == (1, 1536)


# -- retries and rate limits --------------------------------------------------------------


def test_429_storm_is_waited_out_honouring_retry_after(fake_server, openai_embedder):
    fake_server.configure(faults=[{"kind": "429", "retry_after": 0.3}] * 6)
    texts = [f"t{i}" for i in range(200)]
    start = time.perf_counter()
    X = openai_embedder(max_concurrency=4).transform(texts)
    elapsed = time.perf_counter() - start
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    stats = fake_server.stats()
    assert stats["requests_by_status"]["429"] == 6
    assert stats["times_embedded_max"] == 1
    assert elapsed >= 0.3  # every sender paused for the server's retry-after


def test_server_errors_and_dropped_connections_are_retried(fake_server, openai_embedder):
    fake_server.configure(
        faults=[
            {"kind": "timeout", "seconds": 3},
            {"kind": "500"},
            {"kind": "drop"},
            {"kind": "503"},
        ]
    )
    texts = [f"t{i}" for i in range(300)]
    X = openai_embedder(max_concurrency=3, timeout=1.0).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    deadline = time.monotonic() + 5
    while "timeout" not in fake_server.stats(texts=False)["requests_by_status"]:
        assert time.monotonic() < deadline  # the server logs a timeout when it gives up
        time.sleep(0.1)
    stats = fake_server.stats()
    assert stats["times_embedded_max"] == 1
    for kind in ("500", "503", "drop", "timeout"):
        assert stats["requests_by_status"][kind] >= 1


def test_persistent_failure_ends_in_a_clear_error_after_bounded_retries(
    fake_server, openai_embedder
):
    fake_server.configure(p_500=1.0)
    start = time.perf_counter()
    with pytest.raises(EmbeddingAPIError, match="gave up after 2 retries.*server had an error"):
        openai_embedder(max_retries=2, max_concurrency=1).transform(["a", "b"])
    assert time.perf_counter() - start < 10
    assert fake_server.stats(texts=False)["requests"] == 3


def test_rate_limited_job_is_paced_not_hammered(fake_server, openai_embedder):
    rng = np.random.default_rng(1)
    texts = [" ".join(map(str, rng.integers(0, 10_000, 40))) for _ in range(600)]
    total = int(count_tokens(texts).sum())
    # A budget of ~1.5 s of tokens, enforced over 0.5 s windows.
    fake_server.configure(tpm=int(total / 1.5 * 60), burst_seconds=0.5)
    start = time.perf_counter()
    X = openai_embedder(batch_size=50, max_concurrency=8).transform(texts)
    elapsed = time.perf_counter() - start
    assert X.shape == (600, 1536)
    stats = fake_server.stats()
    assert stats["times_embedded_max"] == 1
    # Only the first wave, sent before the limits are known, can be refused; after
    # that the client paces itself from the x-ratelimit-* headers.
    assert stats["requests_by_status"].get("429", 0) <= 8
    assert elapsed < 4  # ideal: 1 s after the initial 0.5 s burst


def test_request_too_large_for_the_rate_limit_is_split(fake_server, openai_embedder):
    texts = [f"sentence number {i} with a few more words" for i in range(400)]
    total = int(count_tokens(texts).sum())
    # ~1.5 s of budget in all, but the bucket holds 0.2 s of it: about 1/8 of the job.
    fake_server.configure(tpm=total * 40, burst_seconds=0.2)
    X = openai_embedder(max_concurrency=1, batch_size=400).transform(texts)
    np.testing.assert_allclose(X, expected(texts), atol=1e-6)
    assert fake_server.stats()["times_embedded_max"] == 1


def test_azure_endpoint(fake_server, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", fake_server.api_key)
    embedder = OpenAIEmbeddingTransformer(
        model=MODEL, base_url=fake_server.url, api_version="2024-02-01", cache=None
    )
    np.testing.assert_allclose(embedder.transform(["azure"]), expected(["azure"]), atol=1e-6)


# -- sklearn contract ---------------------------------------------------------------------


def test_invalid_parameters_are_reported_by_name():
    with pytest.raises(ValueError, match="'batch_size' parameter"):
        OpenAIEmbeddingTransformer(batch_size=5000).fit(["x"])
    with pytest.raises(ValueError, match="'long_input' parameter"):
        OpenAIEmbeddingTransformer(long_input="drop").fit(["x"])


def test_pickle_and_clone_carry_no_client_and_no_key(fake_server, openai_embedder, monkeypatch):
    canary = fake_server.api_key
    embedder = openai_embedder()
    before = embedder.transform(["hello"])
    assert embedder.__dict__.get("_backend_cache") is not None  # a live client is held
    blob = pickle.dumps(embedder)
    assert canary.encode() not in blob
    assert canary not in repr(embedder)
    assert canary not in str(embedder.get_params())
    restored = pickle.loads(blob)
    assert "_backend_cache" not in restored.__dict__
    np.testing.assert_allclose(restored.transform(["hello"]), before)
    np.testing.assert_allclose(clone(embedder).transform(["hello"]), before)


def test_column_transformer_with_random_forest_in_parallel_grid_search(
    fake_server, openai_embedder
):
    # Texts carry the label (the server's bag-of-words vectors make shared words similar);
    # the numeric and categorical columns are noise. The search must find the signal.
    fake_server.configure(vector_mode="bag_of_words")
    rng = np.random.default_rng(0)
    n = 240
    y = rng.integers(0, 2, n)
    words = np.array([["refund", "broken", "late"], ["great", "perfect", "love"]])
    frame = pd.DataFrame(
        {
            "text": [
                f"{' '.join(rng.choice(words[label], 2))} item {i}" for i, label in enumerate(y)
            ],
            "price": rng.normal(50, 10, n),
            "shop": rng.choice(["north", "south", "east"], n),
        }
    )
    features = ColumnTransformer(
        [
            ("text", openai_embedder(dimensions=64), "text"),
            ("numeric", StandardScaler(), ["price"]),
            ("category", OneHotEncoder(handle_unknown="ignore"), ["shop"]),
        ]
    )
    model = Pipeline([("features", features), ("forest", RandomForestClassifier(random_state=0))])
    search = GridSearchCV(model, {"forest__n_estimators": [10, 30]}, cv=3, n_jobs=2)
    search.fit(frame, y)
    assert search.best_score_ > 0.9
    assert fake_server.stats()["times_embedded_max"] >= 1
