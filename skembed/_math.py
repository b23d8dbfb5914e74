"""Cosine geometry on float32 embedding matrices, in memory-bounded blocks.

Plumbing shared by the estimators (nearest neighbours, zero-shot classification):
numpy and threadpoolctl only, no scikit-learn. Every function here takes rows that
are already unit-norm float32 (see :func:`normalize_rows`, the one row normaliser of
the package) unless it says otherwise.

How the exact top-k stays close to the cost of the matrix product
-----------------------------------------------------------------
Scores are computed block by block into one reused buffer. Each query keeps its
``k`` best scores so far; its ``k``-th best is a threshold that only rises. A new
block is compared with the thresholds in one vectorised pass, a chunk of rows at a
time so that the mask is searched while still in cache, and only the scores that
beat them (after the first blocks, a few per query and block) are merged into the
running top-k. The selection therefore reads each score about once instead of
partitioning every row. Only the first, narrow block of a scan is partitioned.

The blocks are spread over threads that each run a single-threaded BLAS, so the
selection runs in parallel with the products instead of after them, the way
scikit-learn's own pairwise-distance reductions do.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

__all__ = [
    "cosine_radius",
    "cosine_topk",
    "l2_normalize",
    "mean_pairwise_cosine_distance",
    "normalize_rows",
    "normalize_rows_checked",
    "row_norms_and_normalize",
    "unit_norm_rows",
]

# A float32 row normalised in float32 has a norm within a few 1e-7 of one; a row further
# away than this was not normalised (or was normalised at lower precision).
_UNIT_NORM_ATOL = 1e-4
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)
# float64 norms between these come from squares that neither overflowed nor underflowed.
_F64_SAFE_MAX = 1e150
_F64_SAFE_MIN = 1e-150
# Rows whose largest entry is between these are normalised as they are: float32 holds
# them with full precision, and their norms too.
_PLAIN_MIN = 2.0**-60
_PLAIN_MAX = 2.0**60

# Preferred block shapes (queries x fitted rows). Measured on AVX-512 OpenBLAS: large
# query blocks keep single-threaded sgemm near its peak; 2048 fitted rows keep the
# score buffer (8 MiB) small enough that the selection re-reads it from cache cheaply.
_QUERY_BLOCK = 1024
_BASE_BLOCK = 2048
# Rows handled together by the selection, so its temporaries stay cache-sized.
_ROW_CHUNK = 256
# Below this many multiply-adds a call runs on the calling thread with the BLAS as it
# is configured: starting threads would cost more than it saves.
_MIN_PARALLEL_FLOPS = 2e8
# Share of a block above which candidates are merged by a dense partition.
_DENSE_FRACTION = 0.125

_MIB = 2**20


def _as_float_2d(X, name, dtype=np.float32):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {X.shape}.")
    return X.astype(dtype, copy=False)


def _squared_row_norms(X, chunk_rows=65536):
    """Squared row norms accumulated in float64, one chunk of rows at a time."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], chunk_rows):
        block = X[start : start + chunk_rows]
        out[start : start + chunk_rows] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    return out


def _check_zero_rows(X, squared_norms, zero_rows, name):
    """Apply the zero-row policy: raise naming the rows, or let them through."""
    if zero_rows not in ("raise", "keep"):
        raise ValueError(f"zero_rows must be 'raise' or 'keep', got {zero_rows!r}.")
    if zero_rows == "keep":
        return
    zero = np.flatnonzero(squared_norms == 0)
    if zero.size and X.dtype != np.float32:
        zero = zero[~X[zero].any(axis=1)]  # float64 squares of tiny entries underflow to 0
    if zero.size:
        shown = ", ".join(str(i) for i in zero[:10]) + (", ..." if zero.size > 10 else "")
        raise ValueError(
            f"{name} has {zero.size} row(s) with zero norm (row index {shown}); the cosine "
            "of a zero vector is undefined. Drop these rows or replace them before use."
        )


