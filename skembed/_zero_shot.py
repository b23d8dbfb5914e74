"""ZeroShotEmbeddingClassifier: classify texts by cosine similarity to label descriptions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.extmath import softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._math import normalize_rows
from ._sklearn_compat import HasMethods, Interval, _fit_context
from ._validation import _is_missing, row_names, text_column

__all__ = ["ZeroShotEmbeddingClassifier"]


class ZeroShotEmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """Classify texts by their cosine similarity to embedded descriptions of the classes.

    Each class is described in words (one or several descriptions, or its name put
    into a ``template``); the descriptions and the texts are embedded by the same
    ``embedder``, and a text goes to the class whose *prototype* is most similar.
    No labelled data is needed (the OpenAI cookbook's zero-shot classification), but
    the classifier uses what it is given:

    - ``fit(X)`` with unlabelled texts keeps the pure description vectors by default.
      With ``transductive=True`` (opt-in) it adapts the prototypes to the texts:
      starting from the description vectors, a few soft k-means steps move each
      prototype towards the texts it attracts, keeping the description as an anchor.
      This helps when the texts cluster by class (news topics), and hurts when they
      cluster by something else (product reviews cluster by product, not by
      sentiment), so it is not the default.
    - ``fit(X, y)`` with labels blends each class's description vector with the
      centroid of its labelled texts (few-shot), weighted by ``label_weight``.

    Read more in the :ref:`User Guide <zero_shot>`.

    Parameters
    ----------
    labels : dict or list, default=None
        A mapping ``class -> description`` (or ``class -> [descriptions]``), or a list of
        class names, each put into ``template``. ``None`` takes the class names from
        ``y`` at ``fit`` (then ``y`` is required). Labels that would be one class of
        ``classes_``, a numpy array of one type, are refused: ``1`` and ``"1"`` (both
        ``'1'`` there), or ``1`` and ``1.0``; so are such labels in ``y``.
    template : str, default="{}"
        Format string with one ``{}``, applied to class names (not to descriptions
        given in a mapping), e.g. ``"This is a news article about {}."``.
    embedder : transformer, default=None
        Any skembed embedding transformer (it must map a list of texts to unit-norm
        rows). ``None`` means ``OpenAIEmbeddingTransformer()``. Labels and inputs share
        it, and so its cache.
    temperature : float, default=0.05
        Softmax temperature of ``predict_proba`` over cosine similarities; lower is
        more confident. It changes no prediction.
    transductive : bool, default=False
        Whether ``fit(X)`` without labels adapts the prototypes to ``X`` (see
        above): opt-in, since it can make results worse than the plain
        descriptions on texts whose main structure is not the classes'.
    n_iter : int, default=5
        Soft k-means steps of the transductive adaptation.
    label_weight : float, default=0.5
        Weight of the description vector against the texts' centroid, in both the
        transductive steps and the few-shot blend (1 keeps the descriptions only).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted as :func:`numpy.unique` sorts them (whatever the order
        of ``labels``); the columns of ``predict_proba`` follow this order.
    embedder_ : transformer
        The fitted clone of ``embedder``.
    label_embeddings_ : ndarray of shape (n_classes, n_dimensions)
        Unit-norm mean of each class's description vectors.
    prototypes_ : ndarray of shape (n_classes, n_dimensions)
        Unit-norm vectors the texts are compared with (equal to
        ``label_embeddings_`` without adaptation).
    descriptions_ : dict
        The texts embedded for each class.

    See Also
    --------
    LocalEmbeddingTransformer : A key-free embedder for this classifier.

    Examples
    --------
    >>> from skembed import LocalEmbeddingTransformer, ZeroShotEmbeddingClassifier
    >>> classifier = ZeroShotEmbeddingClassifier(
    ...     labels=["sport", "finance"], template="A text about {}.",
    ...     embedder=LocalEmbeddingTransformer(cache=None))
    >>> classifier.fit(["The striker scored twice.", "Shares rose 3%."]).predict(
    ...     ["The goalkeeper saved a penalty.", "The bank cut interest rates."]).tolist()
    ['sport', 'finance']
    """

    _parameter_constraints: dict = {
        "labels": [dict, list, None],
        "template": [str],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "transductive": ["boolean"],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "label_weight": [Interval(Real, 0, 1, closed="both")],
    }

    def __init__(
        self,
        *,
        labels=None,
        template="{}",
        embedder=None,
        temperature=0.05,
        transductive=False,
        n_iter=5,
        label_weight=0.5,
    ):
        self.labels = labels
        self.template = template
        self.embedder = embedder
        self.temperature = temperature
        self.transductive = transductive
        self.n_iter = n_iter
        self.label_weight = label_weight

    def _descriptions(self, y):
        """Class -> list of texts to embed, from ``labels`` (or ``y``'s classes)."""
        if "{}" not in self.template:
            raise ValueError(f"template must contain '{{}}', got {self.template!r}.")
        labels = self.labels
        if labels is None:
            if y is None:
                raise ValueError(
                    "labels=None takes the class names from y: pass y to fit, or give "
                    "labels=[...] or {class: description}."
                )
            labels = sorted(set(y.tolist()))
        # Each label must be a class of its own once ``classes_`` is an array.
        _check_one_class_per_label(list(labels), "labels", repeats=False)
        if isinstance(labels, Mapping):
            descriptions = {
                c: [d] if isinstance(d, str) else list(d) if isinstance(d, list | tuple) else []
                for c, d in labels.items()
            }
        else:
            descriptions = {c: [self._fill_template(c)] for c in labels}
        if len(descriptions) < 2:
            raise ValueError(f"labels must name at least 2 classes, got {len(descriptions)}.")
        for c, texts in descriptions.items():
            if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise ValueError(f"labels[{c!r}] must be a non-empty text or list of texts.")
        return descriptions

    def _fill_template(self, name):
        try:
            return self.template.format(name)
        except (IndexError, KeyError, ValueError):
            raise ValueError(
                "template must have exactly one '{}' slot (write other braces as '{{' and "
                f"'}}}}'), got {self.template!r}."
            ) from None

    def _embedder(self):
        if self.embedder is not None:
            return clone(self.embedder)
        from ._transformer import OpenAIEmbeddingTransformer

        return OpenAIEmbeddingTransformer()

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Embed the class descriptions, then adapt the prototypes to ``X`` (and ``y``).

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts: labelled when ``y`` is given, otherwise used (when
            ``transductive=True``) to adapt the prototypes.
        y : array-like of shape (n_samples,), default=None
            Classes of ``X``; each must be one of ``labels``' classes.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        # Read once (a generator feeds both fit and transform), and check y before
        # anything is embedded: with a paid API, a late error costs money. A Series
        # stays one, so that the embedder's errors name its index labels and column.
        X = text_column(X)
        if y is not None:
            y = _check_targets(y, len(X))
        descriptions = self._descriptions(y)
        # Sorted as np.unique sorts them: scorers and meta-estimators read classes_[1] as
        # the positive class and the columns of predict_proba in that order.
        names = list(descriptions)
        order = np.argsort(np.asarray(names), kind="stable")
        descriptions = {names[i]: descriptions[names[i]] for i in order}
        self.descriptions_ = descriptions
        self.classes_ = np.asarray(names)[order]
        if y is not None:
            known = set(self.classes_.tolist())
            unknown = [c for c in dict.fromkeys(y.tolist()) if c not in known]
            if unknown:
                raise ValueError(
                    f"y has classes {sorted(unknown, key=str)} that labels does not describe; "
                    f"labels has {self.classes_.tolist()}."
                )
        self.embedder_ = self._embedder()
        self.embedder_.fit(X)

        flat = [text for texts in descriptions.values() for text in texts]
        owner = np.repeat(np.arange(len(descriptions)), [len(t) for t in descriptions.values()])
        vectors = self._embed(flat)
        sums = np.zeros((len(descriptions), vectors.shape[1]), dtype=np.float32)
        np.add.at(sums, owner, vectors)
        self.label_embeddings_ = normalize_rows(sums, name="label embeddings")

        if y is not None:
            self.prototypes_ = self._few_shot(self._embed(X, vectors.shape[1]), y)
        elif self.transductive and self.n_iter > 0:
            self.prototypes_ = self._adapt(self._embed(X, vectors.shape[1]))
        else:
            self.prototypes_ = self.label_embeddings_
        return self

    def _embed(self, texts, width=None):
        """The embedder's vectors for ``texts``, checked: ``(n_texts, width)``, finite."""
        texts = text_column(texts)
        vectors = np.asarray(self.embedder_.transform(texts))
        n_texts = len(texts)
        if (
            vectors.ndim != 2
            or vectors.shape[0] != n_texts
            or (width is not None and vectors.shape[1] != width)
        ):
            expected = f"({n_texts}, {width if width is not None else 'n_dimensions'})"
            raise ValueError(
                f"The embedder returned an array of shape {vectors.shape} for {n_texts} "
                f"texts; expected {expected}, the width the classifier was fitted with. "
                "Refit the classifier after changing its embedder."
            )
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if bad.size:
            raise ValueError(
                f"The embedder returned non-finite values (NaN or inf) for {row_names(texts)(bad)}."
            )
        return vectors

    def _few_shot(self, X, y):
        centroids = np.zeros_like(self.label_embeddings_)
        for i, c in enumerate(self.classes_):
            rows = X[y == c]
            if len(rows):
                centroids[i] = rows.mean(axis=0)
        return self._blend(centroids)

    def _adapt(self, X):
        """Soft k-means from the description vectors, each step anchored on them."""
        prototypes = self.label_embeddings_
        for _ in range(self.n_iter):
            weights = softmax((X @ prototypes.T) / self.temperature)
            totals = weights.sum(axis=0)
            centroids = (weights.T @ X) / np.maximum(totals, 1e-12)[:, None]
            prototypes = self._blend(centroids.astype(np.float32))
        return prototypes

    def _blend(self, centroids):
        # Both terms unit-norm before weighting, so that label_weight means the same
        # whatever the spread of the texts (a centroid of unit rows is shorter than 1).
        # A class without rows has a zero centroid: it keeps its description's vector.
        unit = normalize_rows(centroids, zero_rows="keep")
        mixed = self.label_weight * self.label_embeddings_ + (1 - self.label_weight) * unit
        return normalize_rows(mixed, name="prototypes")

    def _scores(self, X):
        """Cosine similarity of each text to each class prototype, ``(n, n_classes)``."""
        check_is_fitted(self)
        return self._embed(X, self.prototypes_.shape[1]) @ self.prototypes_.T

    def decision_function(self, X):
        """Confidence scores: cosine similarities to the class prototypes.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            With more than two classes, the cosine similarity of each text to each
            class prototype, in the order of ``classes_``. With two classes, as in
            scikit-learn's classifiers, the score of ``classes_[1]``: its cosine minus
            that of ``classes_[0]`` (positive means ``classes_[1]``).
        """
        scores = self._scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X):
        """Softmax of the cosine similarities divided by ``temperature``.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities summing to one per row, columns in the order of
            ``classes_``.
        """
        return softmax(self._scores(X).astype(np.float64) / self.temperature)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        logits = self._scores(X).astype(np.float64) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """The class whose prototype is most similar to each text.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        ndarray of shape (n_samples,)
            Predicted classes.
        """
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        return tags


def _check_targets(y, n_samples):
    """``y`` as a 1-D array of class labels, one per text."""
    given = y
    y = column_or_1d(y, warn=True)
    # The labels as given: an array of mixed labels holds them converted ([1, "1"] is
    # ['1', '1'], a NaN among texts is 'nan'), so they are checked as they came.
    values = _as_given(given, y)
    missing = [row for row, value in enumerate(values) if _is_missing(value)]
    if missing:
        raise ValueError(f"y has a missing label (None/NaN) at {row_names(given)(missing)}.")
    if len(y) != n_samples:
        raise ValueError(f"X has {n_samples} texts but y has {len(y)} labels.")
    if values is not y:
        _check_one_class_per_label(values, "y", repeats=True, classes=y)
    try:
        check_classification_targets(y)
    except TypeError:  # numpy cannot sort the labels to count the classes
        raise ValueError(
            "y mixes labels of types that cannot be compared (e.g. str and int); convert "
            "y to one type."
        ) from None
    return y


def _as_given(given, y):
    """The values of ``given`` as Python objects, aligned with ``y`` (its 1-D array form).

    ``y`` itself when no conversion can have changed them (an array or a Series of one
    type).
    """
    if getattr(given, "dtype", np.dtype(object)) != np.dtype(object):
        return y
    try:
        values = np.asarray(given, dtype=object).reshape(-1)
    except (TypeError, ValueError):
        return y
    return values if len(values) == len(y) else y


def _check_one_class_per_label(values, name, *, repeats, classes=None):
    """Refuse labels that are not one class each in ``classes_``, naming them and ``name``.

    ``classes_`` is a numpy array of one type, whose elements are the classes, as for
    :func:`numpy.unique`. Numbers and texts mixed become texts there (``[1, "1"]`` is
    ``['1', '1']``) and integers mixed with floats become floats, so labels must map
    to classes one to one: two different labels must not become one class (``1`` and
    ``"1"``), nor one label two classes (``1`` and ``1.0``, equal values, are ``'1'``
    and ``'1.0'`` beside a text). Unless ``repeats`` (``y`` names its classes many
    times), a label given twice (``1``, ``1.0`` and ``True`` are one value) is refused
    too. ``classes``: ``values`` as an array (``np.array(values)`` if not given).
    """
    if classes is None:
        try:
            classes = np.array(values)
        except (TypeError, ValueError):
            classes = None
    if classes is None or classes.ndim != 1 or len(classes) != len(values):
        raise ValueError(
            f"{name} must be a list of class labels (str, int, ...), one per class; got {values!r}."
        )
    counts = Counter()
    spellings = {}  # each value -> {repr of a spelling: its class}
    members = {}  # each class -> {repr of a label: the label}
    try:
        for value, form in zip(values, classes.tolist(), strict=True):
            counts[value] += 1
            spellings.setdefault(value, {}).setdefault(repr(value), form)
            members.setdefault(form, {}).setdefault(repr(value), value)
    except TypeError:
        raise ValueError(f"{name} must be hashable class labels (str, int, ...).") from None
    merged = [(f, list(m)) for f, m in members.items() if len(set(m.values())) > 1]
    if merged:
        described = "; ".join(
            " and ".join(labels) + f" would be the same class, {form!r}" for form, labels in merged
        )
        raise ValueError(
            f"{name} has different labels that become one class: {described}. classes_ "
            "is a numpy array of one type, in which numbers and texts mixed become texts "
            f"(and integers mixed with floats, floats): use labels of one type in {name} "
            "(all str, or all int)."
        )
    if not repeats:
        repeated = sorted((v for v, n in counts.items() if n > 1), key=str)
        if repeated:
            spelled = [" and ".join(spellings[v]) for v in repeated if len(spellings[v]) > 1]
            also = f" (as {'; '.join(spelled)})" if spelled else ""
            raise ValueError(
                f"{name} names {repeated} more than once{also}; give each class once, or "
                "several descriptions per class as {class: [description, ...]}."
            )
    split = [s for s in spellings.values() if len({repr(f) for f in s.values()}) > 1]
    if split:
        described = "; ".join(
            " and ".join(s) + " would be the classes " + " and ".join(repr(f) for f in s.values())
            for s in split
        )
        raise ValueError(
            f"{name} has equal labels written differently that become different classes: "
            f"{described}. classes_ is a numpy array of one type, in which numbers and "
            f"texts mixed become texts: use labels of one type in {name} (all str, or all "
            "int)."
        )
