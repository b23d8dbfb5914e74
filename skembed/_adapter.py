"""LinearEmbeddingAdapter: a learned linear map that sharpens embeddings for a task."""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_consistent_length
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._math import normalize_rows, row_norms_and_normalize
from ._sklearn_compat import Interval, StrOptions, _fit_context
from ._validation import row_names

__all__ = ["LinearEmbeddingAdapter"]

#: The penalties ``alpha="auto"`` tries, besides keeping the initial map (``inf``).
ALPHA_CANDIDATES = (1.0, 0.1, 0.01, 0.001)
_N_FOLDS = 3

_FLOAT_DTYPES = (np.float64, np.float32)


class LinearEmbeddingAdapter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Learn a linear map that makes cosine similarity fit a task.

    General-purpose embeddings put texts that share a topic, a sentiment or an
    intent only loosely together. This transformer learns a matrix ``W``
    (``coef_``) such that, after ``X @ W.T`` and L2 normalisation of the rows,
    cosine similarity separates what the task needs: rows of the same class (or
    pairs labelled similar) move closer, the others apart. It is the
    "customizing embeddings" recipe of the OpenAI cookbook, fitted with L-BFGS
    in numpy/scipy and regularised toward a fixed initial map.

    Two ways to train:

    - :meth:`fit` ``(X, y)`` with class labels (works in a ``Pipeline`` and in
      ``GridSearchCV``);
    - :meth:`fit_pairs` ``(X_left, X_right, y)`` with a similarity target per
      pair of rows (the cookbook's setup: +1 similar, -1 dissimilar).

    Read more in the :ref:`User Guide <adapter>`.

    Parameters
    ----------
    n_components : int, default=None
        Number of output dimensions (rows of ``coef_``). ``None`` keeps the input
        dimension, and the map starts from the identity. A smaller value starts
        from the projection on the top right singular vectors of the
        (row-normalised, uncentred) training data, which best preserves its
        cosines; it must then not exceed the number of training rows.

    objective : {"auto", "softmax", "mse"}, default="auto"
        The loss that ``W`` minimises, on row-normalised inputs ``x`` and
        ``z = normalize(W x)``:

        - ``"softmax"``: cross-entropy of a softmax over the cosines, divided by
          ``temperature``, between each row and every class centroid (the mean
          of the class's normalised input rows, mapped by ``W``). Needs class
          labels; the default of :meth:`fit`.
        - ``"mse"``: mean squared error between the cosine of two rows and their
          target (the cookbook's loss). :meth:`fit_pairs` uses the given pairs;
          :meth:`fit` uses *all* pairs of rows, target +1 within a class and -1
          across classes, computed exactly through Gram matrices (no sampling).
          The default of :meth:`fit_pairs`.
        - ``"auto"``: ``"softmax"`` in :meth:`fit`, ``"mse"`` in :meth:`fit_pairs`.

    alpha : float or "auto", default="auto"
        Strength of the penalty ``alpha / 2 * ||W - W0||_F**2`` that pulls ``W``
        toward the initial map ``W0``; the loss is a mean over rows or pairs, so
        ``alpha`` does not scale with the data size. Larger values change the
        embeddings less (and overfit less); ``0`` leaves ``W`` free (cosine is
        blind to the scale of ``W``, so it is then only defined up to scale).

        ``"auto"`` chooses it by internal validation: 3 folds of the training rows
        (stratified by class) or pairs (grouped by their left row, so that no item is
        on both sides), each candidate of ``ALPHA_CANDIDATES`` and the initial map
        itself (no learning, ``alpha_ = inf``) fitted on two folds and scored on the
        third (nearest-centroid balanced accuracy for :meth:`fit`; ROC AUC of the
        pair cosines for :meth:`fit_pairs`, or their Pearson correlation with
        non-binary targets).
        The most regularised candidate within one standard error of the best is
        kept (the "one standard error" rule), so that the default only departs from
        the embeddings when the data show it helps. Too little data to validate
        (fewer than 3 rows in a class, or 3 distinct left rows) keeps ``W0``.

    temperature : float, default=0.3
        Temperature of the ``"softmax"`` objective: small values only push on
        rows that are not yet closest to their own centroid, large values keep
        pushing every row. Ignored by ``"mse"``.

    max_iter : int, default=200
        Maximum number of L-BFGS iterations.

    tol : float, default=1e-5
        L-BFGS stops when an iteration lowers the objective by less than a
        fraction ``tol`` of its value, or when no component of the gradient
        exceeds ``tol``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_components, `n_features_in_`)
        The learned map ``W``; same dtype as the training data (float32 or
        float64).

    n_iter_ : int
        Number of L-BFGS iterations run, those of the validation fits of
        ``alpha="auto"`` included.

    alpha_ : float
        The ``alpha`` used: ``alpha`` itself, or the one that ``alpha="auto"``
        chose; ``inf`` means that the initial map ``W0`` was kept (no learning).

    alpha_scores_ : dict
        Only with ``alpha="auto"`` and enough data: mean validation score of each
        candidate ``alpha`` (``inf`` for the initial map).

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit. Defined only when `X` has feature
        names that are all strings.

    See Also
    --------
    sklearn.discriminant_analysis.LinearDiscriminantAnalysis : Linear map that
        separates classes in Euclidean rather than cosine geometry.
    sklearn.neighbors.NeighborhoodComponentsAnalysis : Linear map learned for
        Euclidean nearest neighbours.

    Notes
    -----
    Inputs are L2-normalised before the map (cosine ignores the length of a
    row). A row of zeros has no direction: as in
    :func:`sklearn.metrics.pairwise.cosine_similarity`, its cosine to anything
    is 0, so it does not move ``W`` during fit, and ``transform`` maps it (and
    any row that ``W`` maps to zero) to a row of zeros.

    The gradient of every objective is a combination of the training rows, so
    the optimum has the form ``W = W0 + G @ Q.T`` where ``Q`` is an orthonormal
    basis of the span of the training rows. The fit optimises ``G``, of shape
    ``(n_components, min(n_rows, n_features))``: exact, and much cheaper than the
    full ``W`` when there are fewer rows than features. L-BFGS keeps about 20
    copies of ``G``: with 3072-d embeddings and thousands of rows, that is
    about 1.5 GB in float64; lower ``n_components`` if that is too much.

    Fitting is deterministic: there is no sampling and no random
    initialisation, and the validation folds of ``alpha="auto"`` are dealt in
    turn (within each class, or by left row), hence no ``random_state``. Each call to :meth:`fit` or
    :meth:`fit_pairs` starts again from ``W0``.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed import LinearEmbeddingAdapter
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 8))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> adapter = LinearEmbeddingAdapter(n_components=4).fit(X, y)
    >>> adapter.coef_.shape
    (4, 8)
    >>> Z = adapter.transform(X)
    >>> bool(np.allclose(np.linalg.norm(Z, axis=1), 1.0))
    True
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "objective": [StrOptions({"auto", "softmax", "mse"})],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        n_components=None,
        objective="auto",
        alpha="auto",
        temperature=0.3,
        max_iter=200,
        tol=1e-5,
    ):
        self.n_components = n_components
        self.objective = objective
        self.alpha = alpha
        self.temperature = temperature
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the map from class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, one row per sample.

        y : array-like of shape (n_samples,)
            Class labels; at least two classes. Required: the default ``None``
            only exists to raise a clear error.

        Returns
        -------
        self : object
            Fitted adapter.
        """
        X, y = validate_data(self, X, y, dtype=_FLOAT_DTYPES)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(
                "LinearEmbeddingAdapter separates classes, so y needs at least 2 classes; "
                f"got 1 class ({classes[0]!r})."
            )
        onehot = np.zeros((X.shape[0], classes.size))
        onehot[np.arange(X.shape[0]), y_index] = 1.0
        rows = _unit_rows(X.astype(np.float64))
        objective = "softmax" if self.objective == "auto" else self.objective

        def problem(index):
            """The fit on the rows ``index``: (blocks, rows, loss)."""
            part, part_onehot = rows[index], onehot[index]
            if objective == "softmax":
                centroids = (part_onehot / np.maximum(part_onehot.sum(axis=0), 1)).T @ part
                return [part, centroids], part, _SoftmaxLoss(y_index[index], self.temperature)
            return [part], part, _AllPairsMSELoss(part_onehot)

        def score(coef, train, test):
            return _centroid_accuracy(_unit_rows(rows @ coef.T), y_index, train, test)

        alpha = self.alpha
        if alpha == "auto":
            counts = np.bincount(y_index)
            folds = _class_folds(y_index, _N_FOLDS) if counts.min() >= _N_FOLDS else None
            alpha = self._choose_alpha(problem, folds, score)
        blocks, rows, loss = problem(slice(None))
        self._fit_map(blocks, rows, loss=loss, alpha=alpha, dtype=X.dtype)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_pairs(self, X_left, X_right, y):
        """Learn the map from pairs of rows and a target cosine for each pair.

        Row ``i`` of ``X_left`` and row ``i`` of ``X_right`` form pair ``i``; the
        map is fitted so that their cosine after :meth:`transform` approaches
        ``y[i]``. Two aligned matrices (rather than one ``(n_pairs,
        2 * n_features)`` matrix) keep ``n_features_in_`` equal to the width
        that :meth:`transform` receives. To cross-validate, split the pairs so
        that no item appears on both sides of the split (pairs sharing an item
        leak); for ``GridSearchCV``, use :meth:`fit` with class labels.

        Parameters
        ----------
        X_left : array-like of shape (n_pairs, n_features)
            First embedding of each pair.

        X_right : array-like of shape (n_pairs, n_features)
            Second embedding of each pair.

        y : array-like of shape (n_pairs,)
            Target cosine of each pair, in [-1, 1]: +1 for similar, -1 for
            dissimilar (the cookbook's labels). Note that 0 means "unrelated"
            (orthogonal), so map 0/1 labels to -1/+1 first.

        Returns
        -------
        self : object
            Fitted adapter.
        """
        left = check_array(X_left, input_name="X_left", dtype=_FLOAT_DTYPES, estimator=self)
        right = check_array(X_right, input_name="X_right", dtype=_FLOAT_DTYPES, estimator=self)
        if left.shape[1] != right.shape[1]:
            raise ValueError(
                "X_left and X_right must have the same number of columns; got "
                f"{left.shape[1]} and {right.shape[1]}."
            )
        target = check_array(y, input_name="y", ensure_2d=False, dtype=np.float64)
        if target.ndim != 1:
            raise ValueError(f"y must be 1-dimensional; got shape {target.shape}.")
        check_consistent_length(left, right, target)
        out_of_range = np.flatnonzero(np.abs(target) > 1)
        if out_of_range.size:
            row = out_of_range[0]
            raise ValueError(
                "y holds target cosines, which must lie in [-1, 1] (+1 similar, "
                f"-1 dissimilar); {row_names(y)([row])} is {float(target[row])!r}."
            )
        if self.objective == "softmax":
            raise ValueError(
                "objective='softmax' needs class labels: use fit(X, y), or "
                "objective='mse' (or 'auto') with fit_pairs."
            )
        validate_data(self, X_left, skip_check_array=True)
        validate_data(self, X_right, reset=False, skip_check_array=True)
        unit_left = _unit_rows(left.astype(np.float64))
        unit_right = _unit_rows(right.astype(np.float64))

        def problem(index):
            blocks = [unit_left[index], unit_right[index]]
            return blocks, np.vstack(blocks), _PairMSELoss(target[index])

        binary = np.unique(target).size == 2

        def score(coef, train, test):
            cosines = np.sum(
                _unit_rows(unit_left[test] @ coef.T) * _unit_rows(unit_right[test] @ coef.T),
                axis=1,
            )
            return _pair_score(cosines, target[test], binary)

        alpha = self.alpha
        if alpha == "auto":
            alpha = self._choose_alpha(problem, _pair_folds(left, target, binary), score)
        dtype = np.result_type(left.dtype, right.dtype)
        blocks, rows, loss = problem(slice(None))
        self._fit_map(blocks, rows, loss=loss, alpha=alpha, dtype=dtype)
        return self

    def transform(self, X):
        """Map the embeddings and L2-normalise the rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            ``normalize(X @ coef_.T)``; float32 for float32 input, else float64.
            Rows that the map sends to zero stay zero.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_FLOAT_DTYPES)
        # Unit input rows keep the product finite whatever the magnitude of X.
        return _unit_rows(_unit_rows(X) @ self.coef_.T.astype(X.dtype, copy=False))

    @property
    def _n_features_out(self):
        return self.coef_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _choose_alpha(self, problem, folds, score):
        """The ``alpha`` of ``alpha="auto"``: validated on ``folds``, most regularised first.

        ``problem(index)`` gives the fit on the rows or pairs ``index``; ``score(coef,
        train, test)`` the validation score (higher is better) of a map fitted on
        ``train``. ``folds`` is None when there is too little data to validate.
        """
        self.__dict__.pop("alpha_scores_", None)
        self._validation_iterations = 0
        if folds is None:
            return np.inf
        candidates = (np.inf, *ALPHA_CANDIDATES)
        n_folds = int(folds.max()) + 1
        scores = np.empty((len(candidates), n_folds))
        for fold in range(n_folds):
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            blocks, rows, loss = problem(train)
            if self.n_components is not None and rows.shape[0] < self.n_components < rows.shape[1]:
                return np.inf  # a fold is too small for this projection: keep W0
            x0 = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for i, alpha in enumerate(candidates):
                    # From strong to weak penalty, each fit starts from the previous one.
                    coef, n_iter, x0 = self._solve(blocks, rows, loss=loss, alpha=alpha, x0=x0)
                    self._validation_iterations += n_iter
                    scores[i, fold] = score(coef, train, test)
        self.alpha_scores_ = dict(zip(candidates, scores.mean(axis=1).tolist(), strict=True))
        best = int(np.argmax(scores.mean(axis=1)))
        for i in range(len(candidates)):
            # One standard error rule: the strongest penalty whose loss against the best
            # is within the noise of the folds.
            gap = scores[best] - scores[i]
            if gap.mean() <= gap.std(ddof=1) / np.sqrt(n_folds):
                return candidates[i]
        return candidates[best]  # pragma: no cover (i == best always qualifies)

    def _fit_map(self, blocks, rows, *, loss, alpha, dtype):
        """Fit ``coef_`` by minimising ``loss`` with penalty ``alpha`` (see ``_solve``)."""
        coef, n_iter, _ = self._solve(blocks, rows, loss=loss, alpha=alpha, warn=True)
        self.alpha_ = float(alpha)
        self.n_iter_ = n_iter + self.__dict__.pop("_validation_iterations", 0)
        self.coef_ = coef.astype(dtype, copy=False)

    def _solve(self, blocks, rows, *, loss, alpha, x0=None, warn=False):
        """Minimise ``loss`` over the maps of the input ``blocks``: ``(W, n_iter, G)``.

        ``blocks`` are float64 matrices in input space whose rows lie in the span of
        the normalised training ``rows``; ``loss`` receives their normalised images
        and returns the loss and its gradient with respect to each. ``alpha=inf``
        returns the initial map ``W0``; ``x0`` is a (flat) ``G`` to start from.
        """
        n_rows, n_features = rows.shape
        n_components = n_features if self.n_components is None else self.n_components
        if n_components > n_features:
            raise ValueError(
                f"n_components={n_components} must be at most n_features={n_features}: "
                "a wider linear map cannot change cosines more than a square one."
            )
        basis = _energy_basis(rows)
        if n_components == n_features:
            initial = np.eye(n_features)
        elif n_components <= basis.shape[1]:
            initial = basis[:, :n_components].T
        else:
            raise ValueError(
                f"n_components={n_components} must be at most the number of training "
                f"rows ({n_rows}) when it is smaller than n_features={n_features}."
            )
        shape = (n_components, basis.shape[1])
        if np.isinf(alpha):
            return initial, 0, np.zeros(shape[0] * shape[1])
        starts = [block @ initial.T for block in blocks]
        projections = [block @ basis for block in blocks]

        def objective(flat):
            step = flat.reshape(shape)
            images = [
                _normalize_rows(start + projection @ step.T)
                for start, projection in zip(starts, projections, strict=True)
            ]
            value, image_grads = loss([unit for unit, _ in images])
            grad = alpha * step
            for (unit, inv_norm), image_grad, projection in zip(
                images, image_grads, projections, strict=True
            ):
                grad += _normalize_rows_backward(image_grad, unit, inv_norm).T @ projection
            return value + 0.5 * alpha * np.vdot(step, step), grad.ravel()

        result = minimize(
            objective,
            np.zeros(shape[0] * shape[1]) if x0 is None else x0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": self.tol},
        )
        if warn and result.status == 1:
            warnings.warn(
                f"LinearEmbeddingAdapter did not converge in max_iter={self.max_iter} "
                "iterations; increase max_iter, tol or alpha.",
                ConvergenceWarning,
                stacklevel=5,
            )
        return initial + result.x.reshape(shape) @ basis.T, int(result.nit), result.x


