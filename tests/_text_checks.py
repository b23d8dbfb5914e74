"""sklearn's estimator checks re-expressed for estimators that take raw texts.

``check_estimator`` skips almost every check for an estimator with
``input_tags.two_d_array=False`` (they all feed numeric arrays). Each function here is one
of those checks written with real texts: ``check(estimator, texts, y)``, where ``texts`` is
a list of real review texts and ``y`` their binary labels. ``applies(check, estimator)``
says whether a check is relevant for an estimator (a transformer, a classifier, one that
needs ``fit``), so that ``tests/test_common.py`` runs every relevant check on every text
estimator listed in its table.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.utils import get_tags

TEXT_CHECKS = []


def _is_transformer(estimator):
    return hasattr(estimator, "transform")


def _needs_fit(estimator):
    return get_tags(estimator).requires_fit


def _check(applies_to=lambda estimator: True):
    def register(function):
        function.applies_to = applies_to
        TEXT_CHECKS.append(function)
        return function

    return register


def applies(check, estimator):
    """Whether ``check`` is relevant for ``estimator``."""
    return check.applies_to(estimator)


def _fit(estimator, texts, y):
    return estimator.fit(texts, y) if is_classifier(estimator) else estimator.fit(texts)


def _outputs(estimator, texts):
    """Everything the fitted estimator returns for ``texts``, by method name."""
    methods = ["transform", "predict", "predict_proba", "predict_log_proba", "decision_function"]
    return {
        name: np.asarray(getattr(estimator, name)(texts))
        for name in methods
        if hasattr(estimator, name)
    }


def _assert_same_outputs(first, second, atol=1e-6):
    assert first.keys() == second.keys()
    for name in first:
        if first[name].dtype.kind in "fc":
            np.testing.assert_allclose(first[name], second[name], atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(first[name], second[name], err_msg=name)


@_check()
def check_clone_and_params(estimator, texts, y):
    params = estimator.get_params()
    cloned = clone(estimator)
    assert cloned is not estimator and cloned.get_params().keys() == params.keys()
    for name, value in estimator.get_params(deep=False).items():
        if hasattr(value, "get_params"):
            assert type(cloned.get_params()[name]) is type(value)
        else:
            assert cloned.get_params()[name] == value or value != value, name
    # set_params(**get_params()) changes nothing, nested parameters included.
    before = repr(estimator)
    estimator.set_params(**estimator.get_params(deep=False))
    assert repr(estimator) == before
    nested = [name for name in params if "__" in name]
    for name in nested[:1]:
        estimator.set_params(**{name: params[name]})
    _fit(clone(estimator), texts, y)


@_check()
def check_fit_returns_self_and_is_idempotent(estimator, texts, y):
    assert _fit(estimator, texts, y) is estimator
    first = _outputs(estimator, texts)
    _fit(estimator, texts, y)
    _assert_same_outputs(first, _outputs(estimator, texts))
    # A fit on other data, then on the first again, gives the first outputs back.
    _fit(estimator, texts[::-1], y[::-1])
    _fit(estimator, texts, y)
    _assert_same_outputs(first, _outputs(estimator, texts))


@_check(applies_to=_needs_fit)
def check_not_fitted_error(estimator, texts, y):
    for name in ["predict", "predict_proba", "predict_log_proba", "decision_function"]:
        if hasattr(estimator, name):
            with pytest.raises(NotFittedError):
                getattr(estimator, name)(texts[:2])


@_check(applies_to=lambda estimator: _is_transformer(estimator) and not _needs_fit(estimator))
def check_stateless_transform_needs_no_fit(estimator, texts, y):
    unfitted = np.asarray(clone(estimator).transform(texts))
    np.testing.assert_allclose(unfitted, estimator.fit(texts).transform(texts), atol=1e-6)
    np.testing.assert_allclose(unfitted, clone(estimator).fit_transform(texts), atol=1e-6)


@_check()
def check_pickle_before_and_after_fit(estimator, texts, y):
    unfitted = pickle.loads(pickle.dumps(estimator))
    fitted = _fit(estimator, texts, y)
    expected = _outputs(fitted, texts)
    _assert_same_outputs(expected, _outputs(_fit(unfitted, texts, y), texts))
    _assert_same_outputs(expected, _outputs(pickle.loads(pickle.dumps(fitted)), texts))


@_check()
def check_n_features_in_is_not_defined(estimator, texts, y):
    # One column of texts is not a feature matrix: like sklearn's text vectorizers,
    # the text estimators define no n_features_in_ (nor a wrong one).
    _fit(estimator, texts, y)
    assert not hasattr(estimator, "n_features_in_")


@_check()
def check_input_containers_agree(estimator, texts, y):
    _fit(estimator, texts, y)
    expected = _outputs(estimator, texts)
    for container in (
        np.asarray(texts, dtype=object),
        pd.Series(texts, index=np.arange(100, 100 + len(texts))),
        pd.DataFrame({"review": texts}),
        tuple(texts),
    ):
        _assert_same_outputs(expected, _outputs(estimator, container))
    with pytest.raises(ValueError, match="string"):
        _outputs(estimator, texts[0])
    with pytest.raises(ValueError):
        _outputs(estimator, pd.DataFrame({"a": texts, "b": texts}))
    assert texts == list(texts)  # the input is not mutated


@_check(applies_to=_is_transformer)
def check_transformer_output(estimator, texts, y):
    Z = estimator.fit_transform(texts)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32
    names = estimator.get_feature_names_out()
    assert Z.shape == (len(texts), len(names))
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, atol=1e-5)
    assert np.asarray(estimator.transform(texts[:1])).shape == (1, len(names))


@_check(applies_to=_is_transformer)
def check_set_output_and_feature_names(estimator, texts, y):
    series = pd.Series(texts, name="review", index=np.arange(7, 7 + len(texts)))
    out = estimator.set_output(transform="pandas").fit_transform(series)
    assert isinstance(out, pd.DataFrame)
    assert out.index.tolist() == series.index.tolist()
    assert out.columns.tolist() == [f"review_{i}" for i in range(out.shape[1])]
    assert out.columns.tolist() == estimator.get_feature_names_out().tolist()
    prefix = type(estimator).__name__.lower()
    unnamed = estimator.fit_transform(list(texts))
    assert unnamed.columns.tolist() == [f"{prefix}{i}" for i in range(out.shape[1])]
    estimator.set_output(transform="default")
    assert isinstance(estimator.transform(texts), np.ndarray)


@_check(applies_to=is_classifier)
def check_classifier_output(estimator, texts, y):
    estimator.fit(texts, y)
    assert estimator.classes_.tolist() == np.unique(y).tolist()
    predicted = estimator.predict(texts)
    assert predicted.shape == (len(texts),) and set(predicted) <= set(estimator.classes_)
    proba = estimator.predict_proba(texts)
    assert proba.shape == (len(texts), len(estimator.classes_)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(predicted, estimator.classes_[proba.argmax(axis=1)])
    decision = estimator.decision_function(texts)
    # sklearn's binary convention: one score per text, positive for classes_[1].
    assert decision.shape == (len(texts),)
    np.testing.assert_array_equal(predicted, estimator.classes_[(decision > 0).astype(int)])
    # Classes need not be 0/1: strings work the same way, sorted (labels=None: class
    # names taken from y, for a classifier that describes its classes).
    names = np.where(y == 1, "yes", "no")
    if "labels" in estimator.get_params():
        estimator.set_params(labels=None)
    assert estimator.fit(texts, names).classes_.tolist() == ["no", "yes"]
    assert set(estimator.predict(texts)) <= {"no", "yes"}


@_check(applies_to=is_classifier)
def check_classifier_scorers(estimator, texts, y):
    scoring = ["roc_auc", "average_precision", "neg_log_loss", "balanced_accuracy", "accuracy"]
    scores = cross_validate(
        estimator, texts, y, cv=StratifiedKFold(2), scoring=scoring, error_score="raise"
    )
    for name in scoring:
        assert np.isfinite(scores[f"test_{name}"]).all(), name
    assert (scores["test_roc_auc"] >= 0).all() and (scores["test_roc_auc"] <= 1).all()
    assert estimator.score(*_fit_and_return(estimator, texts, y)) >= 0


def _fit_and_return(estimator, texts, y):
    estimator.fit(texts, y)
    return texts, y
