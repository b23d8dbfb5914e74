"""The embedding job: de-duplicate, read the cache, fetch what is missing, write as it arrives.

Both transformers call :func:`embed_texts`; it knows nothing of scikit-learn. The one
guarantee that matters to a paying user lives here: every vector a backend hands back
is written to the cache *before* anything else can fail, and a text already in the
cache is never sent again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ._validation import describe_rows
from .backends import EmbeddingError

__all__ = ["EmbeddingReport", "embed_texts"]

logger = logging.getLogger("skembed")


@dataclass(frozen=True)
class EmbeddingReport:
    """What one call to :func:`embed_texts` did.

    Attributes
    ----------
    n_rows : int
        Texts asked for.
    n_unique : int
        Distinct texts among them.
    n_cache_hits : int
        Distinct texts served by the cache.
    n_embedded : int
        Distinct texts sent to the backend.
    seconds : float
        Wall time of the call.
    """

    n_rows: int
    n_unique: int
    n_cache_hits: int
    n_embedded: int
    seconds: float


def _deduplicate(texts):
    """Return the distinct texts in first-seen order and, per row, its distinct index."""
    position = {}
    inverse = np.fromiter(
        (position.setdefault(text, len(position)) for text in texts),
        dtype=np.intp,
        count=len(texts),
    )
    return list(position), inverse


def embed_texts(texts, backend, cache=None):
    """Embed ``texts`` with ``backend``, reading and filling ``cache``.

    Parameters
    ----------
    texts : list of str
        Validated texts (non-empty strings).
    backend : EmbeddingBackend
        Turns distinct, uncached texts into vectors.
    cache : EmbeddingCache or None
        Persistent store shared by every process; ``None`` keeps only the in-call
        de-duplication.

    Returns
    -------
    vectors : ndarray of shape (len(texts), d), dtype float32
    report : EmbeddingReport

    Raises
    ------
    EmbeddingError
        From the backend, with ``rows`` translated to positions in ``texts``; the
        vectors received before the error are in the cache by then.
    """
    start = time.perf_counter()
    unique, inverse = _deduplicate(texts)
    job = _Job(backend, cache, unique)
    try:
        vectors = job.run()
    except EmbeddingError as error:
        raise _name_user_rows(error, job.fetching, inverse) from error
    report = EmbeddingReport(
        n_rows=len(texts),
        n_unique=len(unique),
        n_cache_hits=len(unique) - job.n_sent,
        n_embedded=job.n_sent,
        seconds=time.perf_counter() - start,
    )
    logger.info(
        "embedded %d rows (%d distinct): %d from cache, %d sent to %s in %.2fs",
        report.n_rows,
        report.n_unique,
        report.n_cache_hits,
        report.n_embedded,
        type(backend).__name__,
        report.seconds,
    )
    # Without duplicates the distinct texts are the rows, in order: no copy needed.
    return (vectors if len(unique) == len(texts) else vectors[inverse]), report


class _Job:
    """One call's work on distinct texts: cache reads, the fetch, write-through."""

    def __init__(self, backend, cache, unique):
        self.backend = backend
        self.cache = cache
        self.unique = unique
        self.namespace = backend.cache_namespace
        self.keys = None
        self.n_sent = 0  # distinct texts handed to the backend
        self.fetching = np.arange(0)  # positions being fetched (to name rows on error)

    def run(self):
        if self.cache is None:
            return self._fetch(np.arange(len(self.unique)), None)
        from ._cache import cache_key

        self.keys = [cache_key(self.namespace, text) for text in self.unique]
        dim = getattr(self.backend, "n_dimensions", None)
        if dim is None:
            # A model the registry does not know: learn its width from one text, so that
            # the cache can be read (cached vectors are stored per width).
            dim = self._fetch(np.array([0]), None).shape[1]
        found, vectors = self.cache.get(self.keys, dim)  # a fresh array, zero rows for misses
        todo = np.flatnonzero(~found)
        if len(todo):
            # Hold the cross-process lock while fetching: a parallel fold waiting on it
            # then finds our results in the cache instead of paying for them again.
            with self.cache.lock(self.namespace):
                found, cached = self.cache.get([self.keys[i] for i in todo], dim, count=False)
                vectors[todo[found]] = cached[found]
                if not found.all():
                    self._fetch(todo[~found], vectors)
        return vectors

    def _fetch(self, todo, vectors):
        """Embed ``unique[todo]``; store each batch in the cache and ``vectors`` on arrival."""
        self.fetching = todo
        self.n_sent += len(todo)

        def on_result(positions, batch):
            rows = todo[positions]
            if self.cache is not None:
                self.cache.put([self.keys[i] for i in rows], batch)
            if vectors is not None:
                vectors[rows] = batch

        return self.backend.embed([self.unique[i] for i in todo], on_result=on_result)


def _name_user_rows(error, todo, inverse):
    """Translate backend positions (into ``todo``) into the caller's row numbers."""
    if not error.rows:
        return error
    distinct = todo[list(error.rows)]
    rows = np.flatnonzero(np.isin(inverse, distinct))
    return error.with_rows(rows, f"{error.message} (input {describe_rows(rows)})")
