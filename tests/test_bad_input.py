"""Bad input into every public estimator: a clear error naming the problem, or the policy.

Each entry point of each public estimator receives the same catalogue of bad inputs;
each must raise a ``ValueError`` (``TypeError`` for sparse matrices, as scikit-learn
does) whose message names the row or what is wrong, or follow the documented policy
(``on_invalid_text="zero"``, ``long_input``, zero rows of the adapter). Never an error
from deep inside a dependency, never a silently wrong result, never a paid request
for input that validation refuses. Hypothesis then throws random objects at the text
validation and random arrays at the numeric estimators. See docs/reliability.rst.
"""

import hashlib
import re
import warnings
from numbers import Integral
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning

from skembed import (
    CosineNearestNeighbors,
    LinearEmbeddingAdapter,
    LocalEmbeddingTransformer,
    ZeroShotEmbeddingClassifier,
)
from skembed._base import BaseEmbeddingTransformer
from skembed._sklearn_compat import Interval
from skembed._tokens import truncate_text
from skembed._validation import check_texts
from skembed.backends import InputTooLongError
from tests.fake_openai import expected_vector

# The adapters here are fitted for a few iterations only: input checks are under test.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

MODEL = "text-embedding-3-small"
DIM = 8  # OpenAI vectors requested at this width: small responses, fast tests
TEN_MB = 10 * 2**20


# -- a fast embedder behind the real transformer plumbing ---------------------------------


def _hash_vector(text, dim):
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class _HashBackend:
    model_name = "_HashBackend"
    pays_per_text = False
    resumable = False
    usd_per_million_tokens = 0.0

    def __init__(self, dim):
        self.n_dimensions = dim
        self.cache_namespace = f"test-hash-{dim}"

    def check_inputs(self, texts):
        pass

    def count_billed_tokens(self, texts):
        return np.zeros(len(texts), dtype=np.int64)

    def embed(self, texts, on_result=None, meter=None):
        vectors = np.stack([_hash_vector(t, self.n_dimensions) for t in texts])
        if on_result is not None:
            on_result(np.arange(len(texts)), vectors)
        return vectors


class HashEmbedder(BaseEmbeddingTransformer):
    """check_texts, the embedding job and the output assembly of the real estimators,
    with a deterministic in-process backend (no model, no network)."""

    _parameter_constraints: dict = {
        **BaseEmbeddingTransformer._parameter_constraints,
        "dim": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, *, dim=16, on_invalid_text="error", cache=None, verbose=False):
        self.dim = dim
        self.on_invalid_text = on_invalid_text
        self.cache = cache
        self.verbose = verbose

    def _make_backend(self):
        return _HashBackend(self.dim)

    def _output_dim(self):
        return self.dim


class BrokenEmbedder(TransformerMixin, BaseEstimator):
    """An embedder that breaks its contract in the way ``mode`` says."""

    def __init__(self, *, mode="nan"):
        self.mode = mode

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        vectors = np.stack([_hash_vector(str(t), 16) for t in X])
        if self.mode == "nan":
            vectors[len(vectors) - 1, 3] = np.nan
        elif self.mode == "1d":
            vectors = vectors[:, 0]
        elif self.mode == "rows":
            vectors = vectors[1:]
        return vectors


@pytest.fixture
def openai_embedder_params():
    return {"dimensions": DIM}


@pytest.fixture(scope="module")
def local():
    return LocalEmbeddingTransformer(cache=None)


@pytest.fixture(scope="module")
def zero_shot(local):
    return ZeroShotEmbeddingClassifier(
        labels=["sport", "finance"], embedder=local, transductive=False
    ).fit(["The striker scored.", "Shares fell."])


# -- the catalogue of bad texts -----------------------------------------------------------

