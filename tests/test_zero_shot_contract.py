"""ZeroShotEmbeddingClassifier under sklearn's own scorers and meta-estimators, on real texts.

Scorers read ``classes_`` as sorted and a binary ``decision_function`` as the 1-D score of
``classes_[1]``; these tests run the real scorers, ``cross_validate``,
``CalibratedClassifierCV`` and ``GridSearchCV`` rather than our own calls, binary and
multi-class, with the labels given in either order.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from skembed import LocalEmbeddingTransformer
from skembed import ZeroShotEmbeddingClassifier as ZeroShot
from skembed.datasets import load_bbc_news, load_clothing_reviews

BINARY_SCORERS = ["roc_auc", "average_precision", "neg_log_loss", "balanced_accuracy"]
MULTICLASS_SCORERS = ["roc_auc_ovr", "neg_log_loss", "balanced_accuracy", "accuracy"]
SENTIMENT = {0: "A negative review: I do not recommend it.", 1: "A positive review: I love it."}
TOPICS = ["business", "entertainment", "politics", "sport", "tech"]


@pytest.fixture(scope="module")
def embedder():
    # The session's persistent cache: each text is embedded once for the whole module.
    return LocalEmbeddingTransformer()


@pytest.fixture(scope="module")
def reviews(embedder):
    """120 real clothing reviews, recommended (1) or not (0), with their imbalance."""
    frame = load_clothing_reviews(n_samples=160, random_state=1).dropna(subset=["review_text"])
    frame = frame.iloc[:120].reset_index(drop=True)
    embedder.transform(frame["review_text"])  # warm the cache once
    return frame["review_text"], frame["recommended_ind"].to_numpy()


@pytest.fixture(scope="module")
def news(embedder):
    """100 BBC headlines over the five topics."""
    frame = load_bbc_news(n_samples=100, random_state=0)
    embedder.transform(frame["headline"])
    return frame["headline"], frame["topic"].to_numpy()


def _reversed(labels):
    return dict(reversed(list(labels.items())))


def test_classes_are_sorted_and_descriptions_follow_their_class(embedder, reviews):
    X, _ = reviews
    forward = ZeroShot(labels=SENTIMENT, embedder=embedder).fit(X[:40])
    backward = ZeroShot(labels=_reversed(SENTIMENT), embedder=embedder).fit(X[:40])
    for model in (forward, backward):
        assert model.classes_.tolist() == [0, 1]
        assert list(model.descriptions_) == [0, 1]
        assert model.descriptions_[1] == [SENTIMENT[1]]
        np.testing.assert_allclose(
            model.label_embeddings_, embedder.transform([SENTIMENT[0], SENTIMENT[1]]), atol=1e-6
        )
    np.testing.assert_allclose(forward.predict_proba(X), backward.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(forward.predict(X), backward.predict(X))
    names = ZeroShot(labels=["tech", "business", "sport"], embedder=embedder).fit(X[:10])
    assert names.classes_.tolist() == ["business", "sport", "tech"]
    assert list(names.descriptions_) == ["business", "sport", "tech"]


def test_binary_decision_function_is_the_score_of_the_second_class(embedder, reviews):
    X, _ = reviews
    model = ZeroShot(labels=_reversed(SENTIMENT), embedder=embedder).fit(X)
    decision = model.decision_function(X)
    proba = model.predict_proba(X)
    assert decision.shape == (len(X),) and proba.shape == (len(X), 2)
    # Positive decision <=> classes_[1] predicted <=> its probability above one half.
    np.testing.assert_array_equal(model.predict(X), model.classes_[(decision > 0).astype(int)])
    np.testing.assert_array_equal(decision > 0, proba[:, 1] > 0.5)
    # The two rank the texts identically (proba[:, 1] is a sigmoid of decision / T).
    np.testing.assert_allclose(
        proba[:, 1], 1 / (1 + np.exp(-decision.astype(np.float64) / model.temperature)), atol=1e-6
    )
    np.testing.assert_allclose(np.exp(model.predict_log_proba(X)), proba, atol=1e-12)


def test_multiclass_decision_function_has_a_column_per_sorted_class(embedder, news):
    X, _ = news
    shuffled = ["tech", "sport", "business", "politics", "entertainment"]
    model = ZeroShot(labels=shuffled, template="News about {}.", embedder=embedder).fit(X)
    assert model.classes_.tolist() == TOPICS
    scores = model.decision_function(X)
    assert scores.shape == (len(X), 5)
    np.testing.assert_array_equal(model.classes_[scores.argmax(axis=1)], model.predict(X))
    np.testing.assert_array_equal(model.predict_proba(X).argmax(axis=1), scores.argmax(axis=1))


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_binary_scorers_through_cross_validate(embedder, reviews, order):
    X, y = reviews
    labels = SENTIMENT if order == "forward" else _reversed(SENTIMENT)
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    results = {}
    for transductive in (False, True):
        model = ZeroShot(labels=labels, embedder=embedder, transductive=transductive)
        scores = cross_validate(model, X, y, cv=cv, scoring=BINARY_SCORERS, error_score="raise")
        results[transductive] = scores
        for name in BINARY_SCORERS:
            assert np.isfinite(scores[f"test_{name}"]).all(), (name, scores)
        # Sentiment of real reviews, from two descriptions: far better than chance.
        assert scores["test_roc_auc"].mean() > 0.75
        assert scores["test_average_precision"].mean() > y.mean() + 0.05
        assert scores["test_balanced_accuracy"].mean() > 0.6
    # fit(X, y) uses the labels, so the transductive switch does not matter here.
    np.testing.assert_allclose(results[False]["test_roc_auc"], results[True]["test_roc_auc"])


def test_scores_do_not_depend_on_the_order_of_labels(embedder, reviews):
    X, y = reviews
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    by_order = [
        cross_validate(
            ZeroShot(labels=labels, embedder=embedder), X, y, cv=cv, scoring=BINARY_SCORERS
        )
        for labels in (SENTIMENT, _reversed(SENTIMENT))
    ]
    for name in BINARY_SCORERS:
        np.testing.assert_allclose(
            by_order[0][f"test_{name}"], by_order[1][f"test_{name}"], atol=1e-9
        )
    # And predict_proba's second column is the positive class's, whatever the order.
    model = ZeroShot(labels=_reversed(SENTIMENT), embedder=embedder, transductive=False).fit(X)
    assert roc_auc_score(y, model.predict_proba(X)[:, 1]) > 0.7
    assert roc_auc_score(y, model.decision_function(X)) > 0.7


def test_multiclass_scorers_through_cross_validate(embedder, news):
    X, y = news
    model = ZeroShot(labels=TOPICS, template="News about {}.", embedder=embedder)
    scores = cross_validate(
        model, X, y, cv=StratifiedKFold(3), scoring=MULTICLASS_SCORERS, error_score="raise"
    )
    for name in MULTICLASS_SCORERS:
        assert np.isfinite(scores[f"test_{name}"]).all(), (name, scores)
    assert scores["test_roc_auc_ovr"].mean() > 0.8
    assert scores["test_balanced_accuracy"].mean() > 0.5


@pytest.mark.parametrize("data", ["reviews", "news"])
def test_calibrated_classifier_cv(embedder, data, request):
    X, y = request.getfixturevalue(data)
    labels = _reversed(SENTIMENT) if data == "reviews" else TOPICS[::-1]
    base = ZeroShot(labels=labels, embedder=embedder, transductive=False)
    calibrated = CalibratedClassifierCV(base, cv=3, method="sigmoid").fit(X, y)
    proba = calibrated.predict_proba(X)
    assert calibrated.classes_.tolist() == sorted(set(y.tolist()))
    assert proba.shape == (len(X), len(calibrated.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    # Calibration on real labels keeps a useful ranking.
    if data == "reviews":
        assert roc_auc_score(y, proba[:, 1]) > 0.75
    else:
        assert roc_auc_score(y, proba, multi_class="ovr") > 0.8


def test_grid_search_over_labels_and_template_with_a_probability_scorer(embedder, reviews):
    X, y = reviews
    grid = {
        "labels": [SENTIMENT, _reversed(SENTIMENT), {0: "bad", 1: "good"}],
        "template": ["{}", "Review: {}"],
        "transductive": [False],
    }
    search = GridSearchCV(
        ZeroShot(embedder=embedder), grid, scoring="roc_auc", cv=3, error_score="raise"
    )
    search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # The two orders of the same descriptions are the same model: same score.
    means = search.cv_results_["mean_test_score"]
    np.testing.assert_allclose(means[0], means[2], atol=1e-9)  # template "{}" then "Review: {}"
    assert search.best_score_ > 0.75
    assert search.best_estimator_.classes_.tolist() == [0, 1]


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba"])
def test_not_fitted_error_before_fit(method):
    model = ZeroShot(labels=["a", "b"], embedder=LocalEmbeddingTransformer(cache=None))
    with pytest.raises(NotFittedError):
        getattr(model, method)(["a text"])
    with pytest.raises(NotFittedError):
        clone(model).decision_function(["a text"])


def test_default_fit_without_labels_keeps_the_plain_descriptions(embedder, reviews, news):
    # The transductive adaptation follows the texts' dominant clusters (a review's
    # product, not its sentiment), so it is opt-in: the default fit(X) can never be worse
    # than the descriptions themselves.
    for X, labels in ((reviews[0], SENTIMENT), (news[0], TOPICS)):
        default = ZeroShot(labels=labels, embedder=embedder).fit(X)
        np.testing.assert_array_equal(default.prototypes_, default.label_embeddings_)
        adapted = ZeroShot(labels=labels, embedder=embedder, transductive=True).fit(X)
        assert not np.allclose(adapted.prototypes_, adapted.label_embeddings_)
