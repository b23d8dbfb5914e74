"""ZeroShotEmbeddingClassifier: the sklearn contract, and the cookbook's effect on BBC News."""

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer
from skembed import ZeroShotEmbeddingClassifier as ZeroShot
from skembed.datasets import load_bbc_news

TOPICS = ["business", "entertainment", "politics", "sport", "tech"]
TEMPLATE = "This is a news article about {}."


@pytest.fixture(scope="module")
def bbc():
    # A stratified subset keeps the suite fast; the session cache makes every later
    # embedding of these articles free.
    return load_bbc_news(n_samples=500, random_state=0)


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbeddingTransformer()


def accuracy(classifier, bbc):
    return float(np.mean(classifier.predict(bbc["text"]) == bbc["topic"]))


@pytest.mark.slow
def test_bbc_zero_shot_accuracy_and_transductive_gain(bbc, embedder):
    plain = ZeroShot(labels=TOPICS, template=TEMPLATE, embedder=embedder, transductive=False)
    adapted = ZeroShot(labels=TOPICS, template=TEMPLATE, embedder=embedder, transductive=True)
    bare = ZeroShot(labels=TOPICS, embedder=embedder, transductive=False)
    described = ZeroShot(
        labels={
            "business": "A news article about business, companies, markets and the economy.",
            "entertainment": "A news article about film, music, television and celebrities.",
            "politics": "A news article about politics, government, elections and parliament.",
            "sport": "A news article about sport: football, rugby, tennis and athletics.",
            "tech": "A news article about technology, computers, the internet and phones.",
        },
        embedder=embedder,
        transductive=False,
    )
    scores = {
        name: accuracy(model.fit(bbc["text"]), bbc)
        for name, model in [
            ("plain", plain),
            ("adapted", adapted),
            ("bare", bare),
            ("described", described),
        ]
    }
    # Measured on all 2,225 articles: see docs/zero_shot.rst. On this 500-article
    # subset the template gives ~0.84, one-word names ~0.77, descriptions ~0.87 and
    # the transductive fit(X) ~0.94.
    assert scores["plain"] >= 0.82
    assert scores["adapted"] >= 0.92
    assert scores["bare"] < scores["plain"] < scores["described"]


@pytest.mark.slow
def test_few_shot_fit_uses_labels_and_works_in_cross_validation(bbc, embedder):
    model = ZeroShot(labels=TOPICS, template=TEMPLATE, embedder=embedder)
    scores = cross_val_score(model, bbc["text"], bbc["topic"], cv=3)
    assert scores.mean() >= 0.93


def test_probabilities_sum_to_one_and_follow_the_scores(bbc, embedder):
    model = ZeroShot(labels=TOPICS, template=TEMPLATE, embedder=embedder).fit(bbc["text"][:50])
    proba = model.predict_proba(bbc["text"][:20])
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    scores = model.decision_function(bbc["text"][:20])
    np.testing.assert_array_equal(proba.argmax(axis=1), scores.argmax(axis=1))
    sharper = clone(model).set_params(temperature=0.01).fit(bbc["text"][:50])
    assert sharper.predict_proba(bbc["text"][:20]).max(axis=1).mean() > proba.max(axis=1).mean()
    assert list(model.classes_) == TOPICS


def test_grid_search_over_templates_and_temperature_in_a_pipeline(bbc, embedder):
    subset = bbc.iloc[:150]
    pipeline = Pipeline([("zero_shot", ZeroShot(labels=TOPICS, embedder=embedder))])
    search = GridSearchCV(
        pipeline,
        {"zero_shot__template": ["{}", TEMPLATE], "zero_shot__temperature": [0.02, 0.1]},
        cv=3,
    ).fit(subset["text"], subset["topic"])
    assert search.best_score_ > 0.9


def test_several_descriptions_per_class_are_averaged(embedder):
    model = ZeroShot(
        labels={"pets": ["a cat", "a dog"], "money": ["a bank", "the stock market"]},
        embedder=embedder,
        transductive=False,
    ).fit(["x"])
    vectors = embedder.transform(["a cat", "a dog"])
    mean = vectors.mean(axis=0)
    assert model.classes_.tolist() == ["money", "pets"]  # sorted; rows follow classes_
    np.testing.assert_allclose(model.label_embeddings_[1], mean / np.linalg.norm(mean), atol=1e-6)
    assert model.predict(["my puppy", "interest rates went up"]).tolist() == ["pets", "money"]


@pytest.mark.parametrize(
    ("params", "y", "message"),
    [
        ({"labels": ["only"]}, None, "at least 2 classes"),
        ({"labels": None}, None, "pass y to fit"),
        ({"labels": ["a", "b"], "template": "no slot"}, None, "must contain"),
        ({"labels": {"a": "", "b": "x"}}, None, r"labels\['a'\]"),
        ({"labels": ["a", "b"]}, ["a", "c"], r"classes \['c'\]"),
    ],
)
def test_misconfiguration_is_named(embedder, params, y, message):
    with pytest.raises(ValueError, match=message):
        ZeroShot(embedder=embedder, **params).fit(["first text", "second text"], y)


def test_default_embedder_is_openai_and_uses_the_fake_server(fake_server):
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=None)
    model = ZeroShot(labels=["x", "y"], embedder=embedder).fit(["a", "b"])
    assert model.predict(["a"]).shape == (1,)
    assert isinstance(ZeroShot()._embedder(), OpenAIEmbeddingTransformer)