def _divide_by_norms(X, squared_norms):
    """Divide the rows of ``X`` in place by their norms; return the norms (float64).

    Zero rows stay zero. float32 rows: the float64 squares of float32 entries neither
    overflow nor underflow, so their norms are exact; a norm that float32 cannot hold
    (huge entries: it would overflow to inf and the row become zeros; subnormal
    entries: it would lose its precision) is divided in float64. float64 rows whose
    squares overflow or underflow are first divided by their largest entry.
    """
    norms = np.sqrt(squared_norms)
    if X.dtype == np.float32:
        extreme = (norms > _F32_MAX) | ((norms < _F32_TINY) & (norms > 0))
        X /= np.where(extreme | (norms == 0), 1.0, norms).astype(np.float32)[:, np.newaxis]
        if extreme.any():
            rows = np.flatnonzero(extreme)
            X[rows] = X[rows] / norms[rows, np.newaxis]
        return norms
    extreme = ~(norms < _F64_SAFE_MAX) | (norms < _F64_SAFE_MIN)  # zero and NaN rows too
    X /= np.where(extreme, 1.0, norms)[:, np.newaxis]
    if extreme.any():
        rows = np.flatnonzero(extreme)
        block = X[rows]
        # A zero row keeps a scale of 1 (the squares of a tiny row may all underflow).
        scale = np.abs(block).max(axis=1)
        scale = np.where(scale > 0, scale, 1.0)
        block /= scale[:, np.newaxis]
        scaled_norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        block /= np.where(scaled_norms > 0, scaled_norms, 1.0)[:, np.newaxis]
        X[rows] = block
        norms[rows] = scale * scaled_norms
    return norms


