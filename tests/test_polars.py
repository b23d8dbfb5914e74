"""polars in and out: Series and single-column DataFrames as input, ``set_output(transform=
"polars")`` as output, a polars frame through a ColumnTransformer, polars' null as a missing
text, and the estimators that take the embeddings. Nothing on this path needs pandas.

The results are compared with those of the same texts given as a list: a container must
change nothing but the names of the output columns.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skembed import (
    CosineNearestNeighbors,
    LinearEmbeddingAdapter,
    LocalEmbeddingTransformer,
    ZeroShotEmbeddingClassifier,
)
from tests.fake_openai import expected_vector

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DIM = 8
TEXTS = [
    "A soft and warm sweater.",
    "The zip broke after one wash.",
    "Lovely colour, fits well.",
    "Shrank in the dryer, very disappointed.",
]
LABELS = ["good", "bad", "good", "bad"]


@pytest.fixture(params=["local", "openai"])
def embedder(request):
    """(a fresh embedder, its width): the local model, or OpenAI on the fake server."""
    if request.param == "local":
        return (lambda **params: LocalEmbeddingTransformer(cache=None, **params)), 384
    make = request.getfixturevalue("openai_embedder")
    return (lambda **params: make(dimensions=DIM, **params)), DIM


CONTAINERS = [
    ("named-series", lambda t: pl.Series("review", t), "review"),
    ("unnamed-series", lambda t: pl.Series(t), None),
    ("frame", lambda t: pl.DataFrame({"review": t}), "review"),
    ("categorical", lambda t: pl.Series("review", t, dtype=pl.Categorical), "review"),
    ("enum", lambda t: pl.Series("review", t, dtype=pl.Enum(sorted(set(t)))), "review"),
    ("large-frame-column", lambda t: pl.DataFrame({"review": t}).select("review"), "review"),
]


@pytest.mark.parametrize(
    ("container", "name"), [c[1:] for c in CONTAINERS], ids=[c[0] for c in CONTAINERS]
)
def test_polars_containers_embed_as_a_list_does(embedder, container, name):
    make, width = embedder
    reference = make().transform(TEXTS)
    X = make().fit(container(TEXTS))
    np.testing.assert_array_equal(X.transform(container(TEXTS)), reference)
    prefix = f"{name}_" if name else f"{type(X).__name__.lower()}"
    assert X.get_feature_names_out().tolist() == [f"{prefix}{i}" for i in range(width)]


def test_openai_vectors_are_the_servers_for_polars_input(openai_embedder):
    X = openai_embedder(dimensions=DIM).transform(pl.DataFrame({"review": TEXTS}))
    expected = np.stack([expected_vector("text-embedding-3-small", t, DIM) for t in TEXTS])
    np.testing.assert_allclose(X, expected, atol=1e-6)


def test_polars_output(embedder):
    make, width = embedder
    reference = make().transform(TEXTS)
    out = make().set_output(transform="polars").fit_transform(pl.Series("review", TEXTS))
    assert isinstance(out, pl.DataFrame)
    assert out.columns == [f"review_{i}" for i in range(width)]
    assert out.shape == (len(TEXTS), width)
    assert set(out.schema.values()) == {pl.Float32}
    np.testing.assert_array_equal(out.to_numpy(), reference)


@pytest.mark.parametrize("column", ["review", ["review"]], ids=["scalar", "list"])
def test_a_polars_frame_through_a_column_transformer(embedder, column):
    make, width = embedder
    frame = pl.DataFrame({"review": TEXTS, "age": [31.0, 52.0, 47.0, 25.0]})
    encoder = make_column_transformer(
        (make(), column), (StandardScaler(), ["age"]), verbose_feature_names_out=False
    ).set_output(transform="polars")
    out = encoder.fit_transform(frame)
    assert isinstance(out, pl.DataFrame)
    assert out.columns == [f"review_{i}" for i in range(width)] + ["age"]
    np.testing.assert_array_equal(out.select(pl.exclude("age")).to_numpy(), make().transform(TEXTS))
    model = make_pipeline(encoder, LogisticRegression()).fit(frame, pl.Series(LABELS))
    assert model.predict(frame).shape == (len(TEXTS),)
    assert set(model.predict(frame)) <= {"good", "bad"}


def test_polars_null_is_a_missing_text(embedder, request):
    make, _ = embedder
    texts = pl.Series("review", ["ok", None, "fine", "   ", None])
    with pytest.raises(ValueError) as info:
        make().transform(texts)
    message = str(info.value)
    assert "missing value (None/NaN) at rows [1, 4]" in message
    assert "empty or whitespace-only text at row 3 in column 'review'" in message
    assert "index" not in message  # polars has no index: positions are the labels
    X = make(on_invalid_text="zero").transform(pl.DataFrame({"review": texts}))
    np.testing.assert_array_equal(X[[1, 3, 4]], 0)
    np.testing.assert_array_equal(X[[0, 2]], make().transform(["ok", "fine"]))
    if "openai_embedder" in request.fixturenames:  # nothing blank was sent
        server = request.getfixturevalue("fake_server")
        assert set(server.stats()["text_counts"]) == {"ok", "fine"}


@pytest.mark.parametrize(
    ("X", "message"),
    [
        # Read by polars itself: integers stay int (through numpy, a null made them float).
        (pl.DataFrame({"n": [1, 2]}), r"found int at rows \[0, 1\] in column 'n'"),
        (pl.Series("n", [None, 3]), r"found int at row 1 in column 'n'"),
        (pl.Series("b", [b"x", b"y"]), r"found bytes at rows \[0, 1\] in column 'b'"),
        (pl.Series("l", [["a"], ["b", "c"]]), r"found list at rows \[0, 1\] in column 'l'"),
        (pl.Series("f", [0.5, None]), r"found float at row 0 in column 'f'"),
        (pl.DataFrame({"a": ["x"], "b": ["y"]}), "single text column, got a DataFrame with 2"),
        (pl.Series("review", [], dtype=pl.String), r"0 sample\(s\)"),
    ],
    ids=["int-column", "int-with-null", "binary", "list", "float", "two-columns", "empty"],
)
def test_bad_polars_input_is_refused_by_name(X, message):
    with pytest.raises(ValueError, match=message):
        LocalEmbeddingTransformer(cache=None).fit_transform(X)


def test_zero_shot_with_polars(openai_embedder, fake_server):
    def model():
        return ZeroShotEmbeddingClassifier(labels=["good", "bad"], embedder=openai_embedder())

    reference = model().fit(TEXTS, LABELS)
    fitted = model().fit(pl.Series("review", TEXTS), pl.Series("label", LABELS))
    np.testing.assert_array_equal(fitted.prototypes_, reference.prototypes_)
    frame = pl.DataFrame({"review": TEXTS})
    np.testing.assert_array_equal(fitted.predict_proba(frame), reference.predict_proba(TEXTS))
    assert fitted.predict(frame).tolist() == reference.predict(TEXTS).tolist()
    fake_server.reset_stats()
    # The embedder's own check names the polars column, and nothing is sent.
    with pytest.raises(ValueError, match=r"missing value \(None/NaN\) at row 2 in column 'review'"):
        fitted.predict(pl.DataFrame({"review": ["ok", "fine", None]}))
    with pytest.raises(ValueError, match=r"missing label \(None/NaN\) at row 1 in column 'label'"):
        model().fit(pl.Series("review", TEXTS[:2]), pl.Series("label", ["good", None]))
    assert fake_server.stats(texts=False)["requests"] == 0


def test_neighbours_and_adapter_take_the_polars_output(openai_embedder):
    embedder = openai_embedder(dimensions=DIM).set_output(transform="polars")
    vectors = embedder.fit_transform(pl.Series("review", TEXTS))
    array = vectors.to_numpy()
    nn = CosineNearestNeighbors(n_neighbors=2).fit(vectors)
    assert nn.feature_names_in_.tolist() == vectors.columns
    reference = CosineNearestNeighbors(n_neighbors=2).fit(array)
    for ours, theirs in zip(nn.kneighbors(vectors), reference.kneighbors(array), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(nn.score_samples(vectors), reference.score_samples(array))

    y = pl.Series("label", LABELS)
    adapter = LinearEmbeddingAdapter(max_iter=10).set_output(transform="polars").fit(vectors, y)
    mapped = adapter.transform(vectors)
    assert isinstance(mapped, pl.DataFrame)
    assert mapped.columns == adapter.get_feature_names_out().tolist()
    plain = LinearEmbeddingAdapter(max_iter=10).fit(array, LABELS)
    np.testing.assert_allclose(mapped.to_numpy(), plain.transform(array), atol=1e-6)


_WITHOUT_PANDAS = textwrap.dedent(
    """
    import os, sys

    class NoPandas:  # as if pandas were not installed
        def find_spec(self, name, path=None, target=None):
            if name == "pandas" or name.startswith("pandas."):
                raise ModuleNotFoundError("No module named 'pandas'", name=name)

    sys.meta_path.insert(0, NoPandas())
    import numpy as np
    import polars as pl
    from sklearn.compose import make_column_transformer
    from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

    frame = pl.DataFrame({"review": ["a soft sweater", "a broken zip"], "n": [1, 2]})
    for embedder in [
        LocalEmbeddingTransformer(cache=None),
        OpenAIEmbeddingTransformer(base_url=os.environ["FAKE_BASE_URL"], dimensions=8),
    ]:
        encoder = make_column_transformer((embedder, "review")).set_output(transform="polars")
        out = encoder.fit_transform(frame)
        assert isinstance(out, pl.DataFrame) and out.shape[0] == 2, out
        assert np.isfinite(out.to_numpy()).all()
        try:
            embedder.transform(pl.Series("review", ["ok", None]))
        except ValueError as error:
            assert "at row 1 in column 'review'" in str(error), error
        else:
            raise AssertionError("a null was embedded")
    assert "pandas" not in sys.modules
    """
)


def test_the_polars_path_needs_no_pandas(fake_server, tmp_path):
    env = {**os.environ, "FAKE_BASE_URL": fake_server.base_url}
    env["SKEMBED_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_PANDAS], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert fake_server.stats(texts=False)["requests"] >= 1