# -- labels that would be one class of classes_ ------------------------------------------

EMBEDDED = []  # texts every _RecordingEmbedder (and its clones) was asked to embed


class _RecordingEmbedder(TransformerMixin, BaseEstimator):
    """Unit vectors from a hash of each text; records what it embeds."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        EMBEDDED.extend(X)
        seeds = [int.from_bytes(hashlib.blake2b(t.encode()).digest()[:8], "little") for t in X]
        rows = np.stack([np.random.default_rng(s).standard_normal(8) for s in seeds])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


# Numbers, booleans and texts that spell them: every kind of pair numpy merges.
LABEL_POOL = [0, 1, 2, 1.0, 1.5, 2.0, True, False, "0", "1", "1.0", "1.5", "True", "a", "b"]


def _merged_pairs(labels):
    """Pairs of labels that differ as values but are one element of ``np.array(labels)``."""
    return _pairs(labels, lambda a, b, form_a, form_b: a != b and form_a == form_b)


def _split_pairs(labels):
    """Pairs of equal labels (``1`` and ``1.0``) that are two elements of the array."""
    return _pairs(labels, lambda a, b, form_a, form_b: a == b and form_a != form_b)


def _pairs(labels, test):
    forms = np.array(labels).tolist()
    return [
        (a, b)
        for i, a in enumerate(labels)
        for j, b in enumerate(labels)
        if i < j and test(a, b, forms[i], forms[j])
    ]


@settings(max_examples=150, deadline=None)
@given(
    labels=st.lists(st.sampled_from(LABEL_POOL), min_size=2, max_size=6),
    as_dict=st.booleans(),
)
def test_labels_are_one_class_each_or_refused_by_name(labels, as_dict):
    if as_dict:
        labels = {label: f"a text about {label!r}" for label in labels}  # equal keys merge
    names = list(labels)
    merged = _merged_pairs(names)
    repeated = len(names) != len({repr(n): n for n in names}) or any(
        a == b for i, a in enumerate(names) for b in names[i + 1 :]
    )
    model = ZeroShot(labels=labels, embedder=_RecordingEmbedder(), transductive=False)
    del EMBEDDED[:]
    if merged or repeated or len(names) < 2:
        with pytest.raises(ValueError, match="^labels ") as info:
            model.fit(["a first text", "a second text"])
        message = str(info.value)
        for a, b in merged:  # each pair numpy would merge is named, both labels
            assert repr(a) in message and repr(b) in message
        if not merged and len(names) >= 2:
            assert "more than once" in message
        assert EMBEDDED == []  # refused before anything is embedded
        return
    model.fit(["a first text", "a second text"])
    # One class per label, distinct, sorted as np.unique sorts them (issue 16).
    assert len(np.unique(model.classes_)) == len(names)
    assert model.classes_.tolist() == np.unique(np.array(names)).tolist()
    assert set(model.predict(["a third text"]).tolist()) <= set(model.classes_.tolist())


@settings(max_examples=150, deadline=None)
@given(y=st.lists(st.sampled_from(LABEL_POOL), min_size=3, max_size=8))
def test_targets_are_one_class_per_label_or_refused_by_name(y):
    merged, split = _merged_pairs(y), _split_pairs(y)
    X = [f"text {i}" for i in range(len(y))]
    model = ZeroShot(embedder=_RecordingEmbedder())
    del EMBEDDED[:]
    if merged or split:
        with pytest.raises(ValueError, match="^y has (different|equal) labels") as info:
            model.fit(X, y)
        # The labels at fault are named (for each class, the first two at least).
        message = str(info.value)
        assert any(repr(a) in message and repr(b) in message for a, b in merged + split)
        assert EMBEDDED == []
        return
    try:
        model.fit(X, y)
    except ValueError as error:  # sklearn's own refusals (a continuous y, one class)
        assert "become" not in str(error)
        return
    # One class per distinct label (1, 1.0 and True are one label).
    assert len(model.classes_) == len(set(y))


@pytest.mark.parametrize(
    ("labels", "y", "named"),
    [
        ([1, "1"], None, ["1", "'1'"]),
        ({1: "one", "1": "uno"}, None, ["1", "'1'"]),
        ([True, "True", "x"], None, ["True", "'True'"]),
        ([1, 1.0], None, ["more than once", "1 and 1.0"]),
        ([True, 1], None, ["more than once", "True and 1"]),
        (["1", "2"], [1, "1"], ["y has", "1 and '1'"]),
        (None, [1, "1", 2], ["y has", "1 and '1'"]),
        (None, ("True", True, "x"), ["y has", "'True' and True"]),
        (None, [1, 1.0, "x"], ["y has equal labels", "1 and 1.0", "'1' and '1.0'"]),
        # A NaN among texts: the class 'nan' in the array, a missing label as given.
        (["sport", "finance"], ["sport", float("nan")], ["missing label", "row 1"]),
    ],
)
def test_labels_that_become_one_class_are_refused_before_any_request(fake_server, labels, y, named):
    embedder = OpenAIEmbeddingTransformer(base_url=fake_server.base_url, cache=None)
    model = ZeroShot(labels=labels, embedder=embedder)
    X = ["a goal", "a bond", "a film"][: len(y) if y is not None else 2]
    with pytest.raises(ValueError) as info:
        model.fit(X, y)
    for part in named:
        assert part in str(info.value)
    assert fake_server.stats(texts=False)["requests"] == 0
