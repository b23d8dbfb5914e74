"""Input checks shared by every estimator: what counts as a text, what counts as a vector."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = ["INVALID_TEXT_POLICIES", "check_texts", "describe_rows"]

#: What to do with a missing or blank text: raise, or give it an all-zero row.
INVALID_TEXT_POLICIES = ("error", "zero")


def describe_rows(rows, limit=10):
    """Format row indices for an error message: ``"rows [3, 17]"`` or ``"row 3"``.

    Examples
    --------
    >>> describe_rows([3])
    'row 3'
    >>> describe_rows(range(20), limit=3)
    'rows [0, 1, 2, ...] (20 in all)'
    """
    rows = [int(r) for r in rows]
    if len(rows) == 1:
        return f"row {rows[0]}"
    shown = ", ".join(str(r) for r in rows[:limit])
    if len(rows) > limit:
        return f"rows [{shown}, ...] ({len(rows)} in all)"
    return f"rows [{shown}]"


def _as_text_column(X):
    """Return ``X`` as a 1-D object array, or raise naming what was wrong with its shape."""
    if isinstance(X, str | bytes):
        raise ValueError(
            "Iterable over raw text documents expected, string object received. "
            "Wrap a single text in a list: transform([text])."
        )
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise ValueError(
                "Expected a single text column, got a DataFrame with "
                f"{X.shape[1]} columns {list(X.columns)[:5]}. Select the text column, "
                "e.g. with a ColumnTransformer."
            )
        return X.iloc[:, 0].to_numpy(dtype=object)
    if isinstance(X, pd.Series):
        return X.to_numpy(dtype=object)
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


def _is_missing(value):
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value != value


def check_texts(X, *, invalid="error"):
    """Validate a column of texts.

    Parameters
    ----------
    X : list, tuple, 1-D array, pandas Series or single-column DataFrame of str
        The texts. A bare string is refused (it is almost always a mistake).
    invalid : {"error", "zero"}, default="error"
        Policy for missing (``None``, ``NaN``, ``pd.NA``) and blank (empty or
        whitespace-only) texts: ``"error"`` raises naming the rows; ``"zero"`` marks them
        so that the caller returns an all-zero row for them. Items that are not strings
        (numbers, bytes, lists) are always an error.

    Returns
    -------
    texts : list of str
        Every row as a string (``""`` for rows marked invalid).
    valid : ndarray of shape (n_rows,), dtype bool
        ``False`` for the rows the ``"zero"`` policy accepted as blank.

    Raises
    ------
    ValueError
        Naming the offending rows and what is wrong with them.

    Examples
    --------
    >>> texts, valid = check_texts(["a cat", None], invalid="zero")
    >>> texts, valid.tolist()
    (['a cat', ''], [True, False])
    >>> check_texts(["a cat", "  "])
    Traceback (most recent call last):
    ...
    ValueError: Found an empty or whitespace-only text at row 1. ...
    """
    if invalid not in INVALID_TEXT_POLICIES:
        raise ValueError(f"invalid must be one of {INVALID_TEXT_POLICIES}, got {invalid!r}.")
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
        found = ", ".join(f"{name} at {describe_rows(rows)}" for name, rows in by_type.items())
        first = column[wrong_type[0]]
        raise ValueError(
            f"Expected str items, found {found} (e.g. {_preview(first)}). Convert the "
            "column to text first, e.g. X.astype(str), if that is what you mean."
        )
    if invalid == "error" and (missing or blank):
        problems = []
        if missing:
            problems.append(f"a missing value (None/NaN) at {describe_rows(missing)}")
        if blank:
            problems.append(f"an empty or whitespace-only text at {describe_rows(blank)}")
        raise ValueError(
            f"Found {' and '.join(problems)}. The embeddings API rejects empty inputs; "
            "drop or fill those rows, or pass on_invalid_text='zero' to get all-zero rows."
        )
    _check_encodable(texts)
    return texts, valid


def _preview(value):
    # Sliced before repr: the repr of a 10 MB item would be built in full otherwise.
    if isinstance(value, str | bytes | bytearray | list | tuple):
        value = value[:60]
    return f"{value!r:.60}"


def _check_encodable(texts):
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
            f"Found text that is not valid Unicode (a lone surrogate) at {describe_rows(bad)}; "
            "it cannot be sent as UTF-8. Decode the source with errors='replace'."
        ) from None
