"""The operating-system side of the directory store: locks, positioned I/O, durability.

Also the vector files' header (its layout and its check) and :class:`StateFile`, a piece
of resumable state in a file replaced atomically.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile

import numpy as np

from ._base import CacheCorruptionError, StateBlob

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "StateFile",
    "check_header",
    "fsync",
    "fsync_dir",
    "lock_file",
    "open_private",
    "pack_header",
    "pread_into",
    "pwrite_all",
    "read_rows",
    "unlock_file",
]

#: Version of the directory store's format: the vector files' header and the index's
#: ``user_version``. A change to either (a new row digest: see ``row_checksums``) bumps
#: it; a store then refuses files of another version by name.
# TODO(#15): the stronger row digest bumps this, with an upgrade path that never re-pays.
FORMAT_VERSION = 1
_MAGIC = b"SKEMBVEC"
_HEADER = struct.Struct("<8sII16s")  # magic, format version, width, file uid
HEADER_SIZE = 64

fsync = getattr(os, "fdatasync", os.fsync)


# -- the vector files' header ------------------------------------------------------------


def pack_header(dim, uid):
    """The header of a new vector file of ``dim``-d rows and uid ``uid`` (16 bytes)."""
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, dim, uid).ljust(HEADER_SIZE, b"\0")


def check_header(header, path, dim, uid):
    """Refuse a vector file whose header is not the one the index expects."""
    clear = f"Run 'python -m skembed cache clear --dir {os.path.dirname(path)}'."
    if len(header) < _HEADER.size:
        raise CacheCorruptionError(
            f"The embedding cache vector file {path} is truncated (no header). {clear}", path
        )
    magic, version, file_dim, file_uid = _HEADER.unpack_from(header)
    if magic == _MAGIC and version != FORMAT_VERSION:
        raise CacheCorruptionError(
            f"The embedding cache vector file {path} has format version {version}, but this "
            f"version of skembed reads version {FORMAT_VERSION}. Upgrade skembed, or use "
            f"another directory, or {clear[0].lower()}{clear[1:]}",
            path,
        )
    if magic != _MAGIC or version != FORMAT_VERSION or file_dim != dim or file_uid != uid:
        raise CacheCorruptionError(
            f"The embedding cache vector file {path} does not match the index (header: "
            f"magic {magic!r}, version {version}, {file_dim}-d): it was replaced or damaged. "
            f"{clear}",
            path,
        )


# -- positioned reads and writes ---------------------------------------------------------


def read_rows(handle, path, slots, buffer):
    """Read the rows ``slots`` (ascending) of the vector file ``handle`` into ``buffer``."""
    n, row_bytes = len(slots), buffer.shape[1] * 4
    first, span = int(slots[0]), int(slots[-1] - slots[0]) + 1
    if span == n:  # consecutive rows: one read
        pread_into(handle, memoryview(buffer).cast("B"), HEADER_SIZE + first * row_bytes, path)
    elif span <= 2 * n:  # dense: reading the gaps too costs less than a call per run
        whole = np.empty((span, buffer.shape[1]), dtype=np.float32)
        pread_into(handle, memoryview(whole).cast("B"), HEADER_SIZE + first * row_bytes, path)
        np.take(whole, slots - first, axis=0, out=buffer)
    else:  # sparse: one read per run of consecutive rows
        flat = memoryview(buffer).cast("B")
        starts = np.flatnonzero(np.concatenate(([True], np.diff(slots) != 1))).tolist()
        for begin, stop in zip(starts, [*starts[1:], n], strict=True):
            pread_into(
                handle,
                flat[begin * row_bytes : stop * row_bytes],
                HEADER_SIZE + int(slots[begin]) * row_bytes,
                path,
            )


def pread_into(handle, buffer, offset, path):
    """Fill ``buffer`` from ``offset`` of the file; a short file is corruption."""
    while len(buffer):
        if hasattr(os, "preadv"):  # a positioned read straight into the array
            got = os.preadv(handle.fileno(), [buffer], offset)
        else:
            handle.seek(offset)
            got = handle.readinto(buffer)
        if not got:
            raise CacheCorruptionError(
                f"The embedding cache vector file {path} ended early (truncated while in use?).",
                path,
            )
        buffer, offset = buffer[got:], offset + got


def pwrite_all(handle, data, offset):
    """Write all of ``data`` at ``offset`` of the file."""
    while len(data):
        if hasattr(os, "pwrite"):
            written = os.pwrite(handle.fileno(), data, offset)
        else:
            handle.seek(offset)
            written = handle.write(data)
        data = data[written:]
        offset += written


# -- files, durability, locks ------------------------------------------------------------


def open_private(path, exclusive=False):
    """Open (creating with mode 0600) ``path`` for reading and writing, unbuffered."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | (os.O_EXCL if exclusive else 0)
    return open(os.open(path, flags, 0o600), "r+b", buffering=0)


def fsync_dir(path):
    """Make a new file's directory entry durable (best effort)."""
    # Directories cannot be opened on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def lock_file(fd):
    """Take the exclusive lock of an open file, waiting as long as it takes."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:  # msvcrt gives up after ten seconds; keep waiting like flock does
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            return
        except OSError:
            continue


def unlock_file(fd):
    """Release the lock taken by :func:`lock_file`."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class StateFile(StateBlob):
    """Resumable state in one file, replaced atomically (a crash never leaves half of it).

    Parameters
    ----------
    path : str
        The file; its directory is created (mode 0700) on the first write.
    """

    def __init__(self, path):
        self.location = path

    def read(self):
        """The file's bytes, or ``None`` if there is no file."""
        try:
            with open(self.location, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def write(self, data):
        """Replace the file with ``data``, fsynced before it replaces the old one."""
        directory = os.path.dirname(self.location)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.location)
        except BaseException:
            # A Ctrl-C right after the replace finds no temporary file left: it must
            # still surface as itself, not as a FileNotFoundError.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def delete(self):
        """Remove the file, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.location)