def _class_folds(y_index, n_folds):
    """Validation fold of each row: dealt in turn within each class (stratified)."""
    folds = np.empty(y_index.size, dtype=np.intp)
    order = np.argsort(y_index, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(y_index))[:-1]]
    folds[order] = (np.arange(y_index.size) - np.repeat(starts, np.bincount(y_index))) % n_folds
    return folds


def _pair_folds(left, target, binary):
    """Validation fold of each pair, by its left row (an item stays in one fold), or None.

    None when there are too few distinct left rows, or when a fold would miss one of the
    two values of a binary target.
    """
    _, group = np.unique(left, axis=0, return_inverse=True)
    group = group.ravel()
    if group.max(initial=-1) + 1 < _N_FOLDS:
        return None
    folds = group % _N_FOLDS
    for fold in range(_N_FOLDS):
        values = np.unique(target[folds == fold])
        if values.size < 2:
            return None
    return folds


def _centroid_accuracy(Z, y_index, train, test):
    """Balanced accuracy on ``test`` of the nearest (cosine) centroid of ``train``'s classes.

    Balanced (the mean recall of the classes): a map that gains accuracy by folding a
    small class into a big one has made the embeddings worse for that class.
    """
    n_classes = int(y_index.max()) + 1
    sums = np.zeros((n_classes, Z.shape[1]))
    np.add.at(sums, y_index[train], Z[train])
    scores = Z[test] @ _unit_rows(sums).T
    correct = np.argmax(scores, axis=1) == y_index[test]
    counts = np.bincount(y_index[test], minlength=n_classes)
    hits = np.bincount(y_index[test], weights=correct, minlength=n_classes)
    return float(np.mean(hits[counts > 0] / counts[counts > 0]))


