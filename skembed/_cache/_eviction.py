"""Least-recently-used eviction of the directory cache, down to a fraction of its bound.

A mixin of :class:`~skembed._cache._directory.EmbeddingCache`, kept apart because it is
one job: choosing what to keep, copying the kept rows into new vector files (their
digests verified on the way), and switching the index to them in one transaction.
It runs with the cache's writer lock held and uses the store's own helpers
(``_refresh_files``, ``_read``, ``_create_vector_file``, ``_remove_unlisted_files``...).
"""

from __future__ import annotations

import sqlite3

import numpy as np

from ._files import HEADER_SIZE, RECORD, fsync, pwrite_all, record_blobs
from ._sqlite import best_effort, chunks, max_variables, transaction

__all__ = ["LRUEviction"]

# Eviction brings the store down to this fraction of the limit, so that the file
# rewrite it costs happens once per 20% of growth rather than on every write.
_EVICT_TO = 0.8


class LRUEviction:
    """Eviction of least recently used entries (a mixin of the directory store)."""

    def _evict(self):
        """Drop least recently used entries down to 80% of the bound (writer lock held).

        Every dimension that loses entries gets a new file with its kept rows, and its
        old files are deleted once the index points at the new one.
        """
        conn = self._conn
        self._refresh_files()
        self._flush_touches(conn)  # this process's reads count too
        rows = conn.execute("SELECT used, meta FROM entries").fetchall()
        used = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        table = np.frombuffer(b"".join(row[1] for row in rows), dtype=RECORD)
        if len(table) != len(rows):
            raise sqlite3.DatabaseError("an entry record has the wrong length")
        # Most recently used first; among equals, the last written first.
        table = table[np.lexsort((-table["slot"], -table["file_id"].astype(np.int64), -used))]
        file_ids = table["file_id"].astype(np.int64)
        width = {f: self._vector_file(f).dim for f in np.unique(file_ids).tolist()}
        dims = np.array([width[f] for f in file_ids.tolist()], dtype=np.int64)
        budget = int(self.max_size_bytes * _EVICT_TO) - self._index_bytes()
        budget -= HEADER_SIZE * len(np.unique(dims))
        keep = np.cumsum(4 * dims) <= budget
        if keep.all():
            self._remove_unlisted_files()
            return
        evicted_dims = set(np.unique(dims[~keep]).tolist())
        rewritten = {}  # dim -> (name, uid, kept rows in new-slot order)
        try:
            for dim in sorted(evicted_dims):
                kept = table[keep & (dims == dim)]
                kept = kept[np.lexsort((kept["slot"], kept["file_id"]))]
                rewritten[dim] = (*self._copy_rows(kept, dim), kept)
            self._switch_to(rewritten, table["id"][~keep])
        except BaseException:
            self._refresh_files()
            self._remove_unlisted_files()  # the new files, if the switch did not happen
            raise
        self._refresh_files()
        self._remove_unlisted_files()
        self._shrink_index()

    def _switch_to(self, rewritten, evicted_ids):
        """In one transaction: drop evicted entries, point kept ones at their new files."""
        conn = self._conn
        with transaction(conn):
            for chunk in chunks(evicted_ids.tolist(), max_variables(conn)):
                conn.execute(
                    f"DELETE FROM entries WHERE id IN ({','.join('?' * len(chunk))})", chunk
                )
            for dim, (name, uid, kept) in rewritten.items():
                conn.execute("DELETE FROM files WHERE dim = ?", (dim,))
                if name is None:
                    continue
                file_id = conn.execute(
                    "INSERT INTO files (dim, name, uid, entries) VALUES (?, ?, ?, ?)",
                    (dim, name, uid, len(kept)),
                ).lastrowid
                moved = kept.copy()
                moved["file_id"] = file_id
                moved["slot"] = np.arange(len(moved))
                conn.executemany(
                    "UPDATE entries SET meta = ? WHERE id = ?",
                    zip(record_blobs(moved), moved["id"].tolist(), strict=True),
                )
            self._flush_counters(conn)

    def _shrink_index(self):
        # Best effort: return freed pages to the file system, empty the write-ahead log.
        with best_effort(self._conn):
            self._conn.execute("PRAGMA incremental_vacuum").fetchall()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _copy_rows(self, rows, dim):
        """Copy the vectors of records ``rows`` into a new file, digests verified."""
        if not len(rows):
            return None, None
        name, uid = self._create_vector_file(dim)
        block = max(1, (64 << 20) // (4 * dim))
        with open(self._file_path(name), "r+b", buffering=0) as target:
            for start in range(0, len(rows), block):
                part = rows[start : start + block]
                buffer = np.empty((len(part), dim), dtype=np.float32)
                meta = {
                    "id": part["id"],
                    "k2": part["k2"],
                    "file_id": part["file_id"].astype(np.int64),
                    "slot": part["slot"],
                    "digest": part["digest"],
                }
                self._read(meta, buffer, np.arange(len(part)))
                pwrite_all(target, memoryview(buffer).cast("B"), HEADER_SIZE + start * 4 * dim)
            fsync(target.fileno())
        return name, uid
