"""The approximate and quantised search of CosineNearestNeighbors: int8 codes, usearch HNSW.

No scikit-learn here: :mod:`skembed.neighbors` validates, this module stores and searches.

- **int8 codes** with one scale per dimension (symmetric: ``x_j ~ scale_j * code_j``,
  ``scale_j = max_i |x_ij| / 127``). The scales fold into the query, so that
  ``(q * scale) @ code`` estimates ``q @ x`` with the per-dimension precision, in one
  float32 product. An HNSW graph links rows by plain products of their codes, so its
  codes share one scale (the largest), still the full int8 range, where usearch's
  own float-to-int8 cast assumes ``|x_j| <= 1`` and multiplies by 127.
- **HNSWIndex**: a usearch index (inner product on unit rows, so distance ``1 - cos``)
  over float32, float16 or those int8 codes, picklable (its bytes) and fork-safe
  (usearch starts its threads per call and holds none between calls).
"""

from __future__ import annotations

import importlib

import numpy as np

_MISSING = (
    'algorithm="hnsw" needs the usearch package: '
    "pip install 'skembed[ann]' (or pip install usearch)."
)
# usearch's own names of the storage precisions.
_USEARCH_DTYPES = {"float32": "f32", "float16": "f16", "int8": "i8"}
_CHUNK_ROWS = 65536


