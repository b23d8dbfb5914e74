"""Repair of a damaged cache directory: remove what cannot be read, keep what can.

What ``skembed cache clear`` does when the cache is damaged (the corruption errors send
users there). Every entry is read back and checked against its digest, as
:meth:`EmbeddingCache.get` checks it; the entries that fail (a damaged or missing vector
file, a truncated one, a modified row, a malformed index record) are deleted, with
vector files no entry points at any more. An index SQLite cannot read holds nothing
that can be trusted: it is deleted with every vector file, and the cache starts empty.
Resumable state (``batch_jobs/``) is kept in both cases: it is checked where it is read.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

from ._base import KEY_SIZE, VECTOR_ROOMS, CacheCorruptionError
from ._directory import INDEX_FILENAME, EmbeddingCache, _is_vector_file
from ._files import RECORD
from ._sqlite import transaction

__all__ = ["find_damage", "index_damage", "repair"]

_CHUNK = 4096


def index_damage(path):
    """Why the index of the cache in ``path`` cannot be read, or ``None`` if it can.

    Other errors (a directory this user may not read, a newer format) are raised: they
    are not damage, and their messages say what to do.
    """
    index = os.path.join(path, INDEX_FILENAME)
    try:
        cache = EmbeddingCache(path, read_only=True)
        try:
            with cache._lock, cache._sqlite_errors():
                cache._ensure_open()
                status = cache._conn.execute("PRAGMA quick_check").fetchone()[0]
                cache._conn.execute("SELECT count(*), sum(length(meta)) FROM entries").fetchone()
                cache._conn.execute("SELECT file_id, dim, name FROM files").fetchall()
        finally:
            cache.close()
    except CacheCorruptionError as error:
        if error.path != index:
            raise
        return str(error).split(" is damaged (", 1)[-1].split("). ", 1)[0]
    return None if status == "ok" else status


def _pseudo_keys(records):
    """Keys that look up ``records``: the index uses only a key's first 128 bits."""
    keys = np.zeros((len(records), KEY_SIZE), dtype=np.uint8)
    keys[:, :8] = records["id"].astype("<i8").view(np.uint8).reshape(-1, 8)
    keys[:, 8:16] = records["k2"].astype("<i8").view(np.uint8).reshape(-1, 8)
    return keys


def _readable(cache, records, dim):
    """Which of ``records`` (all of one vector file) read back intact."""
    ok = np.zeros(len(records), dtype=bool)
    for start in range(0, len(records), _CHUNK):
        part = slice(start, start + _CHUNK)
        try:
            ok[part] = cache.get(_pseudo_keys(records[part]), dim, count=False)[0]
        except (CacheCorruptionError, ValueError):
            for i in range(start, min(start + _CHUNK, len(records))):
                with contextlib.suppress(CacheCorruptionError, ValueError):
                    ok[i] = cache.get(_pseudo_keys(records[i : i + 1]), dim, count=False)[0][0]
    return ok


def find_damage(cache):
    """Row ids of the entries of ``cache`` that cannot be read, and the files at fault.

    Returns
    -------
    bad_ids : list of int
    kept : int
        Entries that read back intact.
    files : dict
        Name of each vector file with unreadable entries -> how many.
    """
    cache._ensure_open()
    conn = cache._conn
    files = {
        fid: (dim, name) for fid, dim, name in conn.execute("SELECT file_id, dim, name FROM files")
    }
    bad, kept, by_file, groups = [], 0, {}, {}
    for row_id, meta in conn.execute("SELECT id, meta FROM entries"):
        meta = bytes(meta)
        if len(meta) != RECORD.itemsize:
            bad.append(row_id)
            by_file["index.sqlite3 (malformed records)"] = (
                by_file.get("index.sqlite3 (malformed records)", 0) + 1
            )
            continue
        record = np.frombuffer(meta, dtype=RECORD)
        if int(record["id"][0]) != row_id or int(record["file_id"][0]) not in files:
            bad.append(row_id)
            by_file["index.sqlite3 (dangling records)"] = (
                by_file.get("index.sqlite3 (dangling records)", 0) + 1
            )
            continue
        groups.setdefault(int(record["file_id"][0]), []).append(record)
    for file_id, records in groups.items():
        records = np.concatenate(records)
        dim, name = files[file_id]
        ok = _readable(cache, records, dim)
        kept += int(ok.sum())
        if not ok.all():
            bad.extend(records["id"][~ok].tolist())
            by_file[name] = int((~ok).sum())
    return bad, kept, by_file


def repair(path):
    """Remove what cannot be read from the cache in ``path``, keep what can.

    Parameters
    ----------
    path : str
        A cache directory.

    Returns
    -------
    dict
        ``kept`` (entries kept), ``removed`` (entries removed, or ``None`` when the
        index could not be read), ``damaged`` (file -> entries lost, or the reason the
        index cannot be read), ``deleted_files`` (files deleted).
    """
    reason = index_damage(path)
    if reason is not None:
        deleted = []
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.name.startswith(INDEX_FILENAME) or _is_vector_file(entry.name):
                os.unlink(entry.path)
                deleted.append(entry.name)
        for room in VECTOR_ROOMS:
            shutil.rmtree(os.path.join(path, room), ignore_errors=True)
        return {
            "kept": 0,
            "removed": None,
            "damaged": {INDEX_FILENAME: reason},
            "deleted_files": deleted,
        }
    cache = EmbeddingCache(path)
    try:
        with cache._lock:
            bad, kept, by_file = find_damage(cache)
            before = {e.name for e in os.scandir(path) if _is_vector_file(e.name)}
            conn = cache._conn
            with cache._writer(), transaction(conn):
                for start in range(0, len(bad), 500):
                    chunk = bad[start : start + 500]
                    conn.execute(
                        f"DELETE FROM entries WHERE id IN ({','.join('?' * len(chunk))})", chunk
                    )
                counts = {}
                for (meta,) in conn.execute("SELECT meta FROM entries"):
                    file_id = int(np.frombuffer(bytes(meta), dtype=RECORD)["file_id"][0])
                    counts[file_id] = counts.get(file_id, 0) + 1
                for (file_id,) in conn.execute("SELECT file_id FROM files").fetchall():
                    if counts.get(file_id):
                        conn.execute(
                            "UPDATE files SET entries = ? WHERE file_id = ?",
                            (counts[file_id], file_id),
                        )
                    else:
                        conn.execute("DELETE FROM files WHERE file_id = ?", (file_id,))
            with cache._writer():
                cache._refresh_files()
                cache._remove_unlisted_files()
            after = {e.name for e in os.scandir(path) if _is_vector_file(e.name)}
    finally:
        cache.close()
    return {
        "kept": kept,
        "removed": len(bad),
        "damaged": by_file,
        "deleted_files": sorted(before - after),
    }
