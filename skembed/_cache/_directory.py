"""The persistent embedding cache: float32 vectors addressed by a digest of their text.

Layout of a cache directory (see ``docs/caching.rst`` for the measurements behind it):

``index.sqlite3``
    SQLite database in WAL mode, one row per entry: the first 64 bits of the key
    digest as the row id; a 36-byte record of the row id, the next 64 bits of the
    digest, where the vector lives (vector file and slot) and a digest of the vector
    (XXH3-64 seeded with the key: ``_digests``); and a coarse last-used time. SQLite gives
    crash-safe commits and many concurrent readers with one writer at a time.
``vectors-<dim>-<id>.f32``
    Append-only files of raw float32 rows after a 64-byte header (magic, format
    version, width, random file id). Rows are read with positioned reads into the
    caller's array, sorted by offset, so a warm lookup costs about one copy of the
    vectors plus one index query per 32,766 keys, which returns the records of all its
    keys as one concatenated blob.
``write.lock``, ``locks/*.lock``
    ``flock`` files: one serialising writers, one per namespace for callers that fetch
    misses.
``<room>/<item>``
    Resumable state (:meth:`~skembed._cache.CacheStore.state`), such as the Batch
    API's ledgers in ``batch_jobs/``: each file replaced atomically, never read by
    :meth:`EmbeddingCache.get`, left alone by :meth:`EmbeddingCache.clear`.

Nothing in the directory holds a text, a namespace or a credential: only digests.
A write appends and fsyncs the vectors before the index rows that point at them are
committed, so a crash at any moment leaves either a complete entry or none. Committed
rows of a vector file are never modified; eviction writes a new file and deletes the
old one, so a reader holding an old snapshot still reads correct bytes.

A directory that cannot be written is read, new vectors going to a temporary cache
(the index opened by ``_sqlite``); an index of format 1 is upgraded in place when it is
opened for writing (``_upgrade``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import time
import uuid
import warnings

import numpy as np

from ._base import (
    VECTOR_ROOMS,
    CacheCorruptionError,
    CacheError,
    CacheStore,
    CacheWarning,
    default_cache_dir,
    lock_name,
)
from ._claims import SQLiteClaims
from ._digests import RowCheck, row_digests
from ._eviction import LRUEviction
from ._files import (
    FORMAT_VERSION,
    HEADER_SIZE,
    NO_SPACE_ERRNOS,
    RECORD,
    RECORD_V1,
    LayeredState,
    StateFile,
    check_header,
    fsync,
    fsync_dir,
    lock_file,
    open_private,
    pack_header,
    pwrite_all,
    read_rows,
    record_blobs,
    temporary_directory,
    unlock_file,
    writing,
)
from ._sqlite import (
    BUSY_TIMEOUT_SECONDS,
    best_effort,
    chunks,
    max_variables,
    open_read_only,
    transaction,
)
from ._upgrade import upgrade_records

__all__ = ["INDEX_FILENAME", "EmbeddingCache"]

INDEX_FILENAME = "index.sqlite3"
_WRITE_LOCK = "write.lock"
_LOCK_DIR = "locks"
_VECTOR_PREFIX = "vectors-"
_VECTOR_SUFFIX = ".f32"
# Reads are recorded in memory and written to the entries' last-used times at most
# this often, or per million reads, and when the handle closes: LRU order is exact to
# about ten minutes, and a warm read loop rarely writes.
_TOUCH_SECONDS = 600
_MAX_PENDING_TOUCHES = 1_000_000
# Rows are read (and digested) in blocks of this size.
_CHECK_BLOCK_BYTES = 4 << 20

_SCHEMA = """
CREATE TABLE files (
    file_id INTEGER PRIMARY KEY AUTOINCREMENT,
    dim INTEGER NOT NULL,
    name TEXT NOT NULL UNIQUE,
    uid BLOB NOT NULL,
    entries INTEGER NOT NULL
);
CREATE TABLE entries (id INTEGER PRIMARY KEY, meta BLOB NOT NULL, used INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters VALUES ('hits', 0), ('misses', 0);
"""


def _now():
    return int(time.time())


class _VectorFile:
    """One vector file as listed in the index, with a lazily opened read handle."""

    __slots__ = ("dim", "handle", "name", "size", "uid")

    def __init__(self, name, dim, uid):
        self.name = name
        self.dim = dim
        self.uid = uid
        self.handle = None
        self.size = 0


class _StaleSnapshot(Exception):
    """A vector file named by an index snapshot is gone: eviction or clear replaced it."""


class _NotWritable(Exception):
    """The cache directory cannot be written."""


class EmbeddingCache(LRUEviction, CacheStore):
    """Persistent, multi-process cache of float32 embedding vectors.

    Keys are 32-byte digests from :func:`cache_key`; the cache never sees a text.
    Any number of processes and threads may read and write the same directory at
    once. A vector is durable when :meth:`put` returns, and a damaged file makes
    reads fail with :class:`CacheCorruptionError` rather than return a wrong vector.

    Parameters
    ----------
    path : str or path-like, default=None
        Cache directory, created (mode 0700) if missing; ``None`` means
        :func:`default_cache_dir`. If it cannot be written (a read-only mount, a
        shared cache of another user), it is opened read-only: its vectors are
        served, new ones are cached in a private temporary directory deleted when the
        process exits, and a :class:`CacheWarning` says so, once. If there is no
        cache there to read either, the temporary directory is the whole cache.
    max_size_bytes : int, default=None
        Bound on the vector files plus the index file. Past it, the least recently
        used entries are evicted down to 80% of the bound. ``None``: no bound.
    read_only : bool, default=False
        Never write to ``path``, even if it could be written: serve its vectors and
        cache new ones in a private temporary directory (no warning).

    Attributes
    ----------
    path : str
        The directory in use.
    max_size_bytes : int or None
        The bound given.
    read_only : bool
        The option given.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skembed._cache import EmbeddingCache, cache_key
    >>> directory = tempfile.TemporaryDirectory()
    >>> cache = EmbeddingCache(directory.name)
    >>> keys = [cache_key("model-a", "hello"), cache_key("model-a", "world")]
    >>> cache.put(keys[:1], np.array([[0.6, 0.8]], dtype=np.float32))
    >>> found, vectors = cache.get(keys, dim=2)
    >>> found
    array([ True, False])
    >>> vectors
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    >>> cache.close()
    >>> directory.cleanup()
    """

    def __init__(self, path=None, *, max_size_bytes=None, read_only=False):
        if max_size_bytes is not None and (
            isinstance(max_size_bytes, bool)
            or not isinstance(max_size_bytes, (int, np.integer))
            or max_size_bytes <= 0
        ):
            raise ValueError(
                f"max_size_bytes must be a positive integer or None, got {max_size_bytes!r}."
            )
        if not isinstance(read_only, (bool, np.bool_)):
            raise ValueError(f"read_only must be True or False, got {read_only!r}.")
        self.path = default_cache_dir() if path is None else os.path.abspath(os.fspath(path))
        self.max_size_bytes = None if max_size_bytes is None else int(max_size_bytes)
        self.read_only = bool(read_only)
        self._attach()
        self._reset()
        with self._lock:
            self._ensure_open()

    # -- pickling: the path and options, never handles ------------------------------

    def __getstate__(self):
        return {
            "path": self.path,
            "max_size_bytes": self.max_size_bytes,
            "read_only": self.read_only,
        }

    def __setstate__(self, state):
        self.path = state["path"]
        self.max_size_bytes = state["max_size_bytes"]
        self.read_only = state.get("read_only", False)
        self._attach()
        self._reset()

    def __repr__(self):
        limit = "" if self.max_size_bytes is None else f", max_size_bytes={self.max_size_bytes}"
        mode = ", read_only=True" if self.read_only else ""
        return f"EmbeddingCache({self.path!r}{limit}{mode})"

    def _reset(self):
        self._pid = None
        self._conn = None
        self._index_id = None
        self._write_lock_file = None
        self._files = {}
        self._reset_counts()
        self._touched = []  # ids read since the last-used times were last written
        self._touched_at = _now()
        self._format = FORMAT_VERSION  # of the open index (1: read as written, read-only)
        # Why this handle does not write its directory, and the cache it writes instead.
        self._read_only_reason = self._fallback = None
        self._claims = None

    # -- opening ------------------------------------------------------------------

    @property
    def _index_path(self):
        return os.path.join(self.path, INDEX_FILENAME)

    @property
    def _record(self):
        return RECORD if self._format == FORMAT_VERSION else RECORD_V1

    def _ensure_open(self):
        if self._conn is not None and self._pid == os.getpid():
            try:
                stat = os.stat(self._index_path)
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_dev, stat.st_ino) == self._index_id:
                return
            # The directory was deleted or replaced under us: start on the new one.
            self.close()
        self._leave_parent_handles(self._conn, self._files, self._write_lock_file, self._fallback)
        if self.read_only:
            reason = "opened with read_only=True"
        elif self._read_only_reason is not None:
            reason = self._read_only_reason  # a handle found read-only stays so
        else:
            try:
                self._open()
                return
            except _NotWritable as exc:
                reason = f"not writable: {exc}"
        # Serve its vectors, write new ones beside it; said once (a reopened handle keeps
        # its fallback).
        warn = self._fallback is None and not self.read_only
        if self._open_read_only(reason):
            if warn:
                warnings.warn(
                    f"The embedding cache directory {self.path!r} is {reason}; reading "
                    f"its vectors, and caching new ones in {self._fallback.path!r}, which "
                    "is deleted when this process exits. Make it writable, or set "
                    "SKEMBED_CACHE_DIR or pass cache=<a writable directory>, to keep new "
                    "vectors between runs.",
                    CacheWarning,
                    stacklevel=3,
                )
            return
        # Nothing to read there either: the whole cache lives in a temporary directory.
        fallback = temporary_directory()
        warnings.warn(
            f"The embedding cache directory {self.path!r} is {reason}, and holds no cache "
            f"to read; caching in {fallback!r} instead, which is deleted when this process "
            "exits. Set SKEMBED_CACHE_DIR or pass cache=<a writable directory> to keep "
            "vectors between runs.",
            CacheWarning,
            stacklevel=3,
        )
        self.path = fallback
        self.read_only = False
        self._open()

    def _open(self):
        try:
            self._open_store()
        except BaseException:
            self._drop_handles()
            raise

    def _open_store(self):
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            os.makedirs(os.path.join(self.path, _LOCK_DIR), mode=0o700, exist_ok=True)
            self._write_lock_file = open_private(os.path.join(self.path, _WRITE_LOCK))
            # Created here so that SQLite (and its -wal/-shm files) get mode 0600.
            open_private(self._index_path).close()
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM) or exc.errno in NO_SPACE_ERRNOS:
                raise _NotWritable(exc.strerror) from exc
            raise
        try:
            conn = sqlite3.connect(
                self._index_path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.OperationalError as exc:
            raise _NotWritable(str(exc)) from exc
        self._conn = conn
        self._pid = os.getpid()
        stat = os.stat(self._index_path)
        self._index_id = (stat.st_dev, stat.st_ino)
        with self._sqlite_errors():
            try:
                self._prepare_schema(conn)
                # A read-only database or directory only shows when writing.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if any(part in message for part in ("readonly", "unable to open", "is full")):
                    raise _NotWritable(message) from exc
                raise
        self._format = FORMAT_VERSION

    def _prepare_schema(self, conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with self._writer():
                self._create_schema(conn)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 1:
            # The previous format: upgraded in place, once, by the first process that
            # gets the writer lock (see ``_upgrade``); the others find it done.
            with self._writer(), transaction(conn):
                if conn.execute("PRAGMA user_version").fetchone()[0] == 1:
                    upgrade_records(conn, self.path)
                    conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        conn.execute("PRAGMA synchronous=FULL")

    def _check_version(self, version, readable=(FORMAT_VERSION,)):
        if version not in readable:
            raise CacheError(
                f"The embedding cache index {self._index_path} has format version {version}, "
                f"but this version of skembed reads version {FORMAT_VERSION}. Upgrade "
                "skembed, or use another directory, or empty it with "
                f"'python -m skembed cache clear --dir {self.path}'.",
                self._index_path,
            )

    def _open_read_only(self, reason):
        """Open the index for reading only (``_sqlite``), with a temporary cache for
        new vectors; False if there is no index to read (then nothing is opened)."""
        with self._sqlite_errors():
            opened = open_read_only(self._index_path)
        if opened is None:
            return False
        self._conn, version, stat = opened
        try:
            # Format 1 is read as written (checked by its sums): upgrading needs writing.
            self._check_version(version, readable=(1, FORMAT_VERSION))
        except BaseException:
            self._drop_handles()
            raise
        if self._fallback is None:
            self._fallback = EmbeddingCache(
                temporary_directory(), max_size_bytes=self.max_size_bytes
            )
        self._pid = os.getpid()
        self._index_id = (stat.st_dev, stat.st_ino)
        self._format = version
        self._read_only_reason = reason
        return True

    def _create_schema(self, conn):
        if conn.execute("PRAGMA user_version").fetchone()[0] != 0:
            return  # another process created it while we waited for the lock
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise CacheError(
                f"{self._index_path} is an SQLite database that skembed did not create; "
                "point the cache at another directory.",
                self._index_path,
            )
        # Both settings must precede the first table; WAL lets readers run during writes.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        with transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")

    @contextlib.contextmanager
    def _sqlite_errors(self):
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise CacheError(
                    f"The embedding cache index {self._index_path} stayed locked by another "
                    f"process for {BUSY_TIMEOUT_SECONDS:.0f} s ({exc}).",
                    self._index_path,
                ) from exc
            # Python's sqlite3 reports a damaged text column (a file name) this way.
            if not str(exc).startswith("Could not decode"):
                raise
            raise self._damaged_index(exc) from exc
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            # The latter: SQLite's message quotes damaged schema text Python cannot decode.
            raise self._damaged_index(exc) from exc

    def _damaged_index(self, exc):
        return CacheCorruptionError(
            f"The embedding cache index {self._index_path} is damaged ({exc}). Run "
            f"'python -m skembed cache clear --dir {self.path}': nothing can be read "
            "without the index, so it deletes the index and the vector files, and the "
            f"cache starts empty (or delete the directory {self.path}).",
            self._index_path,
        )

    @contextlib.contextmanager
    def _writer(self):
        """Serialise writers of this directory (all processes) and create/delete files."""
        lock_file(self._write_lock_file.fileno())
        try:
            yield
        finally:
            unlock_file(self._write_lock_file.fileno())

    def _drop_handles(self):
        for vector_file in self._files.values():
            if vector_file.handle is not None:
                vector_file.handle.close()
        self._files = {}
        if self._write_lock_file is not None:
            self._write_lock_file.close()
        if self._conn is not None:
            self._conn.close()
        self._conn = self._write_lock_file = self._index_id = self._pid = None

    def close(self):
        """Release files and connections; the cache reopens itself if used again.

        The hit and miss totals of this process are added to the ones kept in the
        index, if the index can be written within a second (not in a read-only cache).
        """
        with self._lock:
            if self._fallback is not None:
                self._fallback.close()
            if self._conn is None or self._pid != os.getpid():
                return
            writes = self._pending_hits or self._pending_misses or self._touched
            if writes and self._read_only_reason is None:
                with best_effort(self._conn), transaction(self._conn):
                    self._flush_counters(self._conn)
                    self._flush_touches(self._conn)
            self._drop_handles()

    # -- reading ------------------------------------------------------------------

    def _get(self, keys, dim):
        ids, k2 = _split_keys(keys)
        found = np.zeros(len(ids), dtype=bool)
        # Not np.zeros: numpy asks for transparent huge pages only for uninitialised
        # memory, and faulting in 4 KiB pages adds about a fifth to the copy.
        vectors = np.empty((len(ids), dim), dtype=np.float32)
        with self._lock:
            self._ensure_open()
            with self._sqlite_errors():
                for attempt in range(3):
                    meta = self._lookup(ids, k2)
                    try:
                        self._check_dims(meta, dim)
                        self._read(meta, vectors, np.flatnonzero(meta["found"]))
                        break
                    except _StaleSnapshot as stale:
                        # Eviction or clear replaced a file since the look-up: look again.
                        if attempt == 2:
                            raise self._unlisted_file_error(stale) from None
                hits = np.flatnonzero(meta["found"])
                found[hits] = True
                self._note_reads(ids[hits])
            if self._read_only_reason is not None and not found.all():
                # New vectors of a read-only cache are in its temporary one.
                misses = np.flatnonzero(~found)
                more, vectors[misses] = self._fallback._get(keys[misses], dim)
                found[misses] = more
        return found, vectors

    def _lookup(self, ids, k2):
        """Index rows for ``ids``, as per-position arrays (``found`` marks present keys)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        blobs = []
        for chunk in chunks(unique.tolist(), max_variables(self._conn)):
            marks = ",".join("?" * len(chunk))
            count, blob = self._conn.execute(
                "SELECT count(*), CAST(group_concat(meta, '') AS BLOB) "
                f"FROM entries WHERE id IN ({marks})",
                chunk,
            ).fetchone()
            if count and len(blob) != self._record.itemsize * count:
                raise sqlite3.DatabaseError("an entry record has the wrong length")
            blobs.append(blob or b"")
        table = np.frombuffer(b"".join(blobs), dtype=self._record)
        where = np.searchsorted(unique, table["id"])
        if (where >= len(unique)).any() or (unique[where] != table["id"]).any():
            raise sqlite3.DatabaseError("an entry record does not match its row id")
        per_unique = np.zeros(len(unique), dtype=self._record)
        per_unique[where] = table
        present = np.zeros(len(unique), dtype=bool)
        present[where] = True
        per_row = per_unique[inverse.ravel()]
        # The index keys on 64 bits; the next 64 tell a prefix collision from a hit.
        found = present[inverse.ravel()] & (per_row["k2"] == k2)
        check = "digest" if self._format == FORMAT_VERSION else "checksum"
        return {
            "found": found,
            "id": ids,
            "k2": k2,
            "file_id": per_row["file_id"].astype(np.int64),
            "slot": per_row["slot"],
            "digest": per_row[check].astype(np.uint64),
            "present": present[inverse.ravel()],
        }

    def _unlisted_file_error(self, stale):
        return CacheCorruptionError(
            f"The embedding cache index {self._index_path} points at vector file "
            f"#{stale.args[0]}, which it does not list. Run "
            f"'python -m skembed cache clear --dir {self.path}'.",
            self._index_path,
        )

    def _check_dims(self, meta, dim, rows=None):
        """Refuse keys cached with another width; ``rows`` maps positions to the caller's."""
        found = np.flatnonzero(meta["found"])
        for file_id in np.unique(meta["file_id"][found]).tolist():
            vector_file = self._vector_file(file_id)
            if vector_file.dim != dim:
                position = int(found[meta["file_id"][found] == file_id][0])
                if rows is not None:
                    position = int(rows[position])
                raise ValueError(
                    f"Key {position} is cached with a {vector_file.dim}-d vector "
                    f"(in {self._file_path(vector_file.name)}), not {dim}-d: a cache key "
                    "must include the dimensions."
                )

    def _read(self, meta, out, positions):
        """Copy the vectors of ``positions`` into ``out`` and verify their digests.

        File by file, in offset order, in blocks small enough to be scattered into
        place (unless they are wanted in file order: then read straight into ``out``)
        while in the CPU cache; each block is digested as soon as it is read.
        """
        check = self._row_check(meta, out, positions)
        try:
            file_ids = meta["file_id"][positions]
            for file_id in np.unique(file_ids).tolist():
                mine = positions[file_ids == file_id]
                mine = mine[np.argsort(meta["slot"][mine], kind="stable")]
                slots = meta["slot"][mine]
                if slots[0] < 0:
                    raise sqlite3.DatabaseError("an entry has a negative slot")
                vector_file = self._vector_file(file_id)
                handle = self._read_handle(file_id, vector_file)
                self._check_bounds(vector_file, int(slots[-1]))
                path = self._file_path(vector_file.name)
                block = max(1, _CHECK_BLOCK_BYTES // (4 * vector_file.dim))
                for start in range(0, len(mine), block):
                    rows = mine[start : start + block]
                    in_place = rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all()
                    if in_place:
                        buffer = out[rows[0] : rows[-1] + 1]
                    else:
                        buffer = np.empty((len(rows), out.shape[1]), dtype=np.float32)
                    read_rows(handle, path, slots[start : start + block], buffer)
                    if not in_place:
                        out[rows] = buffer
                    check.add(rows)
            bad = check.mismatches()
        finally:
            check.close()
        if len(bad):
            path = self._file_path(self._files[int(meta["file_id"][bad[0]])].name)
            raise CacheCorruptionError(
                f"Cached vectors in {path} do not match their checksums: the file was "
                "modified or damaged. Run "
                f"'python -m skembed cache clear --dir {self.path}'.",
                path,
            )

    def _row_check(self, meta, out, positions):
        """The check of the rows ``positions`` of ``out`` against their records."""
        salts = None  # format 1, read as written (read-only): its sums
        if self._format == FORMAT_VERSION:
            salts = np.empty((len(out), 2), dtype="<i8")
            salts[positions, 0], salts[positions, 1] = meta["id"][positions], meta["k2"][positions]
            salts = salts.view(np.uint8)
        return RowCheck(out, salts, meta["digest"], len(positions) * out.shape[1] * 4)

    def _vector_file(self, file_id):
        if file_id not in self._files:
            self._refresh_files()
            if file_id not in self._files:
                raise _StaleSnapshot(file_id)
        return self._files[file_id]

    def _refresh_files(self):
        listed = {
            file_id: (name, dim, bytes(uid))
            for file_id, dim, name, uid in self._conn.execute(
                "SELECT file_id, dim, name, uid FROM files"
            )
        }
        for file_id, vector_file in list(self._files.items()):
            if listed.get(file_id) != (vector_file.name, vector_file.dim, vector_file.uid):
                if vector_file.handle is not None:
                    vector_file.handle.close()
                del self._files[file_id]
        for file_id, (name, dim, uid) in listed.items():
            if file_id not in self._files:
                self._files[file_id] = _VectorFile(name, dim, uid)

    def _file_path(self, name):
        return os.path.join(self.path, name)

    def _read_handle(self, file_id, vector_file):
        if vector_file.handle is not None:
            return vector_file.handle
        path = self._file_path(vector_file.name)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 (kept open for reuse)
        except FileNotFoundError:
            self._refresh_files()
            if file_id not in self._files:
                raise _StaleSnapshot(file_id) from None
            raise CacheCorruptionError(
                f"The embedding cache vector file {path} is listed in the index but missing. "
                f"Run 'python -m skembed cache clear --dir {self.path}'.",
                path,
            ) from None
        try:
            check_header(handle.read(HEADER_SIZE), path, vector_file.dim, vector_file.uid)
        except BaseException:
            handle.close()
            raise
        vector_file.handle = handle
        vector_file.size = os.fstat(handle.fileno()).st_size
        return handle

    def _check_bounds(self, vector_file, last_slot):
        end = HEADER_SIZE + (last_slot + 1) * 4 * vector_file.dim
        if end > vector_file.size:
            vector_file.size = os.fstat(vector_file.handle.fileno()).st_size
            if end > vector_file.size:
                path = self._file_path(vector_file.name)
                raise CacheCorruptionError(
                    f"The embedding cache vector file {path} is truncated: the index points "
                    f"at byte {end}, the file has {vector_file.size}. Run "
                    f"'python -m skembed cache clear --dir {self.path}'.",
                    path,
                )

    def _note_reads(self, ids):
        """Remember reads for the LRU order; write them out every ten minutes."""
        if self._read_only_reason is not None:
            return  # a read-only index keeps the order its writers left
        self._touched.append(ids)
        due = _now() - self._touched_at >= _TOUCH_SECONDS
        if due or sum(map(len, self._touched)) > _MAX_PENDING_TOUCHES:
            # Best effort: LRU order is a hint, and a busy index (an eviction running
            # elsewhere) must neither fail reads nor hold up the next ones.
            self._touched_at = _now()
            with best_effort(self._conn), transaction(self._conn):
                self._flush_touches(self._conn)
                self._flush_counters(self._conn)

    def _flush_touches(self, conn):
        now = _now()
        if self._touched:
            ids = np.unique(np.concatenate(self._touched)).tolist()
            for chunk in chunks(ids, max_variables(conn) - 2):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE entries SET used = ? WHERE used < ? AND id IN ({marks})",
                    [now, now - _TOUCH_SECONDS, *chunk],
                )
        self._touched = []
        self._touched_at = now

    # -- writing ------------------------------------------------------------------

    def _put(self, keys, vectors):
        ids, k2 = _split_keys(keys)
        dim = vectors.shape[1]
        _, first = np.unique(ids, return_index=True)
        first.sort()
        with self._lock:
            self._ensure_open()
            if self._read_only_reason is not None:
                self._put_beside(keys, ids, k2, first, vectors)
                return
            # A full disk (or quota, or a file system remounted read-only) is a clear
            # CacheError naming the directory, never a bare OSError.
            with writing(self.path), self._sqlite_errors(), self._writer():
                self._refresh_files()
                meta = self._lookup(ids[first], k2[first])
                try:
                    self._check_dims(meta, dim, rows=first)
                    # A present id with another k2 is a 64-bit prefix collision: that
                    # key simply stays uncached.
                    new = first[~meta["present"]]
                    if new.size:
                        batch = vectors if new.size == len(ids) else vectors[new]
                        self._append(ids[new], k2[new], batch)
                    if self.max_size_bytes and self._stored_bytes() > self.max_size_bytes:
                        self._evict()
                except _StaleSnapshot as stale:
                    # Under the writer lock the files are current: the index is wrong.
                    raise self._unlisted_file_error(stale) from None

    def _put_beside(self, keys, ids, k2, first, vectors):
        """A read-only cache's put: new keys into its temporary cache, as one store."""
        with self._sqlite_errors():
            self._refresh_files()
            meta = self._lookup(ids[first], k2[first])
            try:
                self._check_dims(meta, vectors.shape[1], rows=first)
            except _StaleSnapshot as stale:
                raise self._unlisted_file_error(stale) from None
        new = first[~meta["present"]]  # the first write, in the read-only cache, wins
        if new.size:
            self._fallback._put(keys[new], vectors[new])

    def _append(self, ids, k2, vectors):
        dim = vectors.shape[1]
        salts = np.empty((len(ids), 2), dtype="<i8")
        salts[:, 0], salts[:, 1] = ids, k2
        digests = row_digests(vectors, salts.view(np.uint8))
        candidates = [f for f, v in self._files.items() if v.dim == dim]
        if candidates:
            file_id = max(candidates)
            name, uid = self._files[file_id].name, None
        else:
            file_id = None
            name, uid = self._create_vector_file(dim)
        path = self._file_path(name)
        try:
            self._append_to(path, file_id, uid, ids, k2, vectors, digests)
        except BaseException:
            # A new file the index does not list is removed now. One it lists (a Ctrl-C
            # right after the COMMIT) holds committed rows: removing it would lose them.
            if uid is not None and not self._lists_file(uid):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise

    def _lists_file(self, uid):
        """Whether the index lists the vector file ``uid`` (True when it cannot tell)."""
        try:
            row = self._conn.execute("SELECT 1 FROM files WHERE uid = ?", (uid,)).fetchone()
        except Exception:  # an unlisted file left behind is removed later; a listed one lost is not
            return True
        return row is not None

    def _append_to(self, path, file_id, uid, ids, k2, vectors, digests):
        """Append, fsync, then commit the index rows (and the file's row if it is new)."""
        n, dim = vectors.shape
        row_bytes = 4 * dim
        try:
            handle = open(path, "r+b", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise CacheCorruptionError(
                f"The embedding cache vector file {path} is listed in the index but missing. "
                f"Run 'python -m skembed cache clear --dir {self.path}'.",
                path,
            ) from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size < HEADER_SIZE:
                raise CacheCorruptionError(
                    f"The embedding cache vector file {path} is truncated ({size} bytes). Run "
                    f"'python -m skembed cache clear --dir {self.path}'.",
                    path,
                )
            # Bytes past the last whole row are left by a writer that died before
            # committing; no entry points at them, so the new rows start after them.
            first_slot = -(-(size - HEADER_SIZE) // row_bytes)
            pwrite_all(handle, memoryview(vectors).cast("B"), HEADER_SIZE + first_slot * row_bytes)
            fsync(handle.fileno())
        conn = self._conn
        with transaction(conn):
            if file_id is None:
                file_id = conn.execute(
                    "INSERT INTO files (dim, name, uid, entries) VALUES (?, ?, ?, 0)",
                    (dim, os.path.basename(path), uid),
                ).lastrowid
            records = np.empty(n, dtype=RECORD)
            records["id"], records["k2"], records["digest"] = ids, k2, digests
            records["file_id"] = file_id
            records["slot"] = np.arange(first_slot, first_slot + n)
            conn.executemany(
                "INSERT INTO entries VALUES (?, ?, ?)",
                zip(ids.tolist(), record_blobs(records), [_now()] * n, strict=True),
            )
            conn.execute("UPDATE files SET entries = entries + ? WHERE file_id = ?", (n, file_id))
            self._flush_counters(conn)

    def _create_vector_file(self, dim):
        """Write a new, empty vector file (header only, fsynced); return its name and uid."""
        uid = uuid.uuid4().bytes
        name = f"{_VECTOR_PREFIX}{dim}-{uid.hex()[:16]}{_VECTOR_SUFFIX}"
        with open_private(self._file_path(name), exclusive=True) as handle:
            handle.write(pack_header(dim, uid))
            fsync(handle.fileno())
        fsync_dir(self.path)
        return name, uid

    def _flush_counters(self, conn):
        for name, value in (("hits", self._pending_hits), ("misses", self._pending_misses)):
            if value:
                conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (value, name))
        self._pending_hits = self._pending_misses = 0

    # -- eviction -----------------------------------------------------------------

    def _index_bytes(self):
        # The database's own size, including pages still in the write-ahead log.
        page_count = self._conn.execute("PRAGMA page_count").fetchone()[0]
        return page_count * self._conn.execute("PRAGMA page_size").fetchone()[0]

    def _stored_bytes(self):
        """Bytes the size bound applies to: the index database and the vector files."""
        total = self._index_bytes()
        for entry in os.scandir(self.path):
            if _is_vector_file(entry.name):
                total += entry.stat().st_size
        return total

    def _remove_unlisted_files(self):
        """Delete vector files the index does not list (writer lock held)."""
        listed = {v.name for v in self._files.values()}
        for entry in os.scandir(self.path):
            if _is_vector_file(entry.name) and entry.name not in listed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    # -- management ---------------------------------------------------------------

    def claims(self):
        """Per-text claims of this directory's processes, in ``locks/claims.sqlite3``.

        A read-only directory's are its temporary cache's: no other process can store
        what it fetches there, so there is nothing to wait for.

        Returns
        -------
        Claims
            Shared by every handle of this directory in this process.
        """
        with self._lock:
            self._ensure_open()
            if self._read_only_reason is not None:
                return self._fallback.claims()
            if self._claims is None:
                locks = os.path.join(self.path, _LOCK_DIR)
                os.makedirs(locks, mode=0o700, exist_ok=True)
                self._claims = SQLiteClaims(os.path.join(locks, "claims.sqlite3"), self.path)
            return self._claims

    @contextlib.contextmanager
    def lock(self, namespace):
        """Exclusive lock on ``namespace`` across processes and threads.

        Hold it around "look up misses, fetch them, :meth:`put` them", so that a
        parallel process waiting for it finds the vectors in the cache instead of
        paying for them again. Not re-entrant.

        Parameters
        ----------
        namespace : str
            The namespace of the keys being fetched.

        Yields
        ------
        None
        """
        with self._lock:
            self._ensure_open()
        if self._read_only_reason is not None:
            # No lock file can be made there; nor can other processes write what they
            # fetch there, so there is nothing to wait for: this process's own lock.
            with self._fallback.lock(namespace):
                yield
            return
        name = f"{lock_name(namespace)}.lock"
        with open_private(os.path.join(self.path, _LOCK_DIR, name)) as handle:
            lock_file(handle.fileno())
            try:
                yield
            finally:
                unlock_file(handle.fileno())

    def stats(self):
        """Size and use of the cache.

        Returns
        -------
        dict
            ``path``; ``entries`` and ``entries_by_dim``; ``size_bytes`` (every file in
            the directory); ``hits``/``misses`` of this handle in this process;
            ``total_hits``/``total_misses`` recorded in the index by every process since
            the cache was created or cleared (plus this process's unsaved ones);
            ``max_size_bytes``; ``read_only`` (whether this handle only reads the
            directory) and, if so, ``fallback`` (the temporary cache holding the
            vectors it got since) and ``fallback_entries``.
        """
        with self._lock:
            self._ensure_open()
            with self._sqlite_errors():
                by_dim = dict(
                    self._conn.execute(
                        "SELECT dim, sum(entries) FROM files GROUP BY dim ORDER BY dim"
                    ).fetchall()
                )
                totals = dict(self._conn.execute("SELECT name, value FROM counters"))
            size = 0
            for root, _, names in os.walk(self.path):
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        size += os.path.getsize(os.path.join(root, name))
            stats = {
                "path": self.path,
                "entries": sum(by_dim.values()),
                "entries_by_dim": by_dim,
                "size_bytes": size,
                "hits": self._hits,
                "misses": self._misses,
                "total_hits": totals.get("hits", 0) + self._pending_hits,
                "total_misses": totals.get("misses", 0) + self._pending_misses,
                "max_size_bytes": self.max_size_bytes,
                "read_only": self._read_only_reason is not None,
            }
            if self._read_only_reason is not None:
                stats["fallback"] = self._fallback.path
                stats["fallback_entries"] = self._fallback.stats()["entries"]
            return stats

    def clear(self):
        """Delete every entry and vector file, the recorded widths, and the totals.

        Raises
        ------
        CacheError
            If the directory cannot be written (a read-only cache).
        """
        with self._lock:
            self._ensure_open()
            if self._read_only_reason is not None:
                raise CacheError(
                    f"The embedding cache directory {self.path} is {self._read_only_reason}: "
                    "it cannot be cleared. Clear it where it can be written.",
                    self.path,
                )
            conn = self._conn
            with writing(self.path), self._sqlite_errors(), self._writer():
                with transaction(conn):
                    conn.execute("DELETE FROM entries")
                    conn.execute("DELETE FROM files")
                    conn.execute("UPDATE counters SET value = 0")
                self._pending_hits = self._pending_misses = 0
                self._touched = []
                self._refresh_files()
                self._remove_unlisted_files()
                self._shrink_index()
                # The widths (and tallies) describe the vectors just deleted (resumable
                # state stays).
                for room in VECTOR_ROOMS:
                    shutil.rmtree(os.path.join(self.path, room), ignore_errors=True)

    def _state(self, parts):
        room = parts[0]
        if room in (_LOCK_DIR, _WRITE_LOCK) or room.startswith((INDEX_FILENAME, _VECTOR_PREFIX)):
            raise ValueError(f"{room!r} is a name of the cache's own files; pick another room.")
        with self._lock:
            self._ensure_open()  # the directory in use (a fallback, if not writable)
        here = StateFile(os.path.join(self.path, *parts))
        if self._read_only_reason is None:
            return here
        return LayeredState(here, self._fallback._state(parts))


# -- helpers -------------------------------------------------------------------------


def _split_keys(keys):
    """The two signed 64-bit halves of each key's first 128 bits (keys: (n, 32) uint8)."""
    ids = np.ascontiguousarray(keys[:, :8]).view("<i8").ravel().astype(np.int64)
    k2 = np.ascontiguousarray(keys[:, 8:16]).view("<i8").ravel().astype(np.int64)
    return ids, k2


def _is_vector_file(name):
    return name.startswith(_VECTOR_PREFIX) and name.endswith(_VECTOR_SUFFIX)