def normalize_rows(X, *, zero_rows="raise", dtype=np.float32, copy=True, name="X"):
    """Scale each row of ``X`` to unit Euclidean norm: skembed's one row normaliser.

    Norms are computed in float64 (float64 rows of extreme magnitude are first scaled
    by their largest entry), so rows of huge or tiny entries come out of unit norm
    instead of as zeros or distorted rows. Every module normalises rows through this
    function; what happens to a row of zeros is the caller's explicit choice.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to normalise. Converted to ``dtype``.
    zero_rows : {"raise", "keep"}, default="raise"
        A row of zeros has no direction: ``"raise"`` refuses it with a ValueError
        naming its index; ``"keep"`` returns it as a row of zeros.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Floating type of the result.
    copy : bool, default=True
        If False and ``X`` is already a writeable array of ``dtype``, normalise in place.
    name : str, default="X"
        Name of the array in error messages.

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features), dtype ``dtype``
        Rows of unit norm (and, with ``zero_rows="keep"``, rows of zeros).

    Raises
    ------
    ValueError
        If ``zero_rows="raise"`` and a row has zero norm; the message gives its index.

    See Also
    --------
    row_norms_and_normalize : The same, also returning the norms (for a gradient).

    Examples
    --------
    >>> from skembed._math import normalize_rows
    >>> normalize_rows([[3.0, 4.0], [0.0, 0.0]], zero_rows="keep")
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    return row_norms_and_normalize(X, zero_rows=zero_rows, dtype=dtype, copy=copy, name=name)[0]


def row_norms_and_normalize(X, *, zero_rows="raise", dtype=np.float32, copy=True, name="X"):
    """:func:`normalize_rows`, also returning the norms the rows were divided by.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to normalise.
    zero_rows : {"raise", "keep"}, default="raise"
        As in :func:`normalize_rows`.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Floating type of the result.
    copy : bool, default=True
        As in :func:`normalize_rows`.
    name : str, default="X"
        Name of the array in error messages.

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features), dtype ``dtype``
        As returned by :func:`normalize_rows`.
    norms : ndarray of shape (n_samples,), dtype float64
        Euclidean norm of each input row (0 for a zero row).

    Examples
    --------
    >>> from skembed._math import row_norms_and_normalize
    >>> unit, norms = row_norms_and_normalize([[3.0, 4.0]], dtype="float64")
    >>> unit.tolist(), norms.tolist()
    ([[0.6, 0.8]], [5.0])
    """
    original = np.asarray(X)
    X = _as_float_2d(original, name, dtype)
    if X is original and (copy or not X.flags.writeable):
        X = X.copy()
    squared_norms = _squared_row_norms(X)
    _check_zero_rows(X, squared_norms, zero_rows, name)
    return X, _divide_by_norms(X, squared_norms)


def normalize_rows_checked(X):
    """Unit-norm float32 rows of vectors of any magnitude, and the rows that have none.

    For vectors from outside (a server's answer, float32 or float64). A row whose
    largest entry is far from 1 (beyond 2**-60..2**60) is first divided by the power
    of two nearest that entry, which is exact, so that no square overflows or
    underflows whatever the magnitude (float64 rows beyond float32's range included);
    every other row comes out bit for bit as :func:`normalize_rows` gives it (scaled
    ones too, as far as float32 holds them). A row that cannot be normalised is not
    returned as zeros or NaN but reported: a row of zeros, a row with a NaN or an
    infinity, and a row so small that its entries are below ``X``'s normal range and
    no longer carry its direction to float32 precision.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), float32 or float64
        Rows to normalise; other numeric types are read as float64. ``n_features``
        must be at least 1.

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features), dtype float32
        Rows of unit norm; the rows refused are zeros.
    refused : dict of {int: str}
        The row index and the reason of each row that cannot be normalised.

    Examples
    --------
    >>> from skembed._math import normalize_rows_checked
    >>> unit, refused = normalize_rows_checked([[3e30, 4e30], [0.0, 0.0], [1.0, float("nan")]])
    >>> [round(value, 6) for value in unit[0].tolist()]
    [0.6, 0.8]
    >>> refused
    {1: 'all zeros', 2: 'not finite (NaN or infinity)'}
    """
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"Expected a 2-D array of at least one column, got shape {X.shape}.")
    n_rows, width = X.shape
    finite = np.isfinite(X).all(axis=1)
    with np.errstate(invalid="ignore"):
        largest = np.where(finite, np.abs(X).max(axis=1), 0.0).astype(np.float64)
    usable = finite & (largest > 0)
    out = np.zeros((n_rows, width), dtype=np.float32)
    # The common case: float32 can hold the row and its norm's square is exact in
    # float64, so normalize_rows takes it as it is.
    plain = usable & (largest >= _PLAIN_MIN) & (largest <= _PLAIN_MAX)
    if plain.all():
        return normalize_rows(X), {}
    out[plain] = normalize_rows(X[plain].astype(np.float32, copy=False), copy=False)
    # The others: divided by the power of two nearest their largest entry (exact), so
    # that the largest is in [0.5, 1) and no square overflows or underflows.
    extreme = np.flatnonzero(usable & ~plain)
    _, exponent = np.frexp(largest[extreme])
    scaled = np.ldexp(X[extreme].astype(np.float64), -exponent[:, np.newaxis])
    norms = np.ldexp(np.sqrt(np.einsum("ij,ij->i", scaled, scaled)), exponent)
    # Entries below the normal range keep an absolute precision of half their spacing,
    # so the direction of a row of norm below tiny * sqrt(width) is off by more than
    # float32's own rounding.
    faithful = norms >= float(np.finfo(X.dtype).tiny) * np.sqrt(width)
    out[extreme[faithful]] = normalize_rows(scaled[faithful].astype(np.float32), copy=False)
    refused = {int(i): "not finite (NaN or infinity)" for i in np.flatnonzero(~finite)}
    refused.update({int(i): "all zeros" for i in np.flatnonzero(finite & (largest == 0))})
    small = f"too small to carry a direction (entries below {X.dtype}'s normal range)"
    refused.update({int(i): small for i in extreme[~faithful]})
    return out, dict(sorted(refused.items()))


def l2_normalize(X, *, copy=True, name="X"):
    """Scale each row of ``X`` to unit Euclidean norm, in float32; refuse zero rows.

    :func:`normalize_rows` with ``zero_rows="raise"``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to normalise. Converted to float32.
    copy : bool, default=True
        If False and ``X`` is already a writeable float32 array, normalise in place.
    name : str, default="X"
        Name of the array in error messages.

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features), dtype float32
        Rows of unit norm.

    Raises
    ------
    ValueError
        If a row has zero norm; the message gives its index.

    Examples
    --------
    >>> from skembed._math import l2_normalize
    >>> l2_normalize([[3.0, 4.0]])
    array([[0.6, 0.8]], dtype=float32)
    """
    return normalize_rows(X, zero_rows="raise", copy=copy, name=name)


def unit_norm_rows(X, *, copy=True, name="X"):
    """Return ``X`` as float32 with unit-norm rows, copying only when needed.

    Rows already of unit norm (to float32 precision) are the common case for
    embeddings; they are returned as they are, without a copy. Other rows are
    normalised as :func:`normalize_rows` does, with ``zero_rows="raise"``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to check and, if needed, normalise.
    copy : bool, default=True
        If False, rows that need it are normalised in place when ``X`` is a writeable
        float32 array.
    name : str, default="X"
        Name of the array in error messages.

    Returns
    -------
    X_unit : ndarray of shape (n_samples, n_features), dtype float32
        ``X`` itself when it is float32 with unit-norm rows, else a normalised copy.

    Raises
    ------
    ValueError
        If a row has zero norm.
    """
    original = np.asarray(X)
    X = _as_float_2d(original, name)
    squared_norms = _squared_row_norms(X)
    if np.all(np.abs(squared_norms - 1.0) <= 2 * _UNIT_NORM_ATOL):
        return X
    _check_zero_rows(X, squared_norms, "raise", name)
    if X is original and (copy or not X.flags.writeable):
        X = X.copy()
    _divide_by_norms(X, squared_norms)
    return X


@cache
def _blas_controller():
    # Imported lazily: threadpoolctl inspects the loaded libraries when first used.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _default_n_threads():
    blas = _blas_controller().select(user_api="blas")
    counts = [lib.num_threads for lib in blas.lib_controllers]
    return max(counts) if counts else (os.cpu_count() or 1)


def _resolve_n_threads(n_threads):
    if n_threads is None:
        return _default_n_threads()
    if n_threads < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_threads)
    return max(1, int(n_threads))


def _thread_bytes(query_block, base_block, n_features):
    """Upper bound on the temporaries of one scanning thread."""
    # Per score of a block: the float32 score and its mask, and for up to
    # _DENSE_FRACTION of them a flat index, a row, a column and a score. Per row chunk
    # of a dense merge: a float32 copy and pool and an int64 argpartition. Per query:
    # its row, the running top-k and the pending candidates.
    chunk = min(query_block, _ROW_CHUNK)
    per_score = 5 + 28 * _DENSE_FRACTION
    return int(
        per_score * query_block * base_block
        + 16 * chunk * (base_block + 64)
        + (512 + 4 * n_features) * query_block
    )


def _block_shape(n_queries, n_base, n_features, n_threads, working_memory):
    """Query and fitted-row block sizes whose temporaries fit ``working_memory`` MiB.

    Without a bound, the preferred shapes use at most about 30 MiB per thread.
    """
    query_block = min(_QUERY_BLOCK, n_queries)
    base_block = min(_BASE_BLOCK, n_base)
    if working_memory is None:
        return query_block, base_block
    per_thread = working_memory * _MIB / n_threads
    # Shrink the query side first (it costs sgemm least), then the fitted side.
    while _thread_bytes(query_block, base_block, n_features) > per_thread:
        if query_block > 64:
            query_block //= 2
        elif base_block > 256:
            base_block //= 2
        elif query_block > 1:
            query_block //= 2
        elif base_block > 1:
            base_block //= 2
        else:
            break
    return max(query_block, 1), max(base_block, 1)


class _TopK:
    """Running ``k`` best (score, index) pairs of a block of queries."""

    def __init__(self, n_queries, k):
        self.k = k
        self.n_queries = n_queries
        self.scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        self.indices = np.full((n_queries, k), -1, dtype=np.int64)
        # The k-th best score of each query; a new score must beat it to enter.
        self.threshold = np.full(n_queries, -np.inf, dtype=np.float32)
        # Candidates not merged yet: merging costs a fixed overhead, so it waits until
        # about two per query have gathered. Thresholds lag a little meanwhile, which
        # lets a few more candidates in but changes no result.
        self._pending = []
        self._n_pending = 0
        self._flush_at = 2 * n_queries

    def push_block(self, scores_t, offset, mask):
        """Add a (width, n_queries) block: scores of the fitted rows ``offset + i``.

        ``mask`` is a boolean scratch array of the same shape.
        """
        # Transposed blocks: the comparison with one threshold per column runs as a
        # plain vector-vector loop, faster than broadcasting one per row.
        np.greater(scores_t, self.threshold, out=mask)
        n_candidates = np.count_nonzero(mask)
        if n_candidates > _DENSE_FRACTION * mask.size:
            # Early blocks: most scores enter, a partition of each row is cheaper.
            self.flush()
            for start in range(0, self.n_queries, _ROW_CHUNK):
                stop = min(start + _ROW_CHUNK, self.n_queries)
                self._merge_dense(np.arange(start, stop), scores_t[:, start:stop].T, offset)
        elif n_candidates:
            # flatnonzero is several times faster than a 2-D nonzero.
            flat = np.flatnonzero(mask)
            rows, queries = np.divmod(flat, self.n_queries)
            self._pending.append((queries, scores_t.ravel()[flat], rows + offset))
            self._n_pending += n_candidates
            if self._n_pending >= self._flush_at:
                self.flush()

    def flush(self):
        """Merge the pending candidates."""
        if not self._pending:
            return
        queries, scores, indices = (
            np.concatenate(part) for part in zip(*self._pending, strict=True)
        )
        self._pending, self._n_pending = [], 0
        order = np.argsort(queries, kind="stable")
        self.push_pairs(queries[order], scores[order], indices[order])

    def _merge_dense(self, rows, sub, offset):
        k = self.k
        pool = np.concatenate([self.scores[rows], sub], axis=1)
        best = np.argpartition(pool, pool.shape[1] - k, axis=1)[:, -k:]
        from_old = best < k
        old_indices = np.take_along_axis(self.indices[rows], np.minimum(best, k - 1), axis=1)
        self.scores[rows] = np.take_along_axis(pool, best, axis=1)
        self.indices[rows] = np.where(from_old, old_indices, best - k + offset)
        self.threshold[rows] = self.scores[rows].min(axis=1)

    def push_pairs(self, rows, scores, indices):
        """Merge candidates: fitted row ``indices[i]`` scores ``scores[i]`` for query ``rows[i]``.

        ``rows`` must be sorted.
        """
        # Row chunks keep the padded pools small even when one query has many candidates.
        bounds = np.searchsorted(rows, np.arange(0, self.n_queries + _ROW_CHUNK, _ROW_CHUNK))
        for lo, hi in itertools.pairwise(bounds):
            if lo < hi:
                self._merge_pairs(rows[lo:hi], scores[lo:hi], indices[lo:hi])

    def _merge_pairs(self, rows, scores, indices):
        k = self.k
        starts = np.flatnonzero(np.diff(rows, prepend=-1))
        counts = np.diff(starts, append=rows.size)
        target = rows[starts]
        width = k + int(counts.max())
        # Position of each candidate within its row, after the k current entries.
        slot = np.arange(rows.size) - np.repeat(starts, counts) + k
        packed_row = np.repeat(np.arange(target.size), counts)

        pool_scores = np.full((target.size, width), -np.inf, dtype=np.float32)
        pool_indices = np.full((target.size, width), -1, dtype=np.int64)
        pool_scores[:, :k] = self.scores[target]
        pool_indices[:, :k] = self.indices[target]
        pool_scores[packed_row, slot] = scores
        pool_indices[packed_row, slot] = indices

        best = np.argpartition(pool_scores, width - k, axis=1)[:, -k:]
        self.scores[target] = np.take_along_axis(pool_scores, best, axis=1)
        self.indices[target] = np.take_along_axis(pool_indices, best, axis=1)
        self.threshold[target] = self.scores[target].min(axis=1)

    def merge(self, other):
        """Merge the result of another scan of the same queries."""
        rows = np.repeat(np.arange(self.n_queries), self.k)
        self.push_pairs(rows, other.scores.ravel(), other.indices.ravel())

    def sorted(self):
        """Scores descending, ties by ascending index."""
        order = np.lexsort((self.indices, -self.scores), axis=1)
        return (
            np.take_along_axis(self.scores, order, axis=1),
            np.take_along_axis(self.indices, order, axis=1),
        )


def _mask_self(scores, row_offset, column_offset):
    """Hide the pairs (i, i) of a block of a matrix of the fitted rows with themselves."""
    n_rows, width = scores.shape
    lo = max(row_offset, column_offset)
    hi = min(row_offset + n_rows, column_offset + width)
    if lo < hi:
        own = np.arange(lo, hi)
        scores[own - row_offset, own - column_offset] = -np.inf


def _scan(queries, base, query_offset, start, stop, k, base_block, exclude_self):
    """Top-k of ``queries`` against the fitted rows ``start:stop``."""
    n_queries = queries.shape[0]
    top = _TopK(n_queries, k)
    score_buffer = np.empty(base_block * n_queries, dtype=np.float32)
    mask_buffer = np.empty(base_block * n_queries, dtype=bool)
    # A narrow first block: it sets the thresholds with a dense partition, the one
    # selection step that costs as much as the product itself.
    first_stop = min(start + min(base_block, max(256, 8 * k)), stop)
    for block_start in [start, *range(first_stop, stop, base_block)]:
        block_stop = first_stop if block_start == start else min(block_start + base_block, stop)
        # Contiguous views, also for the narrower blocks.
        shape = (block_stop - block_start, n_queries)
        size = shape[0] * shape[1]
        scores_t = score_buffer[:size].reshape(shape)
        np.matmul(base[block_start:block_stop], queries.T, out=scores_t)
        if exclude_self:
            _mask_self(scores_t, block_start, query_offset)
        top.push_block(scores_t, block_start, mask_buffer[:size].reshape(shape))
    top.flush()
    return top


def _run_sharded(scan, n_queries, n_base, query_block, n_threads, flops):
    """Run ``scan(query_start, query_stop, base_start, base_stop)`` over all blocks.

    Each query block scans the fitted rows in ``n_threads`` contiguous shards, one per
    thread with a single-threaded BLAS, and the shards' top-k are merged.
    """
    n_threads = min(n_threads, max(1, n_base // _BASE_BLOCK))
    tops = []
    if n_threads == 1 or flops < _MIN_PARALLEL_FLOPS:
        for q0 in range(0, n_queries, query_block):
            q1 = min(q0 + query_block, n_queries)
            tops.append(scan(q0, q1, 0, n_base))
        return tops
    bounds = np.linspace(0, n_base, n_threads + 1).astype(np.int64)
    with (
        _blas_controller().limit(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=n_threads) as pool,
    ):
        for q0 in range(0, n_queries, query_block):
            q1 = min(q0 + query_block, n_queries)
            shards = [
                pool.submit(scan, q0, q1, int(bounds[t]), int(bounds[t + 1]))
                for t in range(n_threads)
            ]
            top = shards[0].result()
            for shard in shards[1:]:
                top.merge(shard.result())
            tops.append(top)
    return tops


def _finish(tops, n_queries, k):
    distances = np.empty((n_queries, k), dtype=np.float32)
    indices = np.empty((n_queries, k), dtype=np.int64)
    start = 0
    for top in tops:
        scores, idx = top.sorted()
        stop = start + scores.shape[0]
        # Cosine distance as scikit-learn computes it: 1 - cos, clipped to [0, 2].
        np.clip(1.0 - scores, 0.0, 2.0, out=distances[start:stop])
        indices[start:stop] = idx
        start = stop
    return distances, indices


def _check_k(k, n_base, exclude_self):
    available = n_base - 1 if exclude_self else n_base
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}], got k={k}.")


def cosine_topk(queries, base, k, *, exclude_self=False, working_memory=None, n_threads=None):
    """Exact ``k`` nearest fitted rows of each query by cosine distance.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features), dtype float32
        Unit-norm query rows.
    base : ndarray of shape (n_base, n_features), dtype float32
        Unit-norm rows to search.
    k : int
        Number of neighbours per query.
    exclude_self : bool, default=False
        ``queries`` is ``base`` itself: never return row ``i`` as a neighbour of
        query ``i`` (duplicates of it are still returned).
    working_memory : float, default=None
        Bound, in MiB, on the temporary buffers; the result arrays are not counted.
        None uses the preferred block shapes (at most about 30 MiB per thread).
    n_threads : int, default=None
        Threads to use; None uses as many as the BLAS does, negative values count
        back from the number of CPUs.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), dtype float32
        Cosine distances ``1 - cos``, ascending along each row.
    indices : ndarray of shape (n_queries, k), dtype int64
        Row indices into ``base``; ties are ordered by index.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed._math import cosine_topk, l2_normalize
    >>> base = l2_normalize([[1, 0], [0, 1], [1, 1]])
    >>> distances, indices = cosine_topk(l2_normalize([[1, 0.1]]), base, k=2)
    >>> indices
    array([[0, 2]])
    >>> distances.round(3)
    array([[0.005, 0.226]], dtype=float32)
    """
    n_queries, n_base = queries.shape[0], base.shape[0]
    _check_k(k, n_base, exclude_self)
    n_threads = _resolve_n_threads(n_threads)
    query_block, base_block = _block_shape(
        n_queries, n_base, queries.shape[1], n_threads, working_memory
    )

    def scan(q0, q1, start, stop):
        return _scan(queries[q0:q1], base, q0, start, stop, k, base_block, exclude_self)

    flops = float(n_queries) * n_base * queries.shape[1]
    tops = _run_sharded(scan, n_queries, n_base, query_block, n_threads, flops)
    return _finish(tops, n_queries, k)


def cosine_radius(
    queries, base, radius, *, exclude_self=False, sort_results=False, working_memory=None
):
    """Fitted rows within cosine distance ``radius`` of each query.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features), dtype float32
        Unit-norm query rows.
    base : ndarray of shape (n_base, n_features), dtype float32
        Unit-norm rows to search.
    radius : float
        Largest cosine distance returned (inclusive).
    exclude_self : bool, default=False
        ``queries`` is ``base`` itself: never return row ``i`` for query ``i``.
    sort_results : bool, default=False
        Sort each query's neighbours by increasing distance (ties by index);
        otherwise they come by increasing index.
    working_memory : float, default=None
        Bound, in MiB, on the block of scores; the results are not counted.

    Returns
    -------
    distances : list of ndarray of dtype float32
        For each query, the distances of its neighbours.
    indices : list of ndarray of dtype int64
        For each query, the indices of its neighbours in ``base``.

    Examples
    --------
    >>> from skembed._math import cosine_radius, l2_normalize
    >>> base = l2_normalize([[1, 0], [0, 1], [1, 1]])
    >>> distances, indices = cosine_radius(l2_normalize([[1, 0.1]]), base, 0.3)
    >>> indices
    [array([0, 2])]
    """
    n_queries, n_base = queries.shape[0], base.shape[0]
    query_block, base_block = _block_shape(n_queries, n_base, queries.shape[1], 1, working_memory)
    # Candidates are chosen on the score, with a margin, then kept on the distance
    # computed exactly as it is returned.
    floor = np.float32(1.0 - radius - 1e-6)
    buffer = np.empty((query_block, base_block), dtype=np.float32)
    found_rows, found_cols, found_dist = [], [], []
    for q0 in range(0, n_queries, query_block):
        q1 = min(q0 + query_block, n_queries)
        for b0 in range(0, n_base, base_block):
            b1 = min(b0 + base_block, n_base)
            scores = buffer[: q1 - q0, : b1 - b0]
            np.matmul(queries[q0:q1], base[b0:b1].T, out=scores)
            if exclude_self:
                _mask_self(scores, q0, b0)
            r, c = np.nonzero(scores >= floor)
            dist = np.clip(1.0 - scores[r, c], 0.0, 2.0)
            keep = dist <= radius
            found_rows.append(r[keep] + q0)
            found_cols.append(c[keep] + b0)
            found_dist.append(dist[keep])
    rows = np.concatenate(found_rows) if found_rows else np.empty(0, dtype=np.int64)
    cols = np.concatenate(found_cols).astype(np.int64) if found_cols else rows
    dist = np.concatenate(found_dist) if found_dist else np.empty(0, dtype=np.float32)
    # One stable sort groups the pairs by query, then by distance or index.
    order = np.lexsort((cols, dist, rows) if sort_results else (cols, rows))
    splits = np.cumsum(np.bincount(rows, minlength=n_queries))[:-1]
    return np.split(dist[order], splits), np.split(cols[order], splits)


def mean_pairwise_cosine_distance(X, *, chunk_rows=65536):
    """Mean cosine distance over all pairs of distinct rows of ``X``.

    For unit-norm rows, the sum of all pairwise cosines is the squared norm of the
    sum of the rows, so the mean over the ``n (n - 1)`` ordered pairs of distinct rows
    needs one pass over ``X`` (in chunks, accumulated in float64), not ``n**2``
    products.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float32
        Unit-norm rows, at least two.
    chunk_rows : int, default=65536
        Rows converted to float64 at a time.

    Returns
    -------
    mean_distance : float
        In [0, 2]: 0 when all rows are equal, about 1 for unrelated directions.

    Examples
    --------
    >>> from skembed._math import l2_normalize, mean_pairwise_cosine_distance
    >>> mean_pairwise_cosine_distance(l2_normalize([[1, 0], [0, 1]]))
    1.0
    """
    n_samples = X.shape[0]
    if n_samples < 2:
        raise ValueError(f"At least 2 rows are needed for pairwise distances, got {n_samples}.")
    total = np.zeros(X.shape[1], dtype=np.float64)
    squared = 0.0
    for start in range(0, n_samples, chunk_rows):
        block = X[start : start + chunk_rows].astype(np.float64)
        total += block.sum(axis=0)
        squared += float(np.einsum("ij,ij->", block, block))
    mean_cosine = (float(total @ total) - squared) / (n_samples * (n_samples - 1))
    return min(max(1.0 - mean_cosine, 0.0), 2.0)