def import_usearch():
    """The ``usearch.index`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("usearch.index")
    except ImportError as exc:
        raise ImportError(_MISSING) from exc


def int8_scales(X):
    """Per-dimension scales of symmetric int8 codes: ``max_i |X_ij| / 127`` (1 where 0)."""
    peak = np.zeros(X.shape[1], dtype=np.float32)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        np.maximum(peak, np.abs(X[start : start + _CHUNK_ROWS]).max(axis=0), out=peak)
    peak[peak == 0] = 127.0  # an all-zero dimension: codes 0 whatever the scale
    return peak / np.float32(127.0)


def int8_codes(X, scales):
    """``round(X / scales)`` as int8, in chunks (no full-size float temporary)."""
    codes = np.empty(X.shape, dtype=np.int8)
    inverse = np.float32(1.0) / scales
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS] * inverse
        np.rint(block, out=block)
        np.clip(block, -127, 127, out=block)
        codes[start : start + _CHUNK_ROWS] = block
    return codes


def encode(X, storage, *, per_dimension=True):
    """The stored form of unit rows ``X``: ``(codes, scales)``; scales None unless int8.

    ``per_dimension=False`` gives every dimension the largest scale: what a graph
    needs, whose links are chosen by plain int8 products of stored rows (per-dimension
    scales would weight its metric by ``1 / scale_j**2``).
    """
    if storage == "int8":
        scales = int8_scales(X)
        if not per_dimension:
            scales = np.full_like(scales, scales.max())
        return int8_codes(X, scales), scales
    if storage == "float16":
        return X.astype(np.float16), None
    return X, None


def fold_queries(queries, scales):
    """Queries whose product with the stored codes estimates their product with the rows."""
    return queries if scales is None else queries * scales


def int8_queries(queries, scales):
    """int8 queries for a search among int8 codes: scales folded in, one scale per query.

    A positive factor per query changes no ranking, so each query uses its own full
    int8 range; an all-zero query stays zero (every product 0).
    """
    folded = fold_queries(queries, scales)
    peak = np.abs(folded).max(axis=1, keepdims=True)
    peak[peak == 0] = 1.0
    return np.clip(np.rint(folded * (127.0 / peak)), -127, 127).astype(np.int8)


def rescore(queries, base, candidates, k, *, exclude_self=False, query_offset=0, chunk=256):
    """Exact float32 top ``k`` among candidate rows: distances ``1 - q @ base[j]``.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features), dtype float32
        Unit-norm queries.
    base : ndarray or numpy.memmap of shape (n_base, n_features), dtype float32
        Unit-norm rows; only the candidate rows are read.
    candidates : ndarray of shape (n_queries, n_candidates), dtype int64
        Candidate row indices; -1 marks an empty slot. At least ``k`` valid per query.
    k : int
        Number of neighbours to keep.
    exclude_self : bool, default=False
        Query ``i`` is fitted row ``query_offset + i``: never return that row.

    Returns
    -------
    distances, indices : ndarrays of shape (n_queries, k)
        Ascending float32 cosine distances (clipped to [0, 2]), ties by index.
    """
    n_queries = queries.shape[0]
    distances = np.empty((n_queries, k), dtype=np.float32)
    indices = np.empty((n_queries, k), dtype=np.int64)
    for lo in range(0, n_queries, chunk):
        hi = min(lo + chunk, n_queries)
        ids = candidates[lo:hi]
        valid = ids >= 0
        if exclude_self:
            valid &= ids != np.arange(lo, hi)[:, np.newaxis] + query_offset
        safe = np.where(valid, ids, 0)
        # Read each candidate row once, in file order (a memory map reads pages in turn).
        unique, inverse = np.unique(safe, return_inverse=True)
        rows = np.asarray(base[unique], dtype=np.float32)[inverse.reshape(safe.shape)]
        scores = np.matmul(rows, queries[lo:hi, :, np.newaxis])[:, :, 0]
        scores[~valid] = -np.inf
        order = np.lexsort((safe, -scores), axis=1)[:, :k]
        best = np.take_along_axis(scores, order, axis=1)
        np.clip(1.0 - best, 0.0, 2.0, out=distances[lo:hi])
        indices[lo:hi] = np.take_along_axis(safe, order, axis=1)
    return distances, indices


class HNSWIndex:
    """A usearch HNSW graph over the stored rows, by inner product.

    Parameters
    ----------
    stored : ndarray of shape (n_samples, n_features)
        float32 or float16 unit rows, or int8 codes (searched with :func:`int8_queries`).
    storage : {"float32", "float16", "int8"}
        Precision of the vectors in the index.
    m, ef_construction : int
        Links per node and candidate list size while building.
    n_threads : int
        Threads of the build.
    """

    def __init__(self, stored, storage, *, m, ef_construction, n_threads):
        usearch = import_usearch()
        self.storage = storage
        self._index = usearch.Index(
            ndim=stored.shape[1],
            metric="ip",
            dtype=_USEARCH_DTYPES[storage],
            connectivity=m,
            expansion_add=ef_construction,
            # Keys are the row numbers: no key-to-slot table needed.
            enable_key_lookups=False,
        )
        self._index.add(np.arange(stored.shape[0], dtype=np.uint64), stored, threads=n_threads)

    @property
    def nbytes(self):
        """Bytes of the vectors and the graph (the index's serialised length).

        Not usearch's ``memory_usage``, which counts its allocation slack too: at
        100,000 x 384, connectivity 16, 286 MB against 168 MB serialised in float32 and
        85 MB against 53 MB in int8 (measured).
        """
        return int(self._index.serialized_length)

    def search(self, queries, count, *, ef, n_threads):
        """Row indices of about the ``count`` best rows of each query; -1 pads a short list."""
        self._index.expansion_search = max(int(ef), int(count))
        matches = self._index.search(queries, count, threads=n_threads)
        found = np.asarray(matches.keys, dtype=np.int64).reshape(len(queries), -1)
        # One query gives a Matches of the keys found, several a padded BatchMatches.
        counts = getattr(matches, "counts", [found.shape[1]])
        keys = np.full((len(queries), count), -1, dtype=np.int64)
        keys[:, : found.shape[1]] = found
        keys[np.arange(count) >= np.asarray(counts).reshape(-1, 1)] = -1
        return keys

    def __getstate__(self):
        # The compiled index cannot be pickled: its serialised bytes can.
        return {"storage": self.storage, "bytes": bytes(self._index.save())}

    def __setstate__(self, state):
        usearch = import_usearch()
        self.storage = state["storage"]
        self._index = usearch.Index.restore(bytearray(state["bytes"]))
