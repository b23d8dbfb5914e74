"""Errors name the rows the way the user knows them: position, pandas index label, column.

A bad text at index label ``"r17"`` of column ``"review"`` is reported as ``row 3 (index
'r17') in column 'review'``: the position (what ``iloc`` and numpy take), the label (what
``loc`` takes, shown unless it is the position itself, a default ``RangeIndex``) and the
column. polars has no index: positions and the column. The property test draws index
labels (ints, strings, duplicated, non-monotonic, a shifted range) and bad rows at random,
and reads the rows back from the message: they must be exactly the bad ones.
"""

import ast
import re

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skembed import InputTooLongError, LocalEmbeddingTransformer, ZeroShotEmbeddingClassifier
from skembed._validation import check_texts, row_names

SHOWN = 10  # rows a message lists

_ONE = re.compile(r"\brow (?P<position>\d+)(?: \(index (?P<label>[^()]*)\))?")
_SEVERAL = re.compile(r"\brows \[(?P<positions>[^\]]*)\](?: \((?P<notes>[^()]*)\))?")


def read_rows(clause):
    """(positions, count, labels or None) from ``row 3 (index 'a')`` or ``rows [...] (...)``."""
    several = _SEVERAL.match(clause)
    if several:
        listed = [p.strip() for p in several["positions"].split(",")]
        positions = [int(p) for p in listed if p != "..."]
        count, labels = len(positions), None
        for note in (several["notes"] or "").split("; "):
            if note.endswith(" in all"):
                count = int(note.removesuffix(" in all"))
            elif note.startswith("index "):
                labels = ast.literal_eval(note.removeprefix("index ").replace(", ...]", "]"))
        return positions, count, labels
    one = _ONE.match(clause)
    assert one, clause
    label = None if one["label"] is None else [ast.literal_eval(one["label"])]
    return [int(one["position"])], 1, label


def clause_after(message, lead):
    assert lead in message, message
    return message[message.index(lead) + len(lead) :]


# Labels without brackets or parentheses, so that the message can be read back.
_LABELS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.text(alphabet="abcxyz_-0123456789 ", min_size=1, max_size=8),
)


@st.composite
def labelled_column(draw):
    n = draw(st.integers(1, 3 * SHOWN))
    kind = draw(st.sampled_from(["labels", "duplicated", "range", "shifted-range", "polars"]))
    if kind == "labels":
        index = draw(st.lists(_LABELS, min_size=n, max_size=n))
    elif kind == "duplicated":  # few distinct labels, in any order
        pool = draw(st.lists(_LABELS, min_size=1, max_size=3))
        index = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    elif kind == "shifted-range":  # a slice of a frame: a RangeIndex not starting at 0
        start = draw(st.integers(1, 50))
        index = pd.RangeIndex(start, start + n)
    else:
        index = None  # RangeIndex(n), or polars: the labels are the positions
    bad = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    bad_value = draw(st.sampled_from([None, np.nan, pd.NA, "", " \t"]))
    column = draw(st.one_of(st.none(), st.sampled_from(["review", "Review Text", 0, "x_1"])))
    texts = [f"text {i}" for i in range(n)]
    for row in bad:
        texts[row] = bad_value
    if kind == "polars":
        name = "" if column is None else str(column)
        series = pl.Series(name, [t if isinstance(t, str) else None for t in texts])  # null
        container = draw(st.sampled_from(["series", "frame"]))
        X = series.to_frame() if container == "frame" and name else series
        return X, sorted(bad), None, name or None
    series = pd.Series(texts, index=index, name=column, dtype=object)
    container = draw(st.sampled_from(["series", "frame"]))
    X = series.to_frame(name=column if column is not None else "text")
    if container == "series":
        X = series
    else:
        column = X.columns[0]
    labels = None if kind == "range" else [series.index[row] for row in sorted(bad)]
    return X, sorted(bad), labels, column


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def assert_names(clause, bad, labels, column):
    positions, count, shown = read_rows(clause)
    assert positions == bad[:SHOWN], clause
    assert count == len(bad), clause
    if labels is None:
        assert shown is None, clause
    else:
        assert shown == [_plain(label) for label in labels[:SHOWN]], clause
    suffix = "" if column is None else f" in column {_plain(column)!r}"
    assert f"{suffix}." in clause or f"{suffix})" in clause or f"{suffix};" in clause, clause


_EMBEDDER = LocalEmbeddingTransformer(cache=None)


