"""The embedding job: de-duplicate, read the cache, fetch what is missing, write as it arrives.

Both transformers call :func:`embed_texts`; it knows nothing of scikit-learn. The
guarantees that matter to a paying user live here: every vector a backend hands back
is written to the cache *before* anything else can fail, a text already in the cache
is never sent again, and nothing is sent that would cross a spending limit.

Imports run one way: the job uses the spending limits (:mod:`skembed._spending`) and
the cache; estimates (:mod:`skembed._cost`) and usage reports (:mod:`skembed._usage`)
sit above it. Each call publishes its :class:`EmbeddingReport` to the listeners
subscribed with :func:`report_listener`, which is how :func:`skembed.track_usage`
hears of it without the job knowing that usage reports exist.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

from ._cache import cache_key
from ._cache._base import key_array, width_conflict, width_state
from ._cache._ledger import note_written
from ._spending import Spending, format_usd, model_name
from ._validation import describe_rows
from .backends import EmbeddingError

__all__ = ["EmbeddingReport", "cached_mask", "embed_texts", "report_listener"]

logger = logging.getLogger("skembed")

#: Seconds a claim on a text lasts unless renewed (a third of it between renewals):
#: how long a dead worker's texts wait before another worker takes them over.
CLAIM_SECONDS = 30.0
# Waiting for texts another worker is fetching: the first pause between looks, the
# pause while it stores some at every look, and the longest.
_FIRST_WAIT = 0.02
_PROGRESS_WAIT = 0.05
_MAX_WAIT = 0.5


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
    model : str
        Model of the backend.
    n_requests : int
        HTTP requests made, retries included (0 for a local backend).
    n_tokens : int
        Tokens of the requests that were billed, or may have been (lost answers).
    usd : float or None
        Their cost at the backend's price; ``None`` when the price is unknown.
    """

    n_rows: int
    n_unique: int
    n_cache_hits: int
    n_embedded: int
    seconds: float
    model: str = ""
    n_requests: int = 0
    n_tokens: int = 0
    usd: float | None = 0.0


_listeners = []  # callables handed each call's EmbeddingReport (track_usage blocks)
_listeners_lock = threading.Lock()


@contextlib.contextmanager
def report_listener(listener):
    """Hand ``listener`` the :class:`EmbeddingReport` of every call ending in the block.

    Calls from all threads of this process are reported, failed ones included (what
    they sent was paid for). ``listener`` runs in the calling thread, after the call's
    vectors are cached: it must be quick and must not raise.
    """
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def _publish(report):
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(report)


def _deduplicate(texts):
    """Return the distinct texts in first-seen order and, per row, its distinct index."""
    position = {}
    inverse = np.fromiter(
        (position.setdefault(text, len(position)) for text in texts),
        dtype=np.intp,
        count=len(texts),
    )
    return list(position), inverse


def cached_mask(unique, backend, cache):
    """Which of the distinct texts ``unique`` the cache holds (no hit counted)."""
    dim = backend.n_dimensions
    if cache is not None and dim is None and unique:
        dim = cache.recorded_width(backend.cache_namespace)
    if cache is None or dim is None or not unique:
        # Of a model of unknown width, never seen by this cache, nothing can be read
        # before its first answer.
        return np.zeros(len(unique), dtype=bool)
    keys = [cache_key(backend.cache_namespace, text) for text in unique]
    return cache.get(keys, dim, count=False)[0]