# Each case builds its input afresh (a generator can only be read once).
TEXT_CASES = [
    ("None", lambda: None, "got an object of type NoneType"),
    ("nan-scalar", lambda: float("nan"), "got an object of type float"),
    ("numpy-nan-scalar", lambda: np.float64("nan"), "got an object of type float64"),
    ("int-scalar", lambda: 3, "got an object of type int"),
    ("bare-str", lambda: "one text", "string object received"),
    ("bare-bytes", lambda: b"one text", "string object received"),
    ("set", lambda: {"a", "b"}, "got an object of type set"),
    ("dict", lambda: {"a": "b"}, "got an object of type dict"),
    ("empty-list", lambda: [], "0 sample"),
    ("empty-array", lambda: np.array([], dtype=object), "0 sample"),
    ("empty-series", lambda: pd.Series([], dtype=object), "0 sample"),
    ("empty-generator", lambda: (t for t in []), "0 sample"),
    ("frame-without-rows", lambda: pd.DataFrame({"text": pd.Series([], dtype=object)}), "0 sample"),
    ("frame-without-columns", lambda: pd.DataFrame(index=[0, 1]), "0 columns"),
    ("None-item", lambda: ["ok", None], r"missing value \(None/NaN\) at row 1"),
    ("nan-item", lambda: ["ok", float("nan")], r"missing value \(None/NaN\) at row 1"),
    ("float32-nan-item", lambda: ["ok", np.float32("nan")], "missing value .* at row 1"),
    ("pd-NA-item", lambda: pd.Series(["ok", pd.NA], dtype="string"), "missing value .* row 1"),
    ("pd-NaT-item", lambda: ["ok", pd.NaT], "missing value .* at row 1"),
    ("None-in-generator", lambda: (t for t in ["ok", "fine", None]), "missing .* at row 2"),
    ("empty-str", lambda: ["ok", ""], "empty or whitespace-only text at row 1"),
    ("whitespace", lambda: ["ok", " \t\n\r\x0b\x0c"], "whitespace-only text at row 1"),
    ("unicode-spaces", lambda: ["ok", "\u3000\u2003\u00a0\u2028"], "whitespace-only .* row 1"),
    ("blank-rows", lambda: ["", "ok", " ", None], r"None/NaN\) at row 3 and an empty .* \[0, 2\]"),
    ("bytes-item", lambda: ["ok", b"text"], "found bytes at row 1"),
    ("bytearray-item", lambda: ["ok", bytearray(b"text")], "found bytearray at row 1"),
    ("int-item", lambda: ["ok", 7], "found int at row 1"),
    ("float-item", lambda: ["ok", 2.5], "found float at row 1"),
    ("inf-item", lambda: ["ok", float("inf")], "found float at row 1"),
    ("bool-item", lambda: ["ok", True], "found bool at row 1"),
    ("numpy-int-item", lambda: np.array(["ok", np.int64(3)], dtype=object), "found int64 at row 1"),
    ("int-column", lambda: pd.DataFrame({"n": [1, 2]}), r"found int at rows \[0, 1\]"),
    ("list-item", lambda: ["ok", ["nested"]], "found list at row 1"),
    ("tuple-item", lambda: ["ok", ("a", "b")], "found tuple at row 1"),
    ("dict-item", lambda: ["ok", {"k": "v"}], "found dict at row 1"),
    ("ragged-nested-lists", lambda: [["a", "b"], ["c"]], r"found list at rows \[0, 1\]"),
    ("mixed-types", lambda: ["ok", 1, None, b"x", ""], "found int at row 1, bytes at row 3"),
    ("2d-nested-lists", lambda: [["a", "b"], ["c", "d"]], r"1-D sequence .* shape \(2, 2\)"),
    ("2d-array", lambda: np.array([["a", "b"]], dtype=object), r"1-D .* shape \(1, 2\)"),
    ("3d-array", lambda: np.array([[["a"]]], dtype=object), r"1-D .* shape \(1, 1, 1\)"),
    ("two-column-frame", lambda: pd.DataFrame({"a": ["x"], "b": ["y"]}), "single text column"),
    ("lone-surrogate", lambda: ["ok", "bad \ud800 text"], "lone surrogate.* at row 1"),
    ("split-surrogate-pair", lambda: ["ok", "\ud83d\ude00"], "lone surrogate.* at row 1"),
    ("surrogateescape", lambda: ["ok", b"caf\xe9".decode("utf-8", "surrogateescape")], "row 1"),
    ("huge-bytes-item", lambda: ["ok", b"x" * TEN_MB], "found bytes at row 1"),
]

# Every entry point that takes texts, as (estimator kind, method).
TEXT_ENTRY_POINTS = [
    ("openai", "fit"),
    ("openai", "transform"),
    ("openai", "fit_transform"),
    ("local", "fit"),
    ("local", "transform"),
    ("zero_shot", "fit"),
    ("zero_shot", "predict"),
    ("zero_shot", "predict_proba"),
    ("zero_shot", "decision_function"),
]


def _text_call(kind, method, request):
    """The bound entry point to call with X."""
    if kind == "openai":
        return getattr(request.getfixturevalue("openai_embedder")(), method)
    if kind == "local":
        return getattr(request.getfixturevalue("local"), method)
    if method == "fit":
        return ZeroShotEmbeddingClassifier(
            labels=["a", "b"], embedder=request.getfixturevalue("local")
        ).fit
    return getattr(request.getfixturevalue("zero_shot"), method)


