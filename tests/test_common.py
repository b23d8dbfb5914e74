"""Every public estimator and the scikit-learn common checks it runs, in one table.

Estimators taking numbers run all of sklearn's checks (``parametrize_with_checks``).
Estimators taking raw texts have ``input_tags.two_d_array=False``, with which
``check_estimator`` runs one check and silently skips the rest (they all feed numeric
arrays), so they run an explicit list of the data-free checks instead.

Estimators taking raw texts also run our own suite of sklearn's checks re-expressed with
real texts (``TEXT_CHECKS`` below: clone/get/set params, fit idempotence, not-fitted
errors, pickling, ``n_features_in_``, output shapes and dtypes, input containers,
classifier and scorer behaviour, ``set_output``, feature names), each applied where the
estimator's methods and tags make it relevant. A row gives ``make(request)``, which builds
the estimator to check (``request`` reaches fixtures, such as the fake OpenAI server).

To add checks for an estimator, extend its row's ``checks``; to add an estimator, add a
row (``test_table_lists_every_public_estimator`` fails until you do).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.utils import estimator_checks, get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

import skembed
from skembed import (
    CosineNearestNeighbors,
    LinearEmbeddingAdapter,
    LocalEmbeddingTransformer,
    OpenAIEmbeddingTransformer,
    ZeroShotEmbeddingClassifier,
)

# All of sklearn's checks, through parametrize_with_checks (numeric input).
ALL_CHECKS = "all"

# The common checks that feed no data (for the estimators taking raw texts).
TEXT_ESTIMATOR_CHECKS = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_mixin_order,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
]


@dataclass(frozen=True)
class Row:
    """A public estimator, the instances to check, and which checks they run."""

    estimator: type
    instances: list
    checks: str | list  # ALL_CHECKS, or a list of check functions called (name, estimator)
    expected_failed_checks: dict = field(default_factory=dict)  # check name -> why
    # Text estimators: request -> the estimator the TEXT_CHECKS run on, with real texts.
    make: Callable | None = None
    label: str = ""  # tells apart two rows of one estimator (another bundled model)


TABLE = [
    Row(LinearEmbeddingAdapter, [LinearEmbeddingAdapter()], ALL_CHECKS),
    Row(
        CosineNearestNeighbors,
        [
            CosineNearestNeighbors(),
            CosineNearestNeighbors(algorithm="hnsw", random_state=0),
            CosineNearestNeighbors(storage="int8"),
            CosineNearestNeighbors(algorithm="hnsw", storage="int8"),
        ],
        ALL_CHECKS,
    ),
    Row(
        OpenAIEmbeddingTransformer,
        [OpenAIEmbeddingTransformer()],
        TEXT_ESTIMATOR_CHECKS,
        make=lambda request: request.getfixturevalue("openai_embedder")(dimensions=16),
    ),
    Row(
        LocalEmbeddingTransformer,
        [LocalEmbeddingTransformer()],
        TEXT_ESTIMATOR_CHECKS,
        make=lambda request: LocalEmbeddingTransformer(),
    ),
    Row(
        LocalEmbeddingTransformer,
        [LocalEmbeddingTransformer(model="use-multilingual-v3")],
        TEXT_ESTIMATOR_CHECKS,
        make=lambda request: LocalEmbeddingTransformer(model="use-multilingual-v3"),
        label="use-multilingual-v3",
    ),
    Row(
        ZeroShotEmbeddingClassifier,
        [ZeroShotEmbeddingClassifier(labels=["a", "b"])],
        TEXT_ESTIMATOR_CHECKS,
        make=lambda request: ZeroShotEmbeddingClassifier(
            labels={
                0: "A negative review: I would not recommend it.",
                1: "A positive review: I love it and recommend it.",
            },
            embedder=LocalEmbeddingTransformer(),
        ),
    ),
]


def _row_of(estimator):
    return next(row for row in TABLE if type(estimator) is row.estimator)


def _id(estimator):
    return re.sub(r"\s", "", repr(estimator))


@parametrize_with_checks(
    [instance for row in TABLE if row.checks == ALL_CHECKS for instance in row.instances],
    expected_failed_checks=lambda estimator: _row_of(estimator).expected_failed_checks,
)
def test_numeric_input_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    ("estimator", "check"),
    [
        pytest.param(instance, check, id=f"{_id(instance)}-{check.__name__}")
        for row in TABLE
        if row.checks != ALL_CHECKS
        for instance in row.instances
        for check in row.checks
    ],
)
def test_text_input_estimator(estimator, check):
    # A fresh copy per check, as each check once built its own instance.
    check(type(estimator).__name__, clone(estimator))


def _public_estimators():
    modules = [skembed] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(skembed.__path__, "skembed.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return {
        obj
        for module in modules
        for name in getattr(module, "__all__", ())
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, BaseEstimator)
    }


def test_table_lists_every_public_estimator():
    listed = [row.estimator for row in TABLE]
    rows = [(row.estimator, row.label) for row in TABLE]
    assert len(rows) == len(set(rows)), "an estimator has two rows with one label"
    assert set(listed) == _public_estimators()
    for row in TABLE:
        assert row.instances and all(type(e) is row.estimator for e in row.instances), row


def test_each_row_runs_the_checks_its_input_allows():
    # The data-free list is for estimators check_estimator would mostly skip, not a way
    # to run fewer checks on one that takes numbers.
    for row in TABLE:
        for instance in row.instances:
            two_d_array = get_tags(instance).input_tags.two_d_array
            assert two_d_array == (row.checks == ALL_CHECKS), (row.estimator, two_d_array)
        if row.checks != ALL_CHECKS:
            assert not row.expected_failed_checks, "list only the checks that pass"
            assert row.make is not None, f"{row.estimator.__name__} needs make= for TEXT_CHECKS"


from tests._text_checks import TEXT_CHECKS, applies  # noqa: E402


@pytest.fixture(scope="module")
def reviews():
    """16 real clothing reviews (both classes of ``recommended_ind``) and their labels."""
    from skembed.datasets import load_clothing_reviews

    frame = load_clothing_reviews(n_samples=60, random_state=3).dropna(subset=["review_text"])
    frame = pd.concat(
        [frame[frame["recommended_ind"] == 1][:10], frame[frame["recommended_ind"] == 0][:6]]
    )
    return frame["review_text"].tolist(), frame["recommended_ind"].to_numpy()


@pytest.mark.parametrize(
    ("row", "check"),
    [
        pytest.param(
            row,
            check,
            id="-".join(filter(None, [row.estimator.__name__, row.label, check.__name__])),
        )
        for row in TABLE
        if row.make is not None
        for check in TEXT_CHECKS
        if applies(check, row.instances[0])
    ],
)
def test_text_estimator_on_real_texts(row, check, request, reviews):
    texts, y = reviews
    check(row.make(request), texts, y)
