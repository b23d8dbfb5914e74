"""The per-row digest both stores keep with every vector, and check on every read.

A row's digest is XXH3-64 of the row's bytes, seeded with the first 8 bytes of its key
(read as a little-endian integer; the salt of a row is the first 16 bytes of its key,
what the directory store's index keeps of it): a swapped pair of words, two flipped
sign bits, any pattern of flipped bits, a row of another entry, all fail it (but for a
chance of about 2**-64), where the wrapping sum of the row's words that the first
format kept missed swaps and paired flips. That sum is kept here only to read (and
upgrade) caches written in that format.

XXH3 (the ``xxhash`` package) is a checksum, not a cryptographic hash: it guards
against damage, not against someone who may write the cache (who could write any
vector anyway). It hashes at about the speed of copying memory (half a microsecond
for a row of 1536 floats, the Python call included), so rows are digested on the
reader's thread, each block right after it is read, while it is in the CPU cache.

This module imports nothing else of skembed.
"""

from __future__ import annotations

import numpy as np
import xxhash

__all__ = [
    "SALT_SIZE",
    "RowCheck",
    "legacy_row_sums",
    "row_digests",
    "salts_of",
]

SALT_SIZE = 16
# The digest's seed: the first bytes of the salt.
_SEED_SIZE = 8


def salts_of(keys):
    """The salt of each row: the first 16 bytes of its (n, 32) uint8 key."""
    return np.ascontiguousarray(keys[:, :SALT_SIZE])


def row_digests(rows, salts, positions=None):
    """XXH3-64 of each row of ``rows``, seeded with its key; ``(n,)`` uint64.

    Parameters
    ----------
    rows : ndarray of shape (m, d)
        C-contiguous rows (float32 or their uint32 words); only their bytes count.
    salts : ndarray of shape (n, 16), dtype uint8
        The salt of each digested row (:func:`salts_of` its key); its first 8 bytes,
        as a little-endian integer, seed the row's digest.
    positions : ndarray of int, default=None
        The rows to digest (``None``: all of them, then n = m), in ``salts``' order.
    """
    rows = np.ascontiguousarray(rows)
    row_bytes = rows.shape[1] * rows.itemsize
    positions = np.arange(len(rows)) if positions is None else np.asarray(positions)
    n = len(positions)
    if not n or not row_bytes:
        return np.zeros(n, dtype="<u8")
    salts = np.asarray(salts, dtype=np.uint8).reshape(n, SALT_SIZE)
    seeds = np.ascontiguousarray(salts[:, :_SEED_SIZE]).view("<u8").ravel().tolist()
    data = memoryview(rows.reshape(-1).view(np.uint8))
    offsets = (positions * row_bytes).tolist()
    xxh3 = xxhash.xxh3_64_intdigest
    pairs = zip(offsets, seeds, strict=True)
    return np.fromiter(
        (xxh3(data[offset : offset + row_bytes], seed) for offset, seed in pairs),
        dtype="<u8",
        count=n,
    )


class RowCheck:
    """Digests rows of an array as a reader fills it.

    The reader calls :meth:`add` with each block of rows it has filled, which digests
    them at once, while they are in the CPU cache; :meth:`mismatches` says which
    failed.

    Parameters
    ----------
    rows : ndarray of shape (n, d)
        The C-contiguous array being filled.
    salts : ndarray of shape (n, 16), dtype uint8, or None
        The salt of each row; ``None`` checks the sums of format 1 instead.
    expected : ndarray of shape (n,), dtype uint64
        The digest (or sum) each row must have.
    n_bytes : int, default=None
        How many bytes will be added in all; not needed (kept for the callers).
    """

    def __init__(self, rows, salts, expected, n_bytes=None):
        self.rows, self.salts, self.expected = rows, salts, expected
        self._bad = []

    def add(self, positions):
        """Digest the rows ``positions``, which hold their final bytes."""
        positions = np.asarray(positions)
        if self.salts is None:
            actual = legacy_row_sums(self.rows[positions]).astype(np.uint64)
        else:
            actual = row_digests(self.rows, self.salts[positions], positions)
        self._bad.append(positions[actual != self.expected[positions]])

    def mismatches(self):
        """The positions added whose digest is not the expected one, in order added."""
        return np.concatenate(self._bad or [np.arange(0)])

    def close(self):
        """Nothing to release (kept for the callers)."""


def legacy_row_sums(words):
    """The first format's row checksum: the wrapping sum of the row's uint32 words."""
    return np.asarray(words).view(np.uint32).sum(axis=1, dtype=np.uint32)
