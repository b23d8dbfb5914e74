"""Cosine nearest neighbours on embedding matrices: exact and memory-bounded by default.

Mirrors :class:`sklearn.neighbors.NearestNeighbors` with ``metric="cosine"``, for the
searches that embeddings are used for: semantic search, recommendation,
de-duplication, anomaly scores and the diversity of a set of texts.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _ann, _math
from ._sklearn_compat import Interval, StrOptions, _fit_context

__all__ = ["CosineNearestNeighbors", "cosine_diversity"]


def _check_mode(mode):
    if mode not in ("connectivity", "distance"):
        raise ValueError(
            f'Unsupported mode, must be one of "connectivity" or "distance" but got "{mode}" '
            "instead"
        )


class CosineNearestNeighbors(BaseEstimator):
    """Nearest neighbours by cosine distance, exact and memory-bounded.

    The contract of :class:`sklearn.neighbors.NearestNeighbors` with
    ``metric="cosine"``: distances are ``1 - cos`` and ascending, and a query on the
    fitted data itself (``X=None``) leaves each point out of its own neighbours. Rows
    are used as unit vectors: rows that are not of unit norm are normalised (a copy).
    An all-zero row (a blank text embedded with ``on_invalid_text="zero"``) has cosine
    0, hence distance 1, to everything, itself included, as
    :func:`sklearn.metrics.pairwise.cosine_similarity` defines it. Everything is
    computed in float32; with a reduced ``storage``, candidates are found among the
    reduced vectors and rescored exactly from the float32 rows.

    The exact search multiplies blocks of queries and fitted rows into a reused
    buffer and keeps each query's best ``k`` with a running threshold, so its memory
    does not grow with the data and its time stays close to that of the matrix product
    alone. Read more in :ref:`neighbors`.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours for :meth:`kneighbors` and :meth:`score_samples`.
    radius : float, default=1.0
        Largest cosine distance (inclusive) for :meth:`radius_neighbors`, in [0, 2].
    algorithm : {"auto", "brute", "hnsw"}, default="auto"
        - ``"brute"``: exact blocked search.
        - ``"hnsw"``: approximate search with an HNSW graph (usearch, ``pip install
          'skembed[ann]'``); fast at scale, but may miss true neighbours.
        - ``"auto"``: ``"brute"``. An approximate search is used only when asked.

        :meth:`radius_neighbors` is exact whatever the algorithm.
    storage : {"float32", "float16", "int8"}, default="float32"
        Precision of the vectors that are scanned (``"brute"``) or put in the graph
        (``"hnsw"``). ``"int8"`` stores symmetric int8 codes (4 times smaller than
        float32) with one scale per dimension (one for all with ``"hnsw"``, whose
        graph links rows by plain int8 products), ``"float16"`` half floats (2
        times). With either, each query's ``rescore_factor * n_neighbors`` best
        candidates are rescored exactly from the float32 rows, so the distances
        returned are exact float32 cosine distances; only which neighbours are found
        may differ from the exact search, rarely.
    rescore_factor : int, default=4
        Candidates rescored per neighbour asked, with a reduced ``storage``.
    hnsw_m : int, default=16
        Links per node of the HNSW graph (``M`` in the HNSW paper; usearch's
        ``connectivity``).
    hnsw_ef_construction : int, default=200
        Candidate list size while building the HNSW graph.
    hnsw_ef_search : int, default=None
        Candidate list size while searching; larger finds more true neighbours,
        slower. None uses ``max(64, 2 * n_neighbors)``; never less than the number
        of candidates asked (``rescore_factor * n_neighbors`` with a reduced
        ``storage``).
    working_memory : float, default=None
        Bound, in MiB, on the temporary buffers of an exact search (the returned
        arrays are not counted). None uses block shapes tuned for speed, at most
        about 30 MiB per thread.
    n_jobs : int, default=None
        Threads of a search. None uses as many as the BLAS library does (a plain
        matrix product would use them all the same); -1 uses all processors.
    random_state : int, RandomState instance or None, default=None
        Ignored: usearch draws the HNSW levels from its own fixed seed (a graph
        built with several threads may still differ between builds). Kept so that
        code written for the hnswlib-based versions still runs.

    Attributes
    ----------
    n_samples_fit_ : int
        Number of fitted samples.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit. Defined only when `X` has
        feature names that are all strings.
    index_nbytes_ : int
        Bytes of what a k-neighbours search scans or walks: the float32 rows
        (``"brute"``, ``storage="float32"``), the reduced vectors and their scales,
        or the HNSW index (its vectors and graph, as serialised: what a pickle
        writes; usearch's allocation in memory is larger, 1.6x-1.7x measured at
        100,000 x 384 with ``hnsw_m=16``). The float32 rows kept for
        rescoring and :meth:`radius_neighbors` are not counted: they are the
        caller's array (or memory map) when it is float32, C-contiguous and of unit
        norm.

    See Also
    --------
    sklearn.neighbors.NearestNeighbors : The general estimator this one mirrors.
    sklearn.neighbors.LocalOutlierFactor : Density-based outlier scores.
    cosine_diversity : Mean pairwise cosine distance of a set of vectors.

    Notes
    -----
    Memory: the fitted rows are kept as given when they are float32, C-contiguous
    and of unit norm (embeddings usually are; a :class:`numpy.memmap` stays on
    disk), else as a normalised float32 copy. ``algorithm="hnsw"`` adds a copy of
    the rows in the index's ``storage`` and the graph; a reduced ``storage`` with
    ``"brute"`` adds the reduced copy. See ``index_nbytes_``.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed.neighbors import CosineNearestNeighbors
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> nn = CosineNearestNeighbors(n_neighbors=1).fit(X)
    >>> distances, indices = nn.kneighbors([[1.0, 0.05]])
    >>> indices
    array([[0]])
    >>> nn.kneighbors(return_distance=False)
    array([[1],
           [0],
           [3],
           [2]])

    int8 codes, one quarter of the float32 rows, with exact distances after rescoring:

    >>> small = CosineNearestNeighbors(n_neighbors=2, storage="int8").fit(X)
    >>> small.kneighbors([[1.0, 0.05]], return_distance=False)
    array([[0, 1]])
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, 0, 2, closed="both")],
        "algorithm": [StrOptions({"auto", "brute", "hnsw"})],
        "storage": [StrOptions({"float32", "float16", "int8"})],
        "rescore_factor": [Interval(Integral, 1, None, closed="left")],
        "hnsw_m": [Interval(Integral, 2, None, closed="left")],
        "hnsw_ef_construction": [Interval(Integral, 1, None, closed="left")],
        "hnsw_ef_search": [Interval(Integral, 1, None, closed="left"), None],
        "working_memory": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        n_neighbors=5,
        radius=1.0,
        algorithm="auto",
        storage="float32",
        rescore_factor=4,
        hnsw_m=16,
        hnsw_ef_construction=200,
        hnsw_ef_search=None,
        working_memory=None,
        n_jobs=None,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.algorithm = algorithm
        self.storage = storage
        self.rescore_factor = rescore_factor
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.hnsw_ef_search = hnsw_ef_search
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Index the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Vectors to search, typically embeddings. Rows that are not of unit norm
            are normalised; an all-zero row stays zero (distance 1 to everything).
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        given = X
        X = validate_data(self, X, dtype=np.float32, order="C")
        # Normalise in place only an array that validation has just made (from a list,
        # another dtype or layout): never the caller's memory.
        fresh = isinstance(given, list | tuple) or (
            isinstance(given, np.ndarray) and not np.may_share_memory(X, given)
        )
        self._fit_X = _unit_or_zero_rows(X, copy=not fresh)
        self.n_samples_fit_ = X.shape[0]
        if self.algorithm == "hnsw":
            _ann.import_usearch()  # before the encoding: fail fast without the extra
        # A graph's links come from plain products of the stored codes: one scale for
        # all dimensions there (per-dimension scales would distort its metric).
        per_dimension = self.algorithm != "hnsw"
        stored, self._scales = _ann.encode(self._fit_X, self.storage, per_dimension=per_dimension)
        if self.algorithm == "hnsw":
            # Inner product on unit vectors: the distance is 1 - cos, the cosine
            # distance, without the normalised copy a cosine metric would make.
            self._index = _ann.HNSWIndex(
                stored,
                self.storage,
                m=self.hnsw_m,
                ef_construction=self.hnsw_ef_construction,
                n_threads=self._n_threads(),
            )
            self._stored = None  # the index holds the stored vectors
            self.index_nbytes_ = self._index.nbytes
        else:
            self._index = None
            # float32: the fitted rows are what is scanned (no second reference, which
            # a pickle would write twice).
            self._stored = None if self.storage == "float32" else stored
            self.index_nbytes_ = int(stored.nbytes)
        if self._scales is not None:
            self.index_nbytes_ += int(self._scales.nbytes)
        return self

    def _n_threads(self):
        return _math._resolve_n_threads(self.n_jobs)

    def _check_queries(self, X):
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        return _unit_or_zero_rows(X, copy=True)

    def _check_n_neighbors(self, n_neighbors):
        if n_neighbors is None:
            return self.n_neighbors
        if not isinstance(n_neighbors, Integral) or isinstance(n_neighbors, bool):
            raise TypeError(f"n_neighbors must be an int, got {type(n_neighbors).__name__}.")
        if n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
        return int(n_neighbors)

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Find the nearest fitted points of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query vectors. If None, the queries are the fitted points, and each point
            is not counted among its own neighbours.
        n_neighbors : int, default=None
            Number of neighbours; the constructor's ``n_neighbors`` if None.
        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors), dtype float32
            Cosine distances ``1 - cos``, ascending; only when ``return_distance``.
        neigh_ind : ndarray of shape (n_queries, n_neighbors), dtype int64
            Indices of the neighbours among the fitted points.

        Raises
        ------
        ValueError
            If ``n_neighbors`` is larger than the number of fitted points (or, when
            ``X`` is None, not smaller).
        """
        check_is_fitted(self)
        n_neighbors = self._check_n_neighbors(n_neighbors)
        query_is_train = X is None
        queries = self._fit_X if query_is_train else self._check_queries(X)
        self._check_enough_samples(n_neighbors, query_is_train, queries.shape[0])
        if self._index is not None:
            distances, indices = self._hnsw_kneighbors(queries, n_neighbors, query_is_train)
        elif self.storage == "float32":
            distances, indices = _math.cosine_topk(
                queries,
                self._fit_X,
                n_neighbors,
                exclude_self=query_is_train,
                working_memory=self.working_memory,
                n_threads=self.n_jobs,
            )
        else:
            distances, indices = self._reduced_kneighbors(queries, n_neighbors, query_is_train)
        return (distances, indices) if return_distance else indices

    def _n_candidates(self, n_neighbors, query_is_train):
        available = self.n_samples_fit_ - 1 if query_is_train else self.n_samples_fit_
        if self.storage == "float32":
            return n_neighbors
        return min(self.rescore_factor * n_neighbors, available)

    def _reduced_kneighbors(self, queries, n_neighbors, query_is_train):
        # The exact scan, on the reduced vectors (the product of a float32 query, its
        # scales folded in, with a block of codes cast to float32), then the rescoring.
        _, candidates = _math.cosine_topk(
            _ann.fold_queries(queries, self._scales),
            self._stored,
            self._n_candidates(n_neighbors, query_is_train),
            exclude_self=query_is_train,
            working_memory=self.working_memory,
            n_threads=self.n_jobs,
        )
        return _ann.rescore(queries, self._fit_X, candidates, n_neighbors)

    def _check_enough_samples(self, n_neighbors, query_is_train, n_queries):
        if query_is_train and n_neighbors >= self.n_samples_fit_:
            inequality = "n_neighbors < n_samples_fit"
        elif n_neighbors > self.n_samples_fit_:
            inequality = "n_neighbors <= n_samples_fit"
        else:
            return
        raise ValueError(
            f"Expected {inequality}, but n_neighbors = {n_neighbors}, "
            f"n_samples_fit = {self.n_samples_fit_}, n_samples = {n_queries}"
        )

    def _hnsw_kneighbors(self, queries, n_neighbors, query_is_train):
        count = self._n_candidates(n_neighbors, query_is_train) + int(query_is_train)
        ef = self.hnsw_ef_search or max(64, 2 * n_neighbors)
        searched = _ann.int8_queries(queries, self._scales) if self.storage == "int8" else queries
        candidates = self._index.search(searched, count, ef=ef, n_threads=self._n_threads())
        # Rows whose graph search came back short (a tiny or disconnected graph) take
        # their candidates from the exact search instead.
        n_valid = (candidates >= 0).sum(axis=1)
        if query_is_train:
            n_valid -= (candidates == np.arange(len(queries))[:, np.newaxis]).sum(axis=1)
        short = np.flatnonzero(n_valid < n_neighbors)
        if short.size:
            k = n_neighbors + int(query_is_train)
            candidates[short] = -1
            candidates[short, :k] = _math.cosine_topk(queries[short], self._fit_X, k)[1]
        # Exact float32 distances of the candidates (the graph's are of the stored
        # precision), each fitted row left out of its own list.
        return _ann.rescore(
            queries, self._fit_X, candidates, n_neighbors, exclude_self=query_is_train
        )

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of the k nearest neighbours of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query vectors; the fitted points (each not its own neighbour) if None.
        n_neighbors : int, default=None
            Number of neighbours; the constructor's ``n_neighbors`` if None.
        mode : {"connectivity", "distance"}, default="connectivity"
            Entries of the graph: ones, or the cosine distances.

        Returns
        -------
        A : sparse matrix of shape (n_queries, n_samples_fit)
            CSR matrix; ``A[i, j]`` is set when ``j`` is a neighbour of query ``i``.
        """
        _check_mode(mode)
        distances, indices = self.kneighbors(X, n_neighbors)
        data = np.ones(indices.size) if mode == "connectivity" else distances.ravel()
        n_queries, k = indices.shape
        indptr = np.arange(0, n_queries * k + 1, k)
        return csr_matrix((data, indices.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=False):
        """Find the fitted points within a cosine distance of each query (exact).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query vectors; the fitted points (each not its own neighbour) if None.
        radius : float, default=None
            Largest distance (inclusive); the constructor's ``radius`` if None.
        return_distance : bool, default=True
            Whether to return the distances.
        sort_results : bool, default=False
            Sort each query's neighbours by increasing distance; needs
            ``return_distance=True``.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,), dtype object
            Arrays of float32 distances; only when ``return_distance``.
        neigh_ind : ndarray of shape (n_queries,), dtype object
            Arrays of indices of the neighbours among the fitted points.
        """
        check_is_fitted(self)
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True.")
        radius = self.radius if radius is None else radius
        # NaN or a negative radius would silently find nothing.
        if isinstance(radius, bool) or not isinstance(radius, Real) or not 0 <= radius <= 2:
            raise ValueError(f"radius must be a cosine distance in [0, 2], got {radius!r}.")
        query_is_train = X is None
        queries = self._fit_X if query_is_train else self._check_queries(X)
        distances, indices = _math.cosine_radius(
            queries,
            self._fit_X,
            radius,
            exclude_self=query_is_train,
            sort_results=sort_results,
            working_memory=self.working_memory,
        )
        neigh_ind = np.empty(len(indices), dtype=object)
        neigh_ind[:] = indices
        if not return_distance:
            return neigh_ind
        neigh_dist = np.empty(len(distances), dtype=object)
        neigh_dist[:] = distances
        return neigh_dist, neigh_ind

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity", sort_results=False):
        """Sparse graph of the fitted points within a cosine distance of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query vectors; the fitted points (each not its own neighbour) if None.
        radius : float, default=None
            Largest distance (inclusive); the constructor's ``radius`` if None.
        mode : {"connectivity", "distance"}, default="connectivity"
            Entries of the graph: ones, or the cosine distances.
        sort_results : bool, default=False
            Sort each row's entries by increasing distance.

        Returns
        -------
        A : sparse matrix of shape (n_queries, n_samples_fit)
            CSR matrix; ``A[i, j]`` is set when ``j`` is within ``radius`` of query ``i``.
        """
        _check_mode(mode)
        distances, indices = self.radius_neighbors(X, radius, sort_results=sort_results)
        counts = np.fromiter((len(row) for row in indices), dtype=np.int64, count=len(indices))
        indptr = np.concatenate([[0], np.cumsum(counts)])
        columns = np.concatenate([*indices, np.empty(0, dtype=np.int64)])
        if mode == "connectivity":
            data = np.ones(columns.size)
        else:
            data = np.concatenate([*distances, np.empty(0, dtype=np.float32)])
        return csr_matrix((data, columns, indptr), shape=(len(indices), self.n_samples_fit_))

    def score_samples(self, X=None):
        """Normality score: minus the mean cosine distance to the nearest fitted points.

        Higher is more normal, as for
        :meth:`sklearn.neighbors.LocalOutlierFactor.score_samples`: a point far from
        everything that was fitted scores low. Use it for novelty detection by
        fitting on normal data, as ``LocalOutlierFactor(novelty=True)``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Points to score. If None, the fitted points, each scored without itself.

        Returns
        -------
        scores : ndarray of shape (n_queries,), dtype float32
            Minus the mean distance to the ``n_neighbors`` nearest fitted points, in
            [-2, 0].
        """
        distances, _ = self.kneighbors(X)
        return -distances.mean(axis=1, dtype=np.float32)


def _unit_or_zero_rows(X, *, copy):
    """float32 ``X`` with unit rows; all-zero rows stay zero, so their cosines are 0.

    ``X`` itself when its rows are already of unit norm (embeddings usually are).
    """
    squared_norms = _math._squared_row_norms(X)
    if np.all(np.abs(squared_norms - 1.0) <= 2 * _math._UNIT_NORM_ATOL):
        return X
    return _math.normalize_rows(X, zero_rows="keep", copy=copy)


def cosine_diversity(X):
    """Diversity of a set of vectors: their mean pairwise cosine distance.

    The mean of ``1 - cos(x_i, x_j)`` over all pairs of distinct rows, computed in one
    pass over ``X`` (memory independent of the number of pairs). 0 when all rows
    point the same way; close to 1 for unrelated directions.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Vectors, typically embeddings of a set of texts; at least two rows, none of
        zero norm. Normalised if not of unit norm.

    Returns
    -------
    diversity : float
        Mean pairwise cosine distance, in [0, 2].

    Examples
    --------
    >>> from skembed.neighbors import cosine_diversity
    >>> round(cosine_diversity([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 4)
    0.6667
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array, got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    return _math.mean_pairwise_cosine_distance(_math.unit_norm_rows(X))
