"""The per-row digest both stores keep with every vector, and check on every read.

A row's digest is BLAKE2b-64 of the row's bytes, salted with the first 16 bytes of its
key (what the directory store's index keeps of it): a swapped pair of words, two
flipped sign bits, any pattern of flipped bits, a row of another entry, all fail it
(but for a chance of 2**-64), where the wrapping sum of the row's words that the first
format kept missed swaps and paired flips. That sum is kept here only to read (and
upgrade) caches written in that format.

Hashing costs about a second per GB and core (much more than copying the rows), so
large batches are hashed on several threads: ``hashlib`` lets go of the GIL for rows
of 2,048 bytes or more (512 floats and up).

This module imports nothing else of skembed.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = [
    "DIGEST_PERSON",
    "SALT_SIZE",
    "RowCheck",
    "legacy_row_sums",
    "row_digests",
    "salts_of",
]

#: BLAKE2b's personalisation string for row digests: a new one for a new digest.
DIGEST_PERSON = b"skembed-row-v2"
SALT_SIZE = 16
# Below this many bytes the threads cost more than they save.
_PARALLEL_BYTES = 4 << 20
# hashlib keeps the GIL while it hashes less than this (HASHLIB_GIL_MINSIZE).
_GIL_FREE_ROW_BYTES = 2048
_MAX_THREADS = 8


def salts_of(keys):
    """The salt of each row: the first 16 bytes of its (n, 32) uint8 key."""
    return np.ascontiguousarray(keys[:, :SALT_SIZE])


def row_digests(rows, salts, positions=None):
    """BLAKE2b-64 of each row of ``rows``, salted with its key; ``(n,)`` uint64.

    Parameters
    ----------
    rows : ndarray of shape (m, d)
        C-contiguous rows (float32 or their uint32 words); only their bytes count.
    salts : ndarray of shape (n, 16), dtype uint8
        The salt of each digested row (:func:`salts_of` its key).
    positions : ndarray of int, default=None
        The rows to digest (``None``: all of them, then n = m), in ``salts``' order.
    """
    rows = np.ascontiguousarray(rows)
    row_bytes = rows.shape[1] * rows.itemsize
    positions = np.arange(len(rows)) if positions is None else np.asarray(positions)
    if not len(positions) or not row_bytes:
        return np.zeros(len(positions), dtype="<u8")
    salts = memoryview(np.ascontiguousarray(salts, dtype=np.uint8)).cast("B")
    data = memoryview(rows.reshape(-1).view(np.uint8))
    n = len(positions)
    threads = _threads(n * row_bytes, row_bytes)

    def digest(start, stop):
        blake2b = hashlib.blake2b
        offsets = (positions[start:stop] * row_bytes).tolist()
        return b"".join(
            [
                blake2b(
                    data[offset : offset + row_bytes],
                    digest_size=8,
                    salt=salts[SALT_SIZE * i : SALT_SIZE * (i + 1)],
                    person=DIGEST_PERSON,
                ).digest()
                for i, offset in enumerate(offsets, start)
            ]
        )

    if threads == 1:
        joined = digest(0, n)
    else:
        # A few pieces per thread, so that one slow thread does not hold up the rest.
        bounds = np.linspace(0, n, 4 * threads + 1).astype(int).tolist()
        with ThreadPoolExecutor(threads, thread_name_prefix="skembed-digest") as pool:
            joined = b"".join(pool.map(digest, bounds[:-1], bounds[1:]))
    return np.frombuffer(joined, dtype="<u8")


class RowCheck:
    """Digests rows of an array as a reader fills it, on worker threads when it pays.

    The reader calls :meth:`add` with each block of rows it has filled and goes on
    reading while threads hash them; :meth:`mismatches` waits for them.

    Parameters
    ----------
    rows : ndarray of shape (n, d)
        The C-contiguous array being filled.
    salts : ndarray of shape (n, 16), dtype uint8, or None
        The salt of each row; ``None`` checks the sums of format 1 instead.
    expected : ndarray of shape (n,), dtype uint64
        The digest (or sum) each row must have.
    n_bytes : int
        How many bytes will be added in all (to decide whether threads pay).
    """

    def __init__(self, rows, salts, expected, n_bytes):
        self.rows, self.salts, self.expected = rows, salts, expected
        threads = _threads(n_bytes, rows.shape[1] * rows.itemsize) if salts is not None else 1
        self._pool = None if threads == 1 else ThreadPoolExecutor(threads, "skembed-digest")
        self._added = []  # (positions, future or None)

    def add(self, positions):
        """Digest the rows ``positions``, which hold their final bytes."""
        future = None
        if self._pool is not None:
            future = self._pool.submit(row_digests, self.rows, self.salts[positions], positions)
        self._added.append((positions, future))

    def mismatches(self):
        """The positions added whose digest is not the expected one, in order added."""
        try:
            positions = np.concatenate([p for p, _ in self._added] or [np.arange(0)])
            if self._pool is not None:
                actual = np.concatenate([future.result() for _, future in self._added])
            elif self.salts is None:
                actual = legacy_row_sums(self.rows[positions]).astype(np.uint64)
            else:
                actual = row_digests(self.rows, self.salts[positions], positions)
            return positions[actual != self.expected[positions]]
        finally:
            self.close()

    def close(self):
        """Stop the threads (what they are hashing is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def legacy_row_sums(words):
    """The first format's row checksum: the wrapping sum of the row's uint32 words."""
    return np.asarray(words).view(np.uint32).sum(axis=1, dtype=np.uint32)


def _threads(n_bytes, row_bytes):
    if n_bytes < _PARALLEL_BYTES or row_bytes < _GIL_FREE_ROW_BYTES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_THREADS))