def _pair_score(cosines, target, binary):
    """ROC AUC of the cosines for a binary target, else their Pearson correlation."""
    if binary:
        ranks = rankdata(cosines)
        positive = target == target.max()
        n_pos, n_neg = positive.sum(), (~positive).sum()
        return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    if np.ptp(cosines) == 0:
        return 0.0
    return float(np.corrcoef(cosines, target)[0, 1])


def _energy_basis(data):
    """Orthonormal basis (columns) of the row span of ``data``, by decreasing energy."""
    n_rows, n_features = data.shape
    if n_rows >= n_features:
        # The Gram matrix is small here; any orthonormal basis of the full space will do.
        _, vectors = np.linalg.eigh(data.T @ data)
        return vectors[:, ::-1]
    _, _, vt = np.linalg.svd(data, full_matrices=False)
    return vt.T


def _unit_rows(X):
    """Rows of float ``X`` scaled to unit norm (zero rows stay zero), in ``X``'s dtype.

    Safe whatever the magnitude of the entries (see :func:`~skembed._math.normalize_rows`),
    where sklearn's ``normalize`` turns rows of huge or subnormal entries into zeros or
    into rows that are not of unit norm.
    """
    return normalize_rows(X, zero_rows="keep", dtype=X.dtype)


def _normalize_rows(Z):
    """Unit rows of float64 ``Z`` (zero rows stay zero) and the inverse norms used,
    for :func:`_normalize_rows_backward`."""
    unit, norms = row_norms_and_normalize(Z, zero_rows="keep", dtype=np.float64, copy=False)
    inv_norm = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return unit, inv_norm[:, np.newaxis]