@settings(max_examples=200, deadline=None)
@given(case=labelled_column())
def test_property_a_blank_text_is_named_by_position_label_and_column(case):
    X, bad, labels, column = case
    for call in (lambda: check_texts(X), lambda: _EMBEDDER.fit_transform(X)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        lead = "a missing value (None/NaN) at " if "missing" in message else "text at "
        assert_names(clause_after(message, lead), bad, labels, column)


def test_a_label_and_a_column_in_the_words_of_the_issue():
    frame = pd.DataFrame(
        {"review": ["fine", "ok", None, "good"]}, index=["r15", "r16", "r17", "r18"]
    )
    with pytest.raises(ValueError) as info:
        _EMBEDDER.transform(frame)
    message = str(info.value)
    assert "at row 2 (index 'r17') in column 'review'." in message
    with pytest.raises(ValueError, match=r"rows \[1, 2\] \(index \['r16', 'r17'\]\)"):
        _EMBEDDER.transform(frame.assign(review=["fine", " ", "", "good"]))
    # A filtered frame keeps its labels: the label is what .loc finds, the position .iloc.
    kept = pd.DataFrame({"review": ["a", "b", "c", None]}).iloc[2:]
    with pytest.raises(ValueError, match=r"at row 1 \(index 3\) in column 'review'"):
        _EMBEDDER.transform(kept)
    assert pd.isna(kept.loc[3, "review"]) and pd.isna(kept.iloc[1, 0])


def test_wrong_types_name_labels_and_column():
    series = pd.Series(["ok", 3, b"x"], index=["a", "b", "c"], name="review", dtype=object)
    with pytest.raises(ValueError) as info:
        check_texts(series)
    message = str(info.value)
    assert "found int at row 1 (index 'b'), bytes at row 2 (index 'c') in column 'review'" in (
        message
    )


def test_a_long_label_is_shortened():
    series = pd.Series(["ok", None], index=["a", "x" * 500])
    with pytest.raises(ValueError) as info:
        check_texts(series)
    assert len(str(info.value)) < 300
    assert "(index 'xxxx" in str(info.value)


def test_many_rows_are_counted():
    series = pd.Series([None] * 25, index=[f"k{i}" for i in range(25)], name="review")
    names = row_names(series)
    assert names(range(25)) == (
        "rows [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] (25 in all; index ['k0', 'k1', 'k2', 'k3', "
        "'k4', 'k5', 'k6', 'k7', 'k8', 'k9', ...]) in column 'review'"
    )


def test_a_too_long_text_is_named_by_label_and_column():
    strict = LocalEmbeddingTransformer(cache=None, long_input="error", max_length=8)
    series = pd.Series(
        ["short", "word " * 50, None, "word " * 60],
        index=pd.Index([10, 20, 30, 40], name="id"),
        name="body",
    )
    with pytest.raises(InputTooLongError) as info:
        strict.set_params(on_invalid_text="zero").transform(series)
    assert info.value.rows == (1, 3)  # positions, as before
    assert "(input rows [1, 3] (index [20, 40]) in column 'body')" in str(info.value)


def test_openai_errors_name_labels_and_column(openai_embedder, fake_server):
    series = pd.Series(["ok", "word " * 9000], index=["a", "b"], name="review")
    embedder = openai_embedder(dimensions=8)
    for call in (embedder.transform, embedder.estimate_cost):
        with pytest.raises(InputTooLongError, match=r"\(input row 1 \(index 'b'\) in column"):
            call(series)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_zero_shot_names_labels_of_x_and_y(openai_embedder, fake_server):
    model = ZeroShotEmbeddingClassifier(labels=["a", "b"], embedder=openai_embedder())
    X = pd.Series(["one", "two", "three"], index=["p", "q", "r"], name="review")
    y = pd.Series(["a", None, "b"], index=["p", "q", "r"], name="label")
    with pytest.raises(
        ValueError, match=r"missing label .* at row 1 \(index 'q'\) in column 'label'"
    ):
        model.fit(X, y)
    frame = pd.DataFrame({"review": ["ok", ""]}, index=["u", "v"])
    with pytest.raises(ValueError, match=r"at row 1 \(index 'v'\) in column 'review'"):
        model.fit(frame)
    assert fake_server.stats(texts=False)["requests"] == 0


def test_dask_partitions_name_the_global_labels():
    dd = pytest.importorskip("dask.dataframe")
    from skembed import embed_partitions

    frame = pd.DataFrame({"text": ["a", "b", "c", None, "e", "f"]}, index=range(100, 106))
    texts = dd.from_pandas(frame, npartitions=2)["text"]
    with pytest.raises(ValueError, match=r"at row 0 \(index 103\) in column 'text'"):
        embed_partitions(_EMBEDDER, texts).compute(scheduler="sync")
