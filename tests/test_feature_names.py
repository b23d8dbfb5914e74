"""get_feature_names_out of the embedding transformers: the input column's name, or the class's.

A named column (a Series' name, a single-column DataFrame's column) gives ``review_0 ...``
as skrub's encoders do; anything else gives ``localembeddingtransformer0 ...``. These
names are what ``set_output(transform="pandas")`` and ``ColumnTransformer`` show.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.preprocessing import StandardScaler

from skembed import LocalEmbeddingTransformer

TEXTS = ["A soft and warm sweater.", "The zip broke after one wash."]


@pytest.fixture(params=["local", "openai"])
def embedder(request):
    if request.param == "local":
        return LocalEmbeddingTransformer(cache=None), 384
    return request.getfixturevalue("openai_embedder")(dimensions=8), 8


@pytest.mark.parametrize(
    "container",
    [
        lambda: pd.Series(TEXTS, name="review"),
        lambda: pd.DataFrame({"review": TEXTS}),
    ],
    ids=["series", "frame"],
)
def test_a_named_column_names_the_output(embedder, container):
    embedder, width = embedder
    X = container()
    names = embedder.fit(X).get_feature_names_out()
    assert names.tolist() == [f"review_{i}" for i in range(width)]
    assert names.dtype == object
    # The same name given back (as ColumnTransformer does) is accepted; another is not.
    assert embedder.get_feature_names_out(["review"]).tolist() == names.tolist()
    with pytest.raises(ValueError, match="not equal to feature_names_in_"):
        embedder.get_feature_names_out(["title"])
    out = embedder.set_output(transform="pandas").fit_transform(X)
    assert out.columns.tolist() == names.tolist()


@pytest.mark.parametrize(
    "container",
    [list, np.array, lambda t: pd.Series(t), lambda t: pd.DataFrame({0: t})],
    ids=["list", "array", "unnamed-series", "int-column"],
)
def test_an_unnamed_column_gets_the_class_prefix(embedder, container):
    embedder, width = embedder
    prefix = type(embedder).__name__.lower()
    expected = [f"{prefix}{i}" for i in range(width)]
    assert embedder.get_feature_names_out().tolist() == expected  # stateless: before fit
    # A refit forgets an earlier column's name.
    embedder.fit(pd.Series(TEXTS, name="review"))
    assert embedder.fit(container(TEXTS)).get_feature_names_out().tolist() == expected
    assert not hasattr(embedder, "feature_names_in_")
    # Unfitted but told the column's name: named after it.
    assert embedder.get_feature_names_out(["body"])[0] == "body_0"
    with pytest.raises(ValueError, match="must name one column"):
        embedder.get_feature_names_out(["a", "b"])


@pytest.mark.parametrize("column", ["review", ["review"]], ids=["scalar", "list"])
def test_column_transformer_and_pandas_output(embedder, column):
    embedder, width = embedder
    frame = pd.DataFrame({"review": TEXTS, "age": [31.0, 52.0]})
    transformer = make_column_transformer(
        (embedder, column), (StandardScaler(), ["age"]), verbose_feature_names_out=False
    ).set_output(transform="pandas")
    out = transformer.fit_transform(frame)
    assert out.columns.tolist() == [f"review_{i}" for i in range(width)] + ["age"]
    assert out.shape == (2, width + 1)
    assert transformer.get_feature_names_out().tolist() == out.columns.tolist()
