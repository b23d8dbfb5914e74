"""What every text-embedding transformer shares: input policy, caching, sklearn plumbing."""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from ._cache import CacheStore, resolve_cache
from ._cost import estimate_cost
from ._embed import embed_texts
from ._sklearn_compat import StrOptions, _fit_context
from ._validation import check_texts, column_name, row_names

__all__ = ["BaseEmbeddingTransformer"]


class BaseEmbeddingTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Stateless texts-to-vectors transformer; subclasses say which backend embeds.

    Subclasses implement ``_make_backend()`` (a new backend from the current
    parameters, usually ``SomeBackend(**self._backend_kwargs())``) and list in
    ``_backend_params`` the parameters they hand to it. The backend resolves the model
    and owns the width of its vectors; the output width (``_output_dim()``) is asked
    of it.
    """

    #: Parameters handed to the backend as they are, under the same name (each
    #: subclass lists its own); ``verbose`` is handed on as ``progress``. The others
    #: (input policy, cache, spending limits) are the estimator's and the job's.
    _backend_params: tuple = ()

    _parameter_constraints: dict = {
        "on_invalid_text": [StrOptions({"error", "zero"})],
        "cache": [
            StrOptions({"default"}),
            "boolean",
            str,
            os.PathLike,
            CacheStore,
            None,
        ],
        "verbose": ["boolean"],
    }

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the parameters and the texts; nothing is learned.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.
        y : None
            Ignored.

        Returns
        -------
        self : object
            This transformer.
        """
        self._make_backend()  # surfaces parameter combinations the model refuses
        check_texts(X, invalid=self.on_invalid_text)
        # The one fact fit keeps: the column's name, for get_feature_names_out.
        name = _column_name(X)
        if name is None:
            self.__dict__.pop("feature_names_in_", None)
        else:
            self.feature_names_in_ = np.asarray([name], dtype=object)
        return self

    def get_feature_names_out(self, input_features=None):
        """Get the output column names: ``<column>_0 ...``, or the class name's.

        The embedding of a named column (a pandas Series' name, or the column of a
        single-column DataFrame, seen by ``fit``, or given as ``input_features``, as
        :class:`~sklearn.compose.ColumnTransformer` does) is named after it, as
        ``review_0 ... review_383``; otherwise after the class:
        ``localembeddingtransformer0 ...``.

        Parameters
        ----------
        input_features : array-like of str, default=None
            The name of the input column, as a one-element sequence. If ``fit`` saw a
            named column, it must be that name.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output dimension.
        """
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            if input_features.shape != (1,):
                raise ValueError(
                    f"{type(self).__name__} embeds one column of texts, so input_features "
                    f"must name one column; got {input_features.tolist()!r}."
                )
            if fitted is not None and not np.array_equal(fitted, input_features):
                raise ValueError(
                    f"input_features is not equal to feature_names_in_: got "
                    f"{input_features.tolist()!r}, fit saw {fitted.tolist()!r}."
                )
            name = str(input_features[0])
        elif fitted is not None:
            name = fitted[0]
        else:
            return super().get_feature_names_out()
        return np.asarray([f"{name}_{i}" for i in range(self._n_features_out)], dtype=object)

    def transform(self, X):
        """Embed the texts.

        Parameters
        ----------
        X : list, 1-D array, Series or single-column DataFrame of str
            Texts.

        Returns
        -------
        ndarray of shape (n_samples, n_dimensions), dtype float32
            One unit-norm row per text (all-zero for blank texts when
            ``on_invalid_text="zero"``).
        """
        self._validate_params()
        names = row_names(X)  # before X is read: errors name its index labels and column
        texts, valid = check_texts(X, invalid=self.on_invalid_text, names=names)
        options = {**self._spending_limits(), "describe": names}
        if valid.all():
            cache = resolve_cache(self.cache)
            backend = self._backend_for(cache)
            vectors, _ = embed_texts(texts, backend, cache, **options)
            return self._postprocess(vectors, backend)
        if not valid.any():
            dim = self._output_dim()
            if dim is None:
                raise ValueError("Every text is blank, and the vector length is not known yet.")
            return np.zeros((len(texts), dim), dtype=np.float32)
        kept = [text for text, ok in zip(texts, valid, strict=True) if ok]
        cache = resolve_cache(self.cache)
        backend = self._backend_for(cache)
        vectors, _ = embed_texts(kept, backend, cache, rows=np.flatnonzero(valid), **options)
        vectors = self._postprocess(vectors, backend)
        out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[valid] = vectors
        return out

    def _backend_for(self, cache):
        """The backend, ready to read and fill ``cache`` (a hook: the identity of a
        fingerprinted model's vectors is known only once the model is probed)."""
        return self._backend()

    def _spending_limits(self):
        """Keyword arguments limiting what one ``transform`` may spend (a hook)."""
        return {}

    def _estimate_cost(self, X):
        """A :class:`~skembed._cost.CostEstimate` of ``transform(X)``, sending nothing."""
        self._validate_params()
        names = row_names(X)
        texts, valid = check_texts(X, invalid=self.on_invalid_text, names=names)
        kept = [text for text, ok in zip(texts, valid, strict=True) if ok]
        cache = resolve_cache(self.cache)
        return estimate_cost(
            kept,
            self._backend_for(cache),
            cache,
            n_texts=len(texts),
            rows=None if valid.all() else np.flatnonzero(valid),
            describe=names,
        )

    def _postprocess(self, vectors, backend):
        """Turn the backend's vectors into the output (a hook; identity by default)."""
        return vectors

    def _output_dim(self):
        """Width of the output rows, or ``None`` while the backend does not know it."""
        return self._backend().n_dimensions

    def _backend_kwargs(self):
        """The backend's keyword arguments, from the current parameters."""
        kwargs = {name: getattr(self, name) for name in self._backend_params}
        kwargs["progress"] = self.verbose
        return kwargs

    def _backend(self):
        """The backend for the current parameters, reused while they do not change.

        It holds the SDK client (or model session), so it is private, rebuilt after
        ``set_params``, and never pickled.
        """
        params = tuple(sorted((k, repr(v)) for k, v in self.get_params(deep=False).items()))
        cached = self.__dict__.get("_backend_cache")
        if cached is None or cached[0] != params:
            cached = (params, self._make_backend())
            self.__dict__["_backend_cache"] = cached
        return cached[1]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_backend_cache", None)
        return state

    @property
    def _n_features_out(self):
        dim = self._output_dim()
        if dim is None:
            raise ValueError(
                f"{type(self).__name__} does not know its output dimension for this model; "
                "pass dimensions=<vector length>."
            )
        return dim

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = []
        return tags


def _column_name(X):
    """The name of the column of texts ``X``, when it has one that is a string."""
    name = column_name(X)
    return name if isinstance(name, str) else None