def _normalize_rows_backward(grad, unit, inv_norm):
    """Gradient with respect to ``Z`` given the gradient with respect to its unit rows."""
    return (grad - np.sum(grad * unit, axis=1, keepdims=True) * unit) * inv_norm


class _SoftmaxLoss:
    """Cross-entropy of a softmax over the cosines between rows and class centroids."""

    def __init__(self, y_index, temperature):
        self.y_index = y_index
        self.temperature = temperature

    def __call__(self, images):
        rows, centroids = images
        n_rows = rows.shape[0]
        scores = rows @ centroids.T / self.temperature
        scores -= scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        total = proba.sum(axis=1, keepdims=True)
        proba /= total
        picked = np.arange(n_rows), self.y_index
        value = np.mean(np.log(total[:, 0]) - scores[picked])
        score_grad = proba
        score_grad[picked] -= 1.0
        score_grad /= n_rows * self.temperature
        return value, [score_grad @ centroids, score_grad.T @ rows]


class _AllPairsMSELoss:
    """Mean squared error of the cosines of all pairs of rows against +1 (same class) or -1.

    With ``C = Z Z.T`` and ``T = 2 Y Y.T - 1``, ``||C - T||**2`` expands into norms of
    ``Z.T Z``, ``Y.T Z`` and ``1.T Z``, so no n-by-n matrix is formed.
    """

    def __init__(self, onehot):
        self.onehot = onehot

    def __call__(self, images):
        (rows,) = images
        n_rows = rows.shape[0]
        gram = rows.T @ rows
        class_sums = self.onehot.T @ rows
        total = rows.sum(axis=0)
        value = (
            np.vdot(gram, gram) - 4 * np.vdot(class_sums, class_sums) + 2 * np.vdot(total, total)
        ) / n_rows**2 + 1.0
        grad = 4 * (rows @ gram - 2 * self.onehot @ class_sums + total) / n_rows**2
        return value, [grad]


class _PairMSELoss:
    """Mean squared error between the cosine of each pair and its target."""

    def __init__(self, target):
        self.target = target

    def __call__(self, images):
        left, right = images
        residual = np.sum(left * right, axis=1) - self.target
        weight = (2.0 / residual.size * residual)[:, None]
        return np.mean(residual**2), [weight * right, weight * left]
