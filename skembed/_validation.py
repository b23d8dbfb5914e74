"""Input checks shared by every estimator: what counts as a text, what counts as a vector.

pandas and polars objects are recognised without importing either library: an object
can be a pandas Series only if pandas has been imported (``sys.modules``), so a
process that uses lists or polars never needs pandas here.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

__all__ = [
    "INVALID_TEXT_POLICIES",
    "RowNames",
    "check_texts",
    "column_name",
    "describe_rows",
    "row_names",
    "text_column",
]

#: What to do with a missing or blank text: raise, or give it an all-zero row.
INVALID_TEXT_POLICIES = ("error", "zero")

# Most rows a message lists.
_SHOWN = 10
# Longest repr of one index label in a message: a label can be a long text.
_LABEL_CHARS = 40


def _loaded(name):
    """The module ``name`` if something has imported it already, else None."""
    return sys.modules.get(name)


def _is_pandas(X, *kinds):
    pd = _loaded("pandas")
    return pd is not None and isinstance(X, tuple(getattr(pd, kind) for kind in kinds))


def _is_polars(X, *kinds):
    pl = _loaded("polars")
    return pl is not None and isinstance(X, tuple(getattr(pl, kind) for kind in kinds))


def describe_rows(rows, limit=_SHOWN, labels=None):
    """Format row positions for an error message: ``"rows [3, 17]"`` or ``"row 3"``.

    Parameters
    ----------
    rows : sequence of int
        Positions of the rows (counted from 0).
    limit : int, default=10
        Most rows shown; the count of all is given when there are more.
    labels : sequence, default=None
        The pandas index label of each row in ``rows``, shown after the positions.

    Returns
    -------
    str

    Examples
    --------
    >>> describe_rows([3])
    'row 3'
    >>> describe_rows(range(20), limit=3)
    'rows [0, 1, 2, ...] (20 in all)'
    >>> describe_rows([1], labels=["r1"])
    "row 1 (index 'r1')"
    >>> describe_rows([0, 4], labels=["b", 7])
    "rows [0, 4] (index ['b', 7])"
    """
    rows = [int(r) for r in rows]
    shown = [_label_repr(label) for label in labels[:limit]] if labels is not None else None
    if len(rows) == 1:
        return f"row {rows[0]}" + (f" (index {shown[0]})" if shown else "")
    more = len(rows) > limit
    positions = ", ".join(str(r) for r in rows[:limit]) + (", ..." if more else "")
    notes = [f"{len(rows)} in all"] if more else []
    if shown is not None:
        notes.append(f"index [{', '.join(shown)}{', ...' if more else ''}]")
    return f"rows [{positions}]" + (f" ({'; '.join(notes)})" if notes else "")


def _label_repr(label):
    if isinstance(label, np.generic):
        label = label.item()  # 3, not np.int64(3)
    text = repr(label)
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 4] + "...'"


class RowNames:
    """How to name rows of the user's input in a message: position, index label, column.

    Built by :func:`row_names` from the input itself (a pandas object's index and
    name, a polars object's column name), before it is turned into a list of texts.

    Parameters
    ----------
    index : sequence, default=None
        The index label of each row, or None when the labels are the positions
        (a default ``RangeIndex``, or no index at all).
    column : object, default=None
        The name of the column of texts, or None.

    Examples
    --------
    >>> names = RowNames(index=["a", "b", "c"], column="review")
    >>> names([2])
    "row 2 (index 'c') in column 'review'"
    >>> RowNames()([0, 1])
    'rows [0, 1]'
    """

    def __init__(self, index=None, column=None):
        self.index = index
        self.column = column

    def rows(self, rows):
        """Positions, with their index labels when they differ from the positions."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        labels = None
        if self.index is not None:  # positional: an Index's [] is by position
            labels = [self.index[row] for row in rows[:_SHOWN]]
        return describe_rows(rows, labels=labels)

    @property
    def in_column(self):
        """``" in column 'review'"``, or ``""`` when the column has no name."""
        return "" if self.column is None else f" in column {_label_repr(self.column)}"

    def __call__(self, rows):
        return self.rows(rows) + self.in_column


def column_name(X):
    """The name of the one column of texts ``X``, or None (any type; None for polars' ``""``)."""
    if _is_pandas(X, "DataFrame") or _is_polars(X, "DataFrame"):
        return X.columns[0] if len(X.columns) == 1 else None
    if _is_pandas(X, "Series"):
        return X.name
    if _is_polars(X, "Series"):
        return X.name or None  # polars names an unnamed Series ""
    return None


def row_names(X):
    """A :class:`RowNames` for the input ``X``, read from its index and column name.

    The index labels are kept (by reference, nothing is copied) only when they are not
    the positions themselves, which a default ``RangeIndex`` and polars objects are.

    Examples
    --------
    >>> import pandas as pd
    >>> texts = pd.Series(["ok", None], index=["r0", "r1"], name="review")
    >>> row_names(texts)([1])
    "row 1 (index 'r1') in column 'review'"
    >>> row_names(["ok", None])([1])
    'row 1'
    """
    index = None
    if _is_pandas(X, "Series", "DataFrame"):
        index = X.index
        pd = _loaded("pandas")
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            index = None
    return RowNames(index=index, column=column_name(X))


def _as_text_column(X):
    """Return ``X`` as a 1-D object array, or raise naming what was wrong with its shape."""
    if isinstance(X, str | bytes):
        raise ValueError(
            "Iterable over raw text documents expected, string object received. "
            "Wrap a single text in a list: transform([text])."
        )
    if _is_pandas(X, "DataFrame") or _is_polars(X, "DataFrame"):
        X = _frame_column(X)
    if _is_pandas(X, "Series"):
        return X.to_numpy(dtype=object)
    if _is_polars(X, "Series"):
        return _polars_column(X)
    if not hasattr(X, "__len__") and not hasattr(X, "__array__"):
        if hasattr(X, "__iter__"):
            X = list(X)  # a generator of texts
        else:
            raise ValueError(
                f"Expected a sequence of texts, got an object of type {type(X).__name__}."
            )
    try:
        array = np.asarray(X, dtype=object)
    except ValueError:  # ragged nesting
        array = np.empty(len(X), dtype=object)
        array[:] = list(X)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0:  # a set, a dict, a number...
        raise ValueError(f"Expected a sequence of texts, got an object of type {type(X).__name__}.")
    if array.ndim != 1:
        raise ValueError(
            f"Expected a 1-D sequence of texts (or a single column), got an array of shape "
            f"{array.shape}."
        )
    return array


def _frame_column(X):
    """The one column of a pandas or polars DataFrame, as a Series of the same library."""
    if X.shape[1] != 1:
        raise ValueError(
            "Expected a single text column, got a DataFrame with "
            f"{X.shape[1]} columns {list(X.columns)[:5]}. Select the text column, "
            "e.g. with a ColumnTransformer."
        )
    return X.to_series(0) if _is_polars(X, "DataFrame") else X.iloc[:, 0]


def text_column(X):
    """``X`` as one column of texts that can be read again and keeps its row names.

    A pandas or polars Series is returned as it is, a single-column DataFrame as its
    column (a Series of the same library, index and name kept), anything else as a
    1-D object array (a generator read once). Raises as :func:`check_texts` does
    for an input that is not one column; the items themselves are not checked.

    Examples
    --------
    >>> import pandas as pd
    >>> text_column(pd.DataFrame({"review": ["ok"]}, index=["r0"])).name
    'review'
    >>> text_column(t for t in ["a", "b"])
    array(['a', 'b'], dtype=object)
    """
    if _is_pandas(X, "Series") or _is_polars(X, "Series"):
        return X
    if _is_pandas(X, "DataFrame") or _is_polars(X, "DataFrame"):
        return _frame_column(X)
    return _as_text_column(X)


def _polars_column(series):
    """A polars Series as a 1-D object array of its Python values (null is None).

    Read by polars itself, not through pandas or numpy's casts: an integer column with
    a null gives ``[1, None]``, not ``[1.0, nan]``, and a list column one list per row.
    """
    if series.dtype == _loaded("polars").String:
        return series.to_numpy()  # already objects: str and None
    return np.fromiter(series.to_list(), dtype=object, count=len(series))


def _is_missing(value):
    if value is None:
        return True
    pd = _loaded("pandas")
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value != value


def check_texts(X, *, invalid="error", names=None):
    """Validate a column of texts.

    Parameters
    ----------
    X : list, tuple, 1-D array, pandas or polars Series, or single-column DataFrame of str
        The texts. A bare string is refused (it is almost always a mistake).
    invalid : {"error", "zero"}, default="error"
        Policy for missing (``None``, ``NaN``, ``pd.NA``, polars' null) and blank
        (empty or whitespace-only) texts: ``"error"`` raises naming the rows;
        ``"zero"`` marks them so that the caller returns an all-zero row for them.
        Items that are not strings (numbers, bytes, lists) are always an error.
    names : RowNames, default=None
        How messages name the rows; ``None`` reads them from ``X`` (its index labels
        and column name, see :func:`row_names`).

    Returns
    -------
    texts : list of str
        Every row as a string (``""`` for rows marked invalid).
    valid : ndarray of shape (n_rows,), dtype bool
        ``False`` for the rows the ``"zero"`` policy accepted as blank.

    Raises
    ------
    ValueError
        Naming the offending rows (position, and the index label of a pandas
        object), their column, and what is wrong with them.

    Examples
    --------
    >>> texts, valid = check_texts(["a cat", None], invalid="zero")
    >>> texts, valid.tolist()
    (['a cat', ''], [True, False])
    >>> check_texts(["a cat", "  "])
    Traceback (most recent call last):
    ...
    ValueError: Found an empty or whitespace-only text at row 1. ...
    >>> import pandas as pd
    >>> check_texts(pd.DataFrame({"review": ["a cat", None]}, index=["r16", "r17"]))
    Traceback (most recent call last):
    ...
    ValueError: Found a missing value (None/NaN) at row 1 (index 'r17') in column 'review'. ...
    """
    if invalid not in INVALID_TEXT_POLICIES:
        raise ValueError(f"invalid must be one of {INVALID_TEXT_POLICIES}, got {invalid!r}.")
    if names is None:
        names = row_names(X)
    column = _as_text_column(X)
    if len(column) == 0:
        raise ValueError(
            "Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is required."
        )
    texts, valid = [], np.ones(len(column), dtype=bool)
    missing, blank, wrong_type = [], [], []
    for row, value in enumerate(column):
        if isinstance(value, str):
            if value.strip():
                texts.append(value)
                continue
            blank.append(row)
        elif _is_missing(value):
            missing.append(row)
        else:
            wrong_type.append(row)
        texts.append("")
        valid[row] = False
    if wrong_type:
        by_type = {}
        for row in wrong_type:
            by_type.setdefault(type(column[row]).__name__, []).append(row)
        found = ", ".join(f"{name} at {names.rows(rows)}" for name, rows in by_type.items())
        first = column[wrong_type[0]]
        raise ValueError(
            f"Expected str items, found {found}{names.in_column} (e.g. {_preview(first)}). "
            "Convert the column to text first, e.g. X.astype(str), if that is what you mean."
        )
    if invalid == "error" and (missing or blank):
        problems = []
        if missing:
            problems.append(f"a missing value (None/NaN) at {names.rows(missing)}")
        if blank:
            problems.append(f"an empty or whitespace-only text at {names.rows(blank)}")
        raise ValueError(
            f"Found {' and '.join(problems)}{names.in_column}. The embeddings API rejects "
            "empty inputs; drop or fill those rows, or pass on_invalid_text='zero' to get "
            "all-zero rows."
        )
    _check_encodable(texts, names)
    return texts, valid


def _preview(value):
    # Sliced before repr: the repr of a 10 MB item would be built in full otherwise.
    if isinstance(value, str | bytes | bytearray | list | tuple):
        value = value[:60]
    return f"{value!r:.60}"


def _check_encodable(texts, names):
    """Refuse texts that cannot be sent as UTF-8 (lone surrogates from bad decoding)."""
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        bad = []
        for row, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                bad.append(row)
        raise ValueError(
            f"Found text that is not valid Unicode (a lone surrogate) at {names(bad)}; "
            "it cannot be sent as UTF-8. Decode the source with errors='replace'."
        ) from None