def embed_texts(
    texts, backend, cache=None, *, max_tokens=None, max_cost=None, rows=None, describe=None
):
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
    max_tokens : int, default=None
        Most tokens this call may send (cached texts are free).
    max_cost : float, default=None
        Most US dollars this call may spend, at the backend's price. The limits of
        active :func:`skembed.budget` blocks apply too.
    rows : array-like of int, default=None
        The caller's row number of each text, for error messages (default: position).
    describe : callable, default=None
        Names the caller's rows in a message (``rows -> str``, such as a
        :class:`~skembed._validation.RowNames` naming index labels and the column);
        default :func:`~skembed._validation.describe_rows`.

    Returns
    -------
    vectors : ndarray of shape (len(texts), d), dtype float32
    report : EmbeddingReport

    Raises
    ------
    EmbeddingError
        From the backend, with ``rows`` translated to the caller's rows; the vectors
        received before the error are in the cache by then.
    BudgetExceededError
        Before sending texts that would cross a limit.
    """
    start = time.perf_counter()
    unique, inverse = _deduplicate(texts)
    job = _Job(backend, cache, unique, Spending(backend, max_tokens, max_cost))
    failed = True
    try:
        vectors = job.run()
        failed = False
    except EmbeddingError as error:
        renamed = _name_user_rows(error, job.fetching, inverse, rows, describe)
        if renamed is error:
            raise  # not "from error": an error that is its own cause loops pickling (tblib)
        raise renamed from error
    finally:
        # Also when failing: what was sent is paid for, and must show in the reports.
        report = job.report(len(texts), time.perf_counter() - start)
        # Which model the cache's new vectors belong to (it sees digests only), and a
        # one-time notice if the default cache grew past its size.
        note_written(cache, job.namespace, report.model, backend.n_dimensions, job.n_stored)
        _log(report, type(backend).__name__, failed)
        _publish(report)
    # Without duplicates the distinct texts are the rows, in order: no copy needed.
    return (vectors if len(unique) == len(texts) else vectors[inverse]), report


def _log(report, backend_name, failed):
    if not logger.isEnabledFor(logging.INFO):
        return
    logger.info(
        "%s %d rows (%d distinct): %d from cache, %d sent to %s (%s) in %d request(s), "
        "%d tokens, %s, %.2fs",
        "stopped by an error after asking for" if failed else "embedded",
        report.n_rows,
        report.n_unique,
        report.n_cache_hits,
        report.n_embedded,
        backend_name,
        report.model,
        report.n_requests,
        report.n_tokens,
        format_usd(report.usd),
        report.seconds,
    )


class _Job:
    """One call's work on distinct texts: cache reads, the fetch, write-through."""

    def __init__(self, backend, cache, unique, spending):
        self.backend = backend
        self.cache = cache
        self.unique = unique
        self.spending = spending
        self.namespace = backend.cache_namespace
        self.keys = None
        self.n_sent = 0  # distinct texts handed to the backend
        self.n_cache_hits = 0  # distinct texts read from the cache
        self.n_stored = 0  # vectors written to the cache
        self.fetching = np.arange(0)  # positions being fetched (to name rows on error)

    def report(self, n_rows, seconds):
        spending = self.spending
        return EmbeddingReport(
            n_rows=n_rows,
            n_unique=len(self.unique),
            n_cache_hits=self.n_cache_hits,
            n_embedded=self.n_sent,
            seconds=seconds,
            model=model_name(self.backend),
            n_requests=spending.requests,
            n_tokens=spending.tokens,
            usd=spending.usd,
        )

    def run(self):
        if self.cache is None:
            return self._fetch(np.arange(len(self.unique)), None)
        # Before the cache is read: a call's outcome must not depend on what the cache
        # holds (under long_input="error", a long text cached by a "truncate" run is
        # still refused). Without a cache, ``embed`` refuses the same texts.
        self.fetching = np.arange(len(self.unique))
        self.backend.check_inputs(self.unique)
        self.keys = [cache_key(self.namespace, text) for text in self.unique]
        if self.backend.n_dimensions is None:
            self._learn_width()
        dim = self.backend.n_dimensions
        found, vectors = self.cache.get(self.keys, dim)  # a fresh array, zero rows for misses
        todo = np.flatnonzero(~found)
        # Not counting the text fetched above to learn the width: it was paid for.
        self.n_cache_hits = len(self.unique) - len(todo) - self.n_sent
        if not len(todo):
            return vectors
        if not self.backend.pays_per_text:
            # A local model costs CPU time only. Taking turns would serialise workers
            # that embed different texts (a big column split over processes), while a
            # text two of them share costs no more wall time computed twice in
            # parallel than waited for.
            self._fetch(todo, vectors)
            return vectors
        self._fetch_unclaimed(todo, vectors, dim)
        return vectors

    def _fetch_unclaimed(self, todo, vectors, dim):
        """Fetch the misses ``todo`` no other worker is fetching; wait only for the rest.

        Each round claims what it can (``CacheStore.claims``), then reads the cache for
        the claimed texts, then fetches what is still missing: an owner stores a vector
        before it releases the claim, so a text stored and let go between our first
        read and our claim is found by the read after it, never paid twice. Texts
        claimed by others are read from the cache once their owner has stored them,
        or claimed here when their owner let them go without (it failed) or died (its
        claims lapsed).
        """
        claims = self.cache.claims()
        owner = uuid.uuid4().hex[:16]  # this job; 64 random bits tell it from any other
        keys = key_array([self.keys[i] for i in todo])
        pending = np.arange(len(todo))  # into todo and keys
        delay = _FIRST_WAIT
        with _Renewal(claims, owner) as renewal:
            try:
                while pending.size:
                    mine = claims.take(keys[pending], owner, CLAIM_SECONDS)
                    ours = pending[mine]
                    if ours.size:
                        held = keys[ours]
                        renewal.hold(held)
                        try:
                            self._read(todo[ours], held, vectors, dim, missing=True)
                        finally:
                            renewal.drop(held)
                        claims.release(held, owner)
                        delay = _FIRST_WAIT
                    theirs = pending[~mine]
                    if theirs.size and not ours.size:
                        time.sleep(delay)  # all claimed by others: give them time
                    if theirs.size:
                        found = self._read(todo[theirs], keys[theirs], vectors, dim)
                        # Look again soon while their owners make progress, less and
                        # less often while they do not (a long Batch API job).
                        delay = _PROGRESS_WAIT if found.any() else min(2 * delay, _MAX_WAIT)
                        theirs = theirs[~found]
                    pending = theirs
            except BaseException:
                # Whatever stopped the job, a Ctrl-C included, and wherever it fell (also
                # between a take and the try that releases what it took): let go of
                # every claim this job may hold, so that other workers proceed at once
                # instead of waiting for them to lapse. Releasing compares the owner, so
                # texts this job never held are left alone. The error that stopped the
                # job is the one to see; claims that cannot be released lapse.
                with contextlib.suppress(Exception):
                    claims.release(keys[pending], owner)
                raise

    def _read(self, positions, keys, vectors, dim, *, missing=False):
        """Fill ``vectors`` from the cache at ``positions``; with ``missing``, fetch the
        others. Return which were found."""
        found, cached = self.cache.get(keys, dim, count=False)
        vectors[positions[found]] = cached[found]
        self.n_cache_hits += int(found.sum())
        if missing and not found.all():
            self._fetch(positions[~found], vectors)
        return found

    def _learn_width(self):
        """The width of a model the registry does not know: from the cache, or paid for.

        Cached vectors are stored per width, so the cache can be read only once it is
        known. The first job of a namespace embeds one text to learn it (the backend
        keeps it), and records it in the cache: every later clone, fold and process
        reads it there instead of paying for that text again. Under the namespace's
        lock, so that parallel folds pay for the probe once.
        """
        lock = self.cache.lock(self.namespace) if self.backend.pays_per_text else None
        with lock or contextlib.nullcontext():
            width = self.cache.recorded_width(self.namespace)
            if width is not None:
                self.backend.use_recorded_width(width)
                if self.backend.n_dimensions != width:  # learnt meanwhile, by a thread
                    location = self.cache.state(width_state(self.namespace)).location
                    raise ValueError(width_conflict(width, self.backend.n_dimensions, location))
                return
            self._fetch(np.array([0]), None)
            self.cache.record_width(self.namespace, self.backend.n_dimensions)

    def _fetch(self, todo, vectors):
        """Embed ``unique[todo]``; store each batch in the cache and ``vectors`` on arrival."""
        self.fetching = todo
        texts = [self.unique[i] for i in todo]
        spending = self.spending
        options = {"on_result": self._store(todo, vectors)}
        if self.backend.resumable:
            options["store"] = self.cache  # keeps what resumes work paid for (batches)
        if not spending.billed:
            self.n_sent += len(todo)
            return self.backend.embed(texts, **options)
        n_tokens = int(self.backend.count_billed_tokens(texts).sum()) if spending.limited else 0
        meter = spending.authorize(n_tokens, len(texts))
        self.n_sent += len(todo)
        try:
            return self.backend.embed(texts, meter=meter, **options)
        finally:
            spending.charge(meter)

    def _store(self, todo, vectors):
        """The backend's callback: each batch into the cache (and ``vectors``) on arrival."""

        def on_result(positions, batch):
            rows = todo[positions]
            if self.cache is not None:
                self.cache.put([self.keys[i] for i in rows], batch)
                self.n_stored += len(rows)
            if vectors is not None:
                vectors[rows] = batch

        return on_result