@pytest.mark.parametrize(
    ("kind", "method"), TEXT_ENTRY_POINTS, ids=[f"{k}-{m}" for k, m in TEXT_ENTRY_POINTS]
)
@pytest.mark.parametrize(("case", "make_X", "message"), TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_bad_texts_are_refused_by_name(kind, method, case, make_X, message, request):
    call = _text_call(kind, method, request)
    with pytest.raises(ValueError, match=message):
        call(make_X())
    if kind == "openai":  # refused before anything is paid for
        assert request.getfixturevalue("fake_server").stats(texts=False)["requests"] == 0


ODD_BUT_VALID = [
    "a\u200bb",  # zero-width space inside a word
    "\u200b",  # only a zero-width space: not whitespace to Python, nor to the API
    "\u2060\ufeffword joiner and BOM",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",  # Hebrew, right to left
    "\u202eright-to-left override\u202c",
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic
    "\U0001f600\U0001f44d\U0001f3fd",  # emoji with a skin-tone modifier
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a ZWJ family
    "nul\x00inside",
    "\x00",
    "e\u0301 and \u00e9",  # combining acute and precomposed
    "\u0301",  # a lone combining mark
    "Z\u0337\u0322\u031ba\u0338l\u0335g\u0337o\u0336",  # zalgo
    "\x1b[31mANSI escapes\x1b[0m",
    "\ue000\uf8ff",  # private use
    "\uffff\U0010ffff",  # noncharacters, the last code point
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",  # Japanese
    "\U0001d54f\U0001d54a math letters",
    "line\nbreaks\r\nand\ttabs",
]


def test_odd_but_valid_unicode_reaches_the_api_unchanged(openai_embedder):
    X = openai_embedder().fit_transform(ODD_BUT_VALID)
    expected = np.stack([expected_vector(MODEL, t, DIM) for t in ODD_BUT_VALID])
    # The server's vector is a function of the exact text it received.
    np.testing.assert_allclose(X, expected, atol=1e-6)


def test_odd_but_valid_unicode_embeds_locally(local, zero_shot):
    X = local.fit_transform(ODD_BUT_VALID)
    assert np.isfinite(X).all()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    proba = zero_shot.predict_proba(ODD_BUT_VALID)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(zero_shot.predict(ODD_BUT_VALID)) <= {"sport", "finance"}


ACCEPTED_CONTAINERS = [
    ("tuple", tuple),
    ("series", pd.Series),
    ("string-dtype-series", lambda t: pd.Series(t, dtype="string")),
    ("categorical-series", lambda t: pd.Series(t, dtype="category")),
    ("numpy-str", np.array),
    ("single-column-frame", lambda t: pd.DataFrame({"text": t})),
    ("2d-single-column", lambda t: np.array(t, dtype=object).reshape(-1, 1)),
    ("list-of-1-lists", lambda t: [[x] for x in t]),
    ("generator", lambda t: (x for x in t)),
]


@pytest.mark.parametrize("kind", ["local", "zero_shot"])
@pytest.mark.parametrize(
    "container", [c[1] for c in ACCEPTED_CONTAINERS], ids=[c[0] for c in ACCEPTED_CONTAINERS]
)
def test_one_column_containers_are_accepted(kind, container, local, zero_shot):
    texts = ["The striker scored twice.", "The bank cut rates.", "A quiet match."]
    if kind == "local":
        np.testing.assert_allclose(local.transform(container(texts)), local.transform(texts))
        return
    np.testing.assert_allclose(
        zero_shot.predict_proba(container(texts)), zero_shot.predict_proba(texts)
    )
    # fit reads the texts twice (validation, then embedding): a generator must do.
    model = ZeroShotEmbeddingClassifier(labels=["sport", "finance"], embedder=local, n_iter=2)
    reference = model.fit(texts).prototypes_
    np.testing.assert_allclose(model.fit(container(texts)).prototypes_, reference)


# -- policies: blank rows, long inputs ----------------------------------------------------

BLANKS = ["ok", None, "", "fine", float("nan"), "  \n", pd.NA]


def test_zero_policy_openai_and_local(fake_server, openai_embedder, local):
    valid = [0, 3]
    for embedder, kept in [
        (openai_embedder(on_invalid_text="zero"), openai_embedder()),
        (LocalEmbeddingTransformer(cache=None, on_invalid_text="zero"), local),
    ]:
        X = embedder.fit_transform(BLANKS)
        assert X.shape[0] == len(BLANKS)
        np.testing.assert_array_equal(np.delete(X, valid, axis=0), 0)
        np.testing.assert_allclose(X[valid], kept.transform(["ok", "fine"]), atol=1e-6)
    # Nothing blank was sent.
    assert set(fake_server.stats()["text_counts"]) == {"ok", "fine"}


def test_zero_policy_all_blank_rows(fake_server, openai_embedder, local):
    X = openai_embedder(on_invalid_text="zero").transform([None, " "])
    np.testing.assert_array_equal(X, np.zeros((2, DIM)))
    assert fake_server.stats(texts=False)["requests"] == 0


def test_zero_policy_in_zero_shot_gives_uniform_probabilities(local):
    # A blank text carries no evidence: every class scores 0 and is equally likely.
    embedder = LocalEmbeddingTransformer(cache=None, on_invalid_text="zero")
    model = ZeroShotEmbeddingClassifier(
        labels=["sport", "finance"], embedder=embedder, transductive=False
    ).fit(["x"])
    proba = model.predict_proba(["The striker scored.", None, ""])
    np.testing.assert_allclose(proba[1:], 0.5)
    assert proba[0, model.classes_.tolist().index("sport")] > 0.5
    np.testing.assert_array_equal(model.decision_function([None]), 0)


@pytest.fixture(scope="module")
def ten_mb_text():
    text = "word " * (TEN_MB // 5)
    assert len(text) == TEN_MB
    return text


def test_ten_megabyte_text_openai_error_names_the_row(fake_server, openai_embedder, ten_mb_text):
    with pytest.raises(InputTooLongError, match=r"8192 tokens .*\(input row 1\)") as info:
        openai_embedder().transform(["ok", ten_mb_text])
    assert info.value.rows == (1,)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_ten_megabyte_text_openai_truncate(fake_server, openai_embedder, ten_mb_text):
    X = openai_embedder(long_input="truncate").transform(["ok", ten_mb_text])
    head = truncate_text("word " * 9000, 8192)  # the same first 8192 tokens
    np.testing.assert_allclose(X[1], expected_vector(MODEL, head, DIM), atol=1e-6)
    stats = fake_server.stats(texts=False)
    assert stats["requests_by_status"] == {"200": stats["requests"]}  # no 400 for length


def test_ten_megabyte_text_local_policies(local, ten_mb_text):
    # Only the first 254 word pieces matter: the text is not tokenized whole (which took
    # 30 s for these 10 MB).
    X = local.transform(["ok", ten_mb_text])
    np.testing.assert_allclose(X[1], local.transform(["word " * 300])[0], atol=1e-6)
    strict = LocalEmbeddingTransformer(cache=None, long_input="error")
    with pytest.raises(InputTooLongError, match=r"longest has at least \d+.*\(input row 1\)"):
        strict.transform(["ok", ten_mb_text])


_LONG_TEXT = st.text(
    alphabet=st.sampled_from([*"ab xyz.,\n\t\r", "\u00e9", "\u0301", "\u4e2d", "\u200b"]),
    min_size=0,
    max_size=600,
)


@settings(max_examples=100, deadline=None)
@given(text=_LONG_TEXT, max_length=st.sampled_from([3, 8, 16]))
def test_property_local_prefix_tokenization_is_exact(text, max_length):
    # The local backend tokenizes long texts from a prefix: it must give the pieces the
    # whole text starts with, and call a text complete only if it is.
    from skembed.backends._local import _encode, _get_tokenizer
    from tests._backends import local_backend

    tokenizer = _get_tokenizer()
    full = _encode(tokenizer, [text])[0]
    width = max_length - 2
    for policy in ("truncate", "error"):
        backend = local_backend(max_length=max_length, long_input=policy)
        with mock.patch("skembed.backends._local._PREFIX_CHARS", 0):  # prefixes from 16 chars
            (pieces,), (complete,) = backend._word_pieces(tokenizer, [text])
        assert pieces[:width] == full[:width]
        assert pieces == full if complete else len(pieces) > width


# -- ZeroShotEmbeddingClassifier: targets, configuration, a misbehaving embedder ------------

Y_CASES = [
    ("None-label", ["sport", None], r"missing label \(None/NaN\) at row 1"),
    ("nan-label", [0.0, np.nan], r"missing label \(None/NaN\) at row 1"),
    ("too-few-labels", ["sport"], "X has 2 texts but y has 1 labels"),
    ("too-many-labels", ["sport", "finance", "sport"], "X has 2 texts but y has 3"),
    ("2d-labels", [["sport", "x"], ["finance", "y"]], "y should be a 1d array"),
    ("continuous", [0.25, 0.5], "Unknown label type: continuous"),
    ("unknown-class", ["sport", "weather"], r"classes \['weather'\] that labels does not"),
]


@pytest.mark.parametrize(("case", "y", "message"), Y_CASES, ids=[c[0] for c in Y_CASES])
def test_zero_shot_bad_targets_are_refused_before_any_request(
    fake_server, openai_embedder, case, y, message
):
    labels = [0.0, 1.0] if case == "nan-label" else ["sport", "finance"]
    model = ZeroShotEmbeddingClassifier(labels=labels, embedder=openai_embedder())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataConversionWarning)
        with pytest.raises(ValueError, match=message):
            model.fit(["a goal", "a bond"], y)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_zero_shot_mixed_label_types_without_labels(fake_server, openai_embedder):
    model = ZeroShotEmbeddingClassifier(embedder=openai_embedder())
    with pytest.raises(ValueError, match="y mixes labels of types"):
        model.fit(["a goal", "a bond"], np.array(["sport", 1], dtype=object))
    assert fake_server.stats(texts=False)["requests"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"labels": {"a": None, "b": "x"}}, r"labels\['a'\] must be a non-empty text"),
        ({"labels": {"a": b"bytes", "b": "x"}}, r"labels\['a'\] must be a non-empty text"),
        ({"labels": {"a": ["x", 3], "b": "x"}}, r"labels\['a'\] must be a non-empty text"),
        ({"labels": {"a": "\t", "b": "x"}}, r"labels\['a'\] must be a non-empty text"),
        ({"labels": ["a", "b"], "template": "{} {x}"}, "exactly one '{}' slot"),
        ({"labels": ["a", "b"], "template": "{} and {}"}, "exactly one '{}' slot"),
        ({"labels": ["a", "b"], "template": "{} {"}, "exactly one '{}' slot"),
        ({"labels": ["a", "b", "a"]}, r"labels names \['a'\] more than once"),
    ],
)
def test_zero_shot_bad_labels_and_templates(params, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotEmbeddingClassifier(embedder=HashEmbedder(), **params).fit(["x"])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("nan", r"non-finite values \(NaN or inf\) for row 1"),
        ("1d", r"returned an array of shape \(2,\) for 2 texts"),
        ("rows", r"returned an array of shape \(1, 16\) for 2 texts"),
    ],
)
def test_zero_shot_refuses_a_broken_embedder_output(mode, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotEmbeddingClassifier(labels=["a", "b"], embedder=BrokenEmbedder(mode=mode)).fit(
            ["x"]
        )


def test_zero_shot_embedder_of_another_width():
    texts = ["The striker scored.", "Shares fell."]
    model = ZeroShotEmbeddingClassifier(labels=["sport", "finance"], embedder=HashEmbedder(dim=16))
    before = model.fit(texts).predict_proba(texts)
    # A new embedder parameter takes effect at the next fit, never half-way.
    model.set_params(embedder=HashEmbedder(dim=8))
    np.testing.assert_array_equal(model.predict_proba(texts), before)
    # A fitted embedder swapped in by hand is caught, not multiplied into nonsense.
    model.embedder_ = HashEmbedder(dim=8).fit(texts)
    with pytest.raises(ValueError, match=r"shape \(2, 8\) for 2 texts; expected \(2, 16\)"):
        model.predict(texts)
    assert model.fit(texts).prototypes_.shape == (2, 8)


# -- numeric estimators ------------------------------------------------------------------

N_FEATURES = 5


def _embeddings(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    X = _embeddings()
    y = np.arange(len(X)) % 2
    return {
        "nn": CosineNearestNeighbors(n_neighbors=3).fit(X),
        "adapter": LinearEmbeddingAdapter(max_iter=20).fit(X, y),
    }


def _with(X, row, column, value):
    X = X.copy()
    X[row, column] = value
    return X


def _n_rows(X):
    shape = getattr(X, "shape", None)
    if shape:
        return shape[0]
    return len(X) if isinstance(X, list) else 2


NUMERIC_CASES = [
    ("None", lambda: None, ValueError, "Expected 2D array, got scalar array"),
    ("scalar", lambda: 3.0, ValueError, "Expected 2D array, got scalar array"),
    ("bare-str", lambda: "abc", ValueError, "could not convert string to float: 'abc'"),
    ("nan", lambda: _with(_embeddings(4), 2, 1, np.nan), ValueError, "contains NaN"),
    ("inf", lambda: _with(_embeddings(4), 1, 0, np.inf), ValueError, "contains infinity"),
    ("-inf", lambda: _with(_embeddings(4), 3, 4, -np.inf), ValueError, "contains infinity"),
    ("too-large-for-float32", lambda: np.full((2, 5), 1e39), ValueError, "too large for dtype"),
    (
        "None-in-object-array",
        lambda: np.array([[1, None, 2, 3, 4]], dtype=object),
        ValueError,
        "NaN",
    ),
    ("1d", lambda: _embeddings(1)[0], ValueError, "Expected 2D array, got 1D array"),
    ("3d", lambda: _embeddings(4)[None], ValueError, "Found array with dim 3"),
    ("0-rows", lambda: np.empty((0, 5)), ValueError, r"0 sample\(s\)"),
    ("0-columns", lambda: np.empty((3, 0)), ValueError, r"0 feature\(s\)"),
    ("texts", lambda: ["a text", "another"], ValueError, "could not convert string to float"),
    ("text-rows", lambda: [["a"] * 5], ValueError, "could not convert string to float: 'a'"),
    ("bytes-rows", lambda: [[b"a"] * 5], ValueError, "could not convert string to float"),
    ("ragged", lambda: [[1.0] * 5, [1.0]], ValueError, "inhomogeneous shape"),
    ("complex", lambda: _embeddings(3).astype(complex), ValueError, "Complex data not supported"),
    (
        "sparse",
        lambda: scipy.sparse.csr_matrix(_embeddings(3)),
        TypeError,
        "dense data is required",
    ),
]
WRONG_WIDTH = ("wrong-width", lambda: _embeddings(4)[:, :3], ValueError, "X has 3 features, but")

NUMERIC_ENTRY_POINTS = {
    "nn-fit": lambda f, X: CosineNearestNeighbors(n_neighbors=1).fit(X),
    "nn-kneighbors": lambda f, X: f["nn"].kneighbors(X, n_neighbors=1),
    "nn-kneighbors_graph": lambda f, X: f["nn"].kneighbors_graph(X, n_neighbors=1),
    "nn-radius_neighbors": lambda f, X: f["nn"].radius_neighbors(X),
    "nn-radius_neighbors_graph": lambda f, X: f["nn"].radius_neighbors_graph(X),
    "nn-score_samples": lambda f, X: f["nn"].score_samples(X),
    "adapter-fit": lambda f, X: LinearEmbeddingAdapter(max_iter=5).fit(
        X, np.arange(_n_rows(X)) % 2
    ),
    "adapter-fit_pairs": lambda f, X: LinearEmbeddingAdapter(max_iter=5).fit_pairs(
        X, X, np.ones(_n_rows(X))
    ),
    "adapter-transform": lambda f, X: f["adapter"].transform(X),
}
# X=None asks the neighbours of the fitted points themselves (documented).
_NONE_MEANS_FITTED = {name for name in NUMERIC_ENTRY_POINTS if name.startswith("nn-")} - {"nn-fit"}
# float64 is the adapter's own precision (it preserves the dtype): 1e39 is a valid value.
_FLOAT64_OK = {name for name in NUMERIC_ENTRY_POINTS if name.startswith("adapter-")}


def _numeric_params():
    for entry in NUMERIC_ENTRY_POINTS:
        cases = NUMERIC_CASES + ([WRONG_WIDTH] if "fit" not in entry.split("-")[1] else [])
        for case in cases:
            if (case[0] == "None" and entry in _NONE_MEANS_FITTED) or (
                case[0] == "too-large-for-float32" and entry in _FLOAT64_OK
            ):
                continue
            yield pytest.param(entry, *case, id=f"{entry}-{case[0]}")


@pytest.mark.parametrize(("entry", "case", "make_X", "error", "message"), list(_numeric_params()))
def test_bad_numeric_input_is_refused_by_name(fitted, entry, case, make_X, error, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's, on the overflowing cast
        with pytest.raises(error, match=message):
            NUMERIC_ENTRY_POINTS[entry](fitted, make_X())


def test_zero_rows_in_neighbours_have_cosine_zero_to_everything(fitted):
    # A zero row (a blank text under on_invalid_text="zero") is no error: its cosine to
    # anything is 0 (distance 1), as sklearn's cosine_similarity defines it (#16).
    X = _with(_embeddings(4), 2, slice(None), 0.0)
    distances, _ = CosineNearestNeighbors(n_neighbors=1).fit(X).kneighbors()
    np.testing.assert_allclose(distances[2], 1.0, atol=1e-6)
    np.testing.assert_allclose(fitted["nn"].score_samples(X)[2], -1.0, atol=1e-6)
    within = fitted["nn"].radius_neighbors(X, radius=0.5, return_distance=False)
    assert len(within[2]) == 0
    graph = fitted["nn"].kneighbors_graph(X, mode="distance")
    np.testing.assert_allclose(graph[2].data, 1.0, atol=1e-6)


def test_feature_names_must_match_the_fit():
    frame = pd.DataFrame(_embeddings(), columns=list("abcde"))
    other = frame.rename(columns={"a": "z"})
    y = np.arange(len(frame)) % 2
    for estimator, method in [
        (CosineNearestNeighbors(n_neighbors=2).fit(frame), "kneighbors"),
        (LinearEmbeddingAdapter(max_iter=5).fit(frame, y), "transform"),
    ]:
        with pytest.raises(ValueError, match="feature names should match"):
            getattr(estimator, method)(other)


@pytest.mark.parametrize("radius", [np.nan, -0.1, 2.5, "0.5", True, None])
def test_radius_must_be_a_cosine_distance(fitted, radius):
    if radius is None:  # the constructor's radius
        assert len(fitted["nn"].radius_neighbors(_embeddings(2))[1]) == 2
        return
    with pytest.raises(ValueError, match="radius must be a cosine distance in"):
        fitted["nn"].radius_neighbors(_embeddings(2), radius=radius)


@pytest.mark.parametrize(
    "scale", [2.0**64, 2.0**-100, 2.0**125], ids=["huge", "tiny", "near-float32-max"]
)
def test_extreme_magnitudes_give_the_same_answers(fitted, scale):
    # Cosine ignores a row's length: rows whose squares overflow or underflow float32
    # must give the answers of the unscaled rows, not zeros or non-unit rows. Powers of
    # two scale exactly, so the answers must agree to rounding.
    X = _embeddings(6, seed=1)
    scaled = X * np.float32(scale)
    assert np.isfinite(scaled).all() and (scaled != 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # sklearn's overflowing sum check
        np.testing.assert_allclose(
            fitted["nn"].kneighbors(scaled)[0], fitted["nn"].kneighbors(X)[0], atol=1e-5
        )
        ours = CosineNearestNeighbors(n_neighbors=2).fit(scaled).kneighbors()[0]
        reference = CosineNearestNeighbors(n_neighbors=2).fit(X).kneighbors()[0]
        np.testing.assert_allclose(ours, reference, atol=1e-5)
        np.testing.assert_allclose(
            fitted["adapter"].transform(scaled), fitted["adapter"].transform(X), atol=1e-5
        )
        y = np.arange(6) % 2
        np.testing.assert_allclose(
            LinearEmbeddingAdapter(max_iter=20).fit(scaled, y).coef_,
            LinearEmbeddingAdapter(max_iter=20).fit(X, y).coef_,
            atol=1e-6,
        )


# -- property tests ------------------------------------------------------------------------

_ITEMS = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(categories=["Cs", "Zs", "Cc", "Cf", "Mn"]), max_size=4),
    st.sampled_from(["", " ", "\t\n", "ok"]),
    st.none(),
    st.floats(),
    st.integers(),
    st.binary(max_size=6),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
)


def _oracle(item):
    """What the input policy says about one item."""
    if isinstance(item, str):
        if not item.strip():
            return "blank"
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return "unencodable"
        return "ok"
    if item is None or (isinstance(item, float) and item != item):
        return "missing"
    return "wrong_type"


def _column(items):
    """The texts a list of items stands for: lists of one item each are a 2-D column, as
    numpy reads them; lists all of another common length are a table (None)."""
    if items and all(isinstance(i, list) for i in items) and len({len(i) for i in items}) == 1:
        return [i[0] for i in items] if len(items[0]) == 1 else None
    return items


def _names_row(message, row):
    return re.search(rf"(row {row}\b|[\[ ]{row}[,\]])", message) is not None


def _expected_error(items, policy):
    """(message fragment, kinds of the rows it must name) for ``items``, or None."""
    if not items:
        return "0 sample", set()
    column = _column(items)
    if column is None:
        return "Expected a 1-D sequence of texts", set()
    kinds = [_oracle(item) for item in column]
    if "wrong_type" in kinds:
        first = column[kinds.index("wrong_type")]
        return f"Expected str items, found {type(first).__name__} at ", {"wrong_type"}
    if policy == "error" and "missing" in kinds:
        return "a missing value (None/NaN) at ", {"missing"}
    if policy == "error" and "blank" in kinds:
        return "an empty or whitespace-only text at ", {"blank"}
    if "unencodable" in kinds:
        return "not valid Unicode (a lone surrogate)", {"unencodable"}
    return None


def _check_outcome(items, policy, run):
    """``run(items)`` raises the error the policy predicts, naming the first row at fault,
    or its result is returned (None after an error)."""
    expected = _expected_error(items, policy)
    if expected is None:
        return run(items)
    fragment, named = expected
    with pytest.raises(ValueError) as info:
        run(items)
    message = str(info.value)
    assert fragment in message, (message, items)
    kinds = [_oracle(item) for item in _column(items) or []]
    if named:
        assert _names_row(message, next(r for r, k in enumerate(kinds) if k in named)), message
    return None


@settings(max_examples=300, deadline=None)
@given(items=st.lists(_ITEMS, max_size=8), policy=st.sampled_from(["error", "zero"]))
def test_property_check_texts(items, policy):
    result = _check_outcome(items, policy, lambda X: check_texts(X, invalid=policy))
    if result is None:
        return
    texts, valid = result
    column = _column(items)
    kinds = [_oracle(item) for item in column]
    assert valid.tolist() == [kind == "ok" for kind in kinds]
    assert texts == [item if kind == "ok" else "" for item, kind in zip(column, kinds, strict=True)]


@settings(max_examples=150, deadline=None)
@given(items=st.lists(_ITEMS, max_size=8), policy=st.sampled_from(["error", "zero"]))
def test_property_transform_path(items, policy):
    embedder = HashEmbedder(dim=4, on_invalid_text=policy)
    X = _check_outcome(items, policy, embedder.fit_transform)
    if X is None:
        return
    assert X.shape == (len(items), 4) and X.dtype == np.float32
    for row, item in enumerate(_column(items)):
        if _oracle(item) == "ok":
            np.testing.assert_array_equal(X[row], _hash_vector(item, 4))
        else:
            np.testing.assert_array_equal(X[row], 0)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(items=st.lists(_ITEMS, max_size=6), policy=st.sampled_from(["error", "zero"]))
def test_property_openai_transform(fake_server, openai_embedder, items, policy):
    fake_server.reset_stats()
    X = _check_outcome(items, policy, openai_embedder(on_invalid_text=policy).transform)
    if X is None:
        assert fake_server.stats(texts=False)["requests"] == 0
        return
    for row, item in enumerate(_column(items)):
        if _oracle(item) == "ok":
            np.testing.assert_allclose(X[row], expected_vector(MODEL, item, DIM), atol=1e-6)
        else:
            np.testing.assert_array_equal(X[row], 0)


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=32)
_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6),
    elements=st.one_of(
        _FLOATS, st.sampled_from([0.0, 1.0, -1.0, 3e38, -3e38, 2e38, 1e-45, -1e-45, 3e-45])
    ),
)


