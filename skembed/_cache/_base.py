"""What every cache store is: the contract, its errors, its keys, and what stores share.

A store keeps float32 vectors under 32-byte keys from :func:`cache_key` (it never sees a
text) and hands them back to any process that asks. :class:`CacheStore` writes once what
is the same for every store: the checks of ``get``'s and ``put``'s arguments, the
hit/miss counters, the registry that gives each handle a fresh lock in a forked child and
saves its counts when the interpreter exits, and the name rules of the resumable state
kept next to the vectors. A new store is one subclass implementing ``_get``, ``_put``,
``_state``, ``lock``, ``stats``, ``clear`` and ``close``.

This module imports nothing else of skembed but the fork helper (``skembed._fork``).
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import hashlib
import json
import os
import re
import sys
import threading
import weakref

import numpy as np

from .._fork import keep_inherited

__all__ = [
    "KEY_SIZE",
    "VECTOR_ROOMS",
    "WIDTHS_ROOM",
    "CacheCorruptionError",
    "CacheError",
    "CacheStore",
    "CacheWarning",
    "StateBlob",
    "cache_key",
    "check_dim",
    "default_cache_dir",
    "key_array",
    "lock_name",
    "width_conflict",
    "width_state",
]

KEY_SIZE = 32


class CacheError(RuntimeError):
    """The embedding cache cannot be used as it is.

    Parameters
    ----------
    message : str
        What is wrong, and how to fix it.
    path : str
        The file or directory at fault.

    Attributes
    ----------
    path : str
        The file or directory at fault.

    Examples
    --------
    >>> from skembed import CacheError
    >>> CacheError("the cache was written by a newer skembed", "/tmp/cache").path
    '/tmp/cache'
    """

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


class CacheCorruptionError(CacheError):
    """A cache file is damaged: the cache refuses to serve a vector it cannot trust.

    Parameters
    ----------
    message : str
        What is damaged, and how to fix it.
    path : str
        The damaged file.

    Examples
    --------
    >>> from skembed import CacheCorruptionError, CacheError
    >>> error = CacheCorruptionError("checksum mismatch", "/tmp/cache/vectors-384-1.f32")
    >>> isinstance(error, CacheError), error.path
    (True, '/tmp/cache/vectors-384-1.f32')
    """


class CacheWarning(UserWarning):
    """The cache works, but not as configured (for example, not persistently)."""


# -- keys ------------------------------------------------------------------------------


def cache_key(namespace, text):
    """Digest of ``(namespace, text)``, the key of a vector in the cache.

    Parameters
    ----------
    namespace : str
        Identity of the vector space: endpoint (without credentials), model,
        dimensions. Two namespaces never share a key.
    text : str
        The exact text that was embedded.

    Returns
    -------
    bytes
        32-byte BLAKE2b digest. The namespace is length-prefixed, so no pair of
        (namespace, text) can produce the same input as another.

    Examples
    --------
    >>> len(cache_key("model-a", "hello"))
    32
    >>> cache_key("model-a", "hello") == cache_key("model-b", "hello")
    False
    """
    ns = namespace.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(digest_size=KEY_SIZE, person=b"skembed-key-v1")
    digest.update(len(ns).to_bytes(8, "little"))
    digest.update(ns)
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def key_array(keys):
    """Keys as a contiguous (n, 32) uint8 array; a key that is not a digest is a ValueError.

    Both stores accept the same forms: a uint8 array of shape (n, 32), or a sequence of
    32-byte digests (``bytes``, or any other bytes-like object of 32 bytes).
    """
    if isinstance(keys, np.ndarray) and keys.dtype == np.uint8:
        if keys.ndim != 2 or keys.shape[1] != KEY_SIZE:
            raise ValueError(f"A key array must have shape (n, {KEY_SIZE}), got {keys.shape}.")
        return np.ascontiguousarray(keys)
    keys = list(keys)
    # One pass in C for the usual case; only a refused batch is looked at key by key.
    try:
        joined = b"".join(keys)
        valid = len(joined) == KEY_SIZE * len(keys) and set(map(len, keys)) <= {KEY_SIZE}
    except TypeError:
        valid = False
    if not valid:
        position = next(i for i, key in enumerate(keys) if not _is_digest(key))
        raise ValueError(
            f"Key {position} is not a {KEY_SIZE}-byte digest from cache_key(): "
            f"{keys[position]!r:.60}."
        )
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, KEY_SIZE)


def _is_digest(key):
    try:
        return len(key) == KEY_SIZE and len(b"".join([key])) == KEY_SIZE
    except TypeError:
        return False


def lock_name(namespace):
    """The name of ``namespace``'s lock in a store: a digest (stores never see a namespace)."""
    return hashlib.blake2b(namespace.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def check_dim(dim):
    """``dim`` as an int, or a ValueError if it is not a positive integer."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim <= 0:
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")
    return int(dim)


# -- where the per-user cache lives ----------------------------------------------------


def default_cache_dir():
    """Directory of the per-user cache.

    ``$SKEMBED_CACHE_DIR`` when set; otherwise ``$XDG_CACHE_HOME/skembed`` or
    ``~/.cache/skembed`` on Linux, ``~/Library/Caches/skembed`` on macOS and
    ``%LOCALAPPDATA%\\skembed\\Cache`` on Windows.

    Returns
    -------
    str
        Absolute path (the directory may not exist yet).

    Examples
    --------
    >>> import os
    >>> os.path.isabs(default_cache_dir())
    True
    """
    configured = os.environ.get("SKEMBED_CACHE_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(r"~\AppData\Local")
        return os.path.join(base, "skembed", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/skembed")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache")
    return os.path.join(base, "skembed")


# -- every handle, per process ----------------------------------------------------------

# Handles inherited through fork belong to the parent: closing them in the child could
# disturb the parent (its SQLite locks, its sockets' streams), so the child keeps them
# referenced, unclosed, for its whole life (``skembed._fork.keep_inherited``, which the
# backends' clients share).
_instances = weakref.WeakSet()


def _after_fork_in_child():
    # A lock held by another thread of the parent at fork time would never be released.
    for store in list(_instances):
        store._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all():
    # Saves each handle's hit/miss totals (and the directory store's LRU reads); a handle
    # ignores this in a process that did not open it. Best effort: one store that fails
    # must not keep the others from saving theirs.
    for store in list(_instances):
        with contextlib.suppress(Exception):
            store.close()


# -- resumable state --------------------------------------------------------------------

_STATE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_state_name(name):
    """The components of a state name ``<room>/<item>[/...]``, or a ValueError."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) < 2 or not all(_STATE_PART.fullmatch(part) for part in parts):
        raise ValueError(
            "A state name is '<room>/<item>', made of letters, digits, '.', '_' and '-' "
            f"(each part starting with a letter or digit), for example "
            f"'batch_jobs/ledger.json'; got {name!r}."
        )
    return parts


class StateBlob(abc.ABC):
    """One named piece of resumable state: read whole, replaced whole, atomically.

    Attributes
    ----------
    location : str
        Where it lives (a file path, or a Redis key and server), for messages.
    """

    location: str

    @abc.abstractmethod
    def read(self):
        """The stored bytes, or ``None`` if there are none."""

    @abc.abstractmethod
    def write(self, data):
        """Replace the stored bytes with ``data``; durable when this returns."""

    @abc.abstractmethod
    def delete(self):
        """Remove the stored bytes (nothing happens if there are none)."""

    def __repr__(self):
        return f"{type(self).__name__}({self.location!r})"


#: The room of :meth:`CacheStore.record_width`'s records; :meth:`CacheStore.clear` empties
#: it with the vectors whose width it records.
WIDTHS_ROOM = "widths"
#: Rooms of state that describe the vectors, deleted with them by ``clear``: the widths,
#: the per-namespace tallies and the size notice's mark (``_ledger``).
VECTOR_ROOMS = (WIDTHS_ROOM, "namespaces", "notices")


def width_state(namespace):
    """The state name of ``namespace``'s width record."""
    return f"{WIDTHS_ROOM}/{lock_name(namespace)}.json"


def width_conflict(recorded, width, location):
    """The message refusing ``width``-d vectors where ``recorded``-d ones are recorded."""
    return (
        f"The embedding cache records {recorded}-d vectors for this model and endpoint "
        f"(in {location}, learnt from its first answer), but it now returns {width}-d "
        "vectors. If the model changed, pass dimensions=<its width> to embed into a new "
        "vector space, or clear the cache."
    )


# -- the contract -----------------------------------------------------------------------


class CacheStore(abc.ABC):
    """A persistent store of float32 embedding vectors, shared by processes.

    What the embedding job needs from a cache, and what every store shares: the
    argument checks of :meth:`get` and :meth:`put`, the hit/miss counters, and the
    per-process bookkeeping (a fresh lock in a forked child, counts saved at exit).
    Subclasses implement ``_get`` and ``_put`` (on checked arguments), ``_state``,
    :meth:`lock`, :meth:`stats`, :meth:`clear` and :meth:`close`, and call
    ``_attach()`` then ``_reset()`` when a handle is created or unpickled.
    """

    def _attach(self):
        """Give this handle its lock and enter it in the fork/exit registry."""
        self._lock = threading.RLock()
        _instances.add(self)

    @abc.abstractmethod
    def _reset(self):
        """Forget this process's handles and counts (a new handle, or a forked child)."""

    def _reset_counts(self):
        self._hits = self._misses = 0
        # Not yet added to the totals the store keeps for every process.
        self._pending_hits = self._pending_misses = 0

    def _leave_parent_handles(self, *handles):
        """In a forked child, set the parent's handles aside and start afresh.

        Returns whether this process inherited the handles (``_pid`` is the process that
        opened them). They stay referenced, unclosed (``keep_inherited``).
        """
        if self._pid is None or self._pid == os.getpid():
            return False
        keep_inherited(*handles)
        self._reset()
        return True

    def _count(self, hits, misses):
        with self._lock:
            self._hits += hits
            self._misses += misses
            self._pending_hits += hits
            self._pending_misses += misses

    # -- reading and writing -----------------------------------------------------------

    def get(self, keys, dim, *, count=True):
        """Look up many keys at once.

        Parameters
        ----------
        keys : sequence of bytes, or uint8 array of shape (n, 32)
            Digests from :func:`~skembed._cache.cache_key`.
        dim : int
            Length of the vectors the caller expects.
        count : bool, default=True
            Whether to add this look-up to the hit/miss statistics.

        Returns
        -------
        found : ndarray of shape (n,), dtype bool
            Whether each key is cached.
        vectors : ndarray of shape (n, dim), dtype float32
            The cached vectors; rows of misses are zero.

        Raises
        ------
        ValueError
            If a key is not a digest, or is cached with a vector of another length
            than ``dim``.
        CacheCorruptionError
            If stored data is truncated, replaced or fails its checksums.
        CacheError
            If the store cannot be read (a server that cannot be reached, an index
            locked for too long).
        """
        dim = check_dim(dim)
        keys = key_array(keys)
        if not len(keys):
            return np.zeros(0, dtype=bool), np.empty((0, dim), dtype=np.float32)
        found, vectors = self._get(keys, dim)
        vectors[~found] = 0
        if count:
            hits = int(np.count_nonzero(found))
            self._count(hits, len(found) - hits)
        return found, vectors

    @abc.abstractmethod
    def _get(self, keys, dim):
        """``found`` and ``vectors`` of the (n, 32) key array ``keys`` (n > 0).

        Rows of misses may hold anything: :meth:`get` zeroes them.
        """

    def put(self, keys, vectors):
        """Store vectors; durable when this returns.

        Keys already in the cache keep their vector (the first write wins), so
        ``put`` is idempotent and parallel writers never duplicate an entry.

        Parameters
        ----------
        keys : sequence of bytes, or uint8 array of shape (n, 32)
            Digests from :func:`~skembed._cache.cache_key`.
        vectors : array-like of shape (n, dim)
            Finite values; stored as float32.

        Raises
        ------
        ValueError
            If a key is not a digest, shapes disagree, a value is not finite, or a key
            is already cached with a vector of another length.
        CacheError
            If the store cannot be written.
        """
        keys = key_array(keys)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(
                f"put() needs one vector per key: got {len(keys)} keys and vectors of shape "
                f"{vectors.shape}."
            )
        check_dim(vectors.shape[1])
        # A float64 sum of float32 values cannot overflow, so it is finite exactly when
        # every value is: one pass, no (n, dim) boolean temporary.
        finite = np.isfinite(vectors.sum(axis=1, dtype=np.float64))
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"Vector {row} contains NaN or infinity; nothing was cached.")
        if len(keys):
            self._put(keys, vectors)

    @abc.abstractmethod
    def _put(self, keys, vectors):
        """Store the checked float32 ``vectors`` (n > 0) under the (n, 32) key array."""

    # -- resumable state ---------------------------------------------------------------

    def state(self, name):
        """A named piece of resumable state, kept with the cache's vectors.

        For work that outlives a process: the Batch API's ledger of submitted batches,
        so that a re-run waits for them instead of paying again. It lives where the
        vectors it leads to live (a file under the cache directory, a key under the
        Redis prefix), is never read by :meth:`get`, and is left alone by
        :meth:`clear`. Like the vectors, it must hold digests, never a text or a key.

        Parameters
        ----------
        name : str
            ``'<room>/<item>'``: a room per kind of state (``'batch_jobs'``), then the
            item; letters, digits, ``.``, ``_`` and ``-``.

        Returns
        -------
        StateBlob
            With ``read()`` (bytes, or ``None``), ``write(data)`` (atomic and durable)
            and ``delete()``.
        """
        return self._state(_check_state_name(name))

    @abc.abstractmethod
    def _state(self, parts):
        """The :class:`StateBlob` of the checked name's components."""

    # -- the width of a vector space ---------------------------------------------------

    def recorded_width(self, namespace):
        """The width :meth:`record_width` kept for ``namespace``'s vectors, or ``None``.

        For a model of unknown width, whose width is learnt from its first answer: read
        here, it spares every later clone, fold and process that probe.

        Parameters
        ----------
        namespace : str
            The vector space, as in :func:`cache_key`.

        Returns
        -------
        int or None
            The length of the vectors of ``namespace``, or ``None`` if none is recorded.

        Raises
        ------
        CacheCorruptionError
            If the record is damaged.
        """
        blob = self.state(width_state(namespace))
        data = blob.read()
        if data is None:
            return None
        try:
            width = check_dim(json.loads(data)["n_dimensions"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheCorruptionError(
                f"The width record {blob.location} of the embedding cache is damaged "
                f"({exc}). Delete it: the next call pays for one text to learn the width "
                "again.",
                blob.location,
            ) from None
        return width

    def record_width(self, namespace, width):
        """Keep the width of ``namespace``'s vectors (learnt from a model's first answer).

        Parameters
        ----------
        namespace : str
            The vector space, as in :func:`cache_key`.
        width : int
            The length of its vectors.

        Raises
        ------
        ValueError
            If another width is recorded for ``namespace``: the cache's vectors of that
            space have that width, and a model that changed width needs a new space.
        """
        width = check_dim(width)
        recorded = self.recorded_width(namespace)
        if recorded == width:
            return
        blob = self.state(width_state(namespace))
        if recorded is not None:
            raise ValueError(width_conflict(recorded, width, blob.location))
        blob.write(json.dumps({"n_dimensions": width}).encode())

    # -- management --------------------------------------------------------------------

    @abc.abstractmethod
    def claims(self):
        """The per-text claims of the workers filling this store (a ``Claims``).

        A worker claims the texts it is about to pay for, and others wait only for
        those (see :mod:`skembed._cache._claims`).

        Returns
        -------
        Claims
            With ``take``, ``renew`` and ``release``.
        """

    @abc.abstractmethod
    def lock(self, namespace):
        """Exclusive lock on ``namespace`` across processes and threads (a context manager)."""

    @abc.abstractmethod
    def stats(self):
        """Size and use of the store (a dict; ``hits`` and ``misses`` of this handle)."""

    @abc.abstractmethod
    def clear(self):
        """Delete every entry and reset the recorded totals."""

    @abc.abstractmethod
    def close(self):
        """Save this process's counts and release its handles; used again, it reopens."""