class _Renewal:
    """Renew a job's claims while they are held (a thread), so that only a dead job's
    claims lapse."""

    def __init__(self, claims, owner):
        self.claims = claims
        self.owner = owner
        self.held = {}  # id -> keys array
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skembed-claims", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def hold(self, keys):
        with self._lock:
            self.held[id(keys)] = keys

    def drop(self, keys):
        with self._lock:
            self.held.pop(id(keys), None)

    def _run(self):
        while not self._stop.wait(CLAIM_SECONDS / 3):
            with self._lock:
                held = list(self.held.values())
            for keys in held:
                # A failed renewal only risks paying twice if this job then stalls for
                # a whole CLAIM_SECONDS; the next round tries again.
                with contextlib.suppress(Exception):
                    self.claims.renew(keys, self.owner, CLAIM_SECONDS)


def _name_user_rows(error, todo, inverse, user_rows=None, describe=None):
    """Translate backend positions (into ``todo``) into the caller's row numbers."""
    if not error.rows:
        return error
    distinct = todo[list(error.rows)]
    rows = np.flatnonzero(np.isin(inverse, distinct))
    if user_rows is not None:
        rows = np.asarray(user_rows)[rows]
    return error.with_rows(rows, f"{error.message} (input {(describe or describe_rows)(rows)})")