def _brute_force_distances(X, k):
    """Sorted cosine distances of each row to the others, in float64."""
    # A zero row has cosine 0 to everything, as sklearn's cosine_similarity defines it.
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    unit = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :k]


def _is_clear_numeric_error(error):
    known = (
        "Expected 2D array",
        "dim 3",
        "sample(s)",
        "feature(s)",
        "contains NaN",
        "contains infinity",
        "zero norm",
        "n_neighbors",
    )
    return any(fragment in str(error) for fragment in known)


@settings(max_examples=150, deadline=None)
@given(X=_ARRAYS)
def test_property_neighbours_on_random_arrays(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            nn = CosineNearestNeighbors(n_neighbors=1).fit(X)
            distances, _ = nn.kneighbors()
        except ValueError as error:
            assert _is_clear_numeric_error(error), error
            return
    X32 = X.astype(np.float32).astype(np.float64)
    # Rows scaled to a largest entry of one first: the float64 oracle must not overflow.
    largest = np.abs(X32).max(axis=1, keepdims=True)
    X32 = np.divide(X32, largest, out=np.zeros_like(X32), where=largest > 0)
    np.testing.assert_allclose(distances, _brute_force_distances(X32, 1), atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(X=_ARRAYS)
def test_property_adapter_on_random_arrays(X):
    y = np.arange(len(X)) % 2 if X.ndim else X
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            adapter = LinearEmbeddingAdapter(max_iter=10).fit(X, y)
            Z = adapter.transform(X)
        except ValueError as error:
            assert _is_clear_numeric_error(error) or "at least 2 classes" in str(error), error
            return
    # Unit rows, or zero rows exactly where the input row is zero (the documented policy).
    assert np.isfinite(Z).all()
    norms = np.linalg.norm(Z.astype(np.float64), axis=1)
    zero_input = ~X.astype(np.float64).any(axis=1)
    np.testing.assert_allclose(norms[~zero_input], 1.0, atol=1e-5)
    np.testing.assert_array_equal(norms[zero_input], 0.0)
