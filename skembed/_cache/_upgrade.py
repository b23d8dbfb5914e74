"""The directory store's upgrade from format 1 (a sum per row) to 2 (a digest per row).

Format 1 kept, in each entry's record, the wrapping 32-bit sum of its row's words;
format 2 keeps a seeded XXH3-64 digest (``_digests``). The vector files are the same in
both. Opened for writing, an index of format 1 is upgraded in place, once, by the first
process that opens it: every row is read and checked against its old sum, and its
record rewritten with the digest of those bytes, all in one transaction (a crash leaves
format 1, upgraded again at the next open). Nothing is discarded and nothing is paid
again. A row that fails its old sum, or cannot be read, gets a digest that fails, so
that reading it raises the :class:`~skembed.CacheCorruptionError` it raised before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3

import numpy as np

from ._base import CacheCorruptionError
from ._digests import legacy_row_sums, row_digests
from ._files import (
    HEADER_SIZE,
    RECORD,
    RECORD_V1,
    check_header,
    read_rows,
    record_blobs,
)

__all__ = ["upgrade_records"]

_logger = logging.getLogger("skembed")
# Rows are read and digested in blocks of about this size.
_BLOCK_BYTES = 32 << 20
# XOR-ed into the digest of a row that failed its old sum: the record then fails.
_DAMAGED = np.uint64(1)


def upgrade_records(conn, directory):
    """Rewrite every format-1 record of ``conn``'s index as a format-2 one.

    The caller holds the writer lock and has a write transaction open on ``conn``; the
    vector files are in ``directory``.
    """
    files = {
        file_id: (name, dim, bytes(uid))
        for file_id, dim, name, uid in conn.execute("SELECT file_id, dim, name, uid FROM files")
    }
    rows = conn.execute("SELECT meta FROM entries").fetchall()
    if any(not isinstance(row[0], bytes) or len(row[0]) != RECORD_V1.itemsize for row in rows):
        raise sqlite3.DatabaseError("an entry record has the wrong length")
    old = np.frombuffer(b"".join(row[0] for row in rows), dtype=RECORD_V1)
    _logger.info(
        "upgrading the embedding cache in %s to format 2 (a digest per vector): "
        "checking its %d vectors once",
        directory,
        len(old),
    )
    new = np.zeros(len(old), dtype=RECORD)
    for field in ("id", "k2", "file_id", "slot"):
        new[field] = old[field]
    # Rows that cannot be read keep digest 0: reading them fails as it did before (a
    # missing or replaced file, a slot past the end), before any digest is compared.
    for file_id, (name, dim, uid) in files.items():
        mine = np.flatnonzero(old["file_id"] == file_id)
        _digest_file(os.path.join(directory, name), dim, uid, old, new, mine)
    conn.executemany(
        "UPDATE entries SET meta = ? WHERE id = ?",
        zip(record_blobs(new), new["id"].tolist(), strict=True),
    )


def _digest_file(path, dim, uid, old, new, mine):
    """Digest the rows ``mine`` (indices into the records) of one vector file."""
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115
    except OSError:
        return
    with handle:
        try:
            check_header(handle.read(HEADER_SIZE), path, dim, uid)
        except CacheCorruptionError:
            return
        row_bytes = 4 * dim
        n_rows = (os.fstat(handle.fileno()).st_size - HEADER_SIZE) // row_bytes
        slots = old["slot"][mine]
        mine = mine[(slots >= 0) & (slots < n_rows)]
        mine = mine[np.argsort(old["slot"][mine], kind="stable")]
        block = max(1, _BLOCK_BYTES // row_bytes)
        for start in range(0, len(mine), block):
            part = mine[start : start + block]
            buffer = np.empty((len(part), dim), dtype=np.float32)
            with contextlib.suppress(CacheCorruptionError):  # a file cut while we read
                read_rows(handle, path, old["slot"][part], buffer)
                salts = np.empty((len(part), 2), dtype="<i8")
                salts[:, 0], salts[:, 1] = old["id"][part], old["k2"][part]
                digests = row_digests(buffer, salts.view(np.uint8))
                damaged = legacy_row_sums(buffer) != old["checksum"][part]
                new["digest"][part] = np.where(damaged, digests ^ _DAMAGED, digests)
