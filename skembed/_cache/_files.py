"""The operating-system side of the directory store: locks, positioned I/O, durability.

Also the directory store's formats on disk (the vector files' header, its check, the
index's entry records) and :class:`StateFile`, a piece of resumable state in a file
replaced atomically.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import sqlite3
import struct
import tempfile

import numpy as np

from ._base import CacheCorruptionError, CacheError, StateBlob

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "NO_SPACE_ERRNOS",
    "RECORD",
    "RECORD_V1",
    "LayeredState",
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
    "record_blobs",
    "remove_tree",
    "temporary_directory",
    "unlock_file",
    "unwritable_error",
    "writing",
]

#: Version of the directory store's format: the vector files' header and the index's
#: ``user_version``. A change to either (a new row digest: see ``_digests``) bumps it.
#: Version 1 kept a 32-bit sum per row; version 2 an XXH3-64 digest. An index of version
#: 1 is upgraded in place when it is opened for writing (``_upgrade``), and read as it
#: is when it cannot be written; a newer version is refused by name.
FORMAT_VERSION = 2
#: Versions of the vector files' header this code reads: their rows are the same raw
#: float32 in both (only the index records changed), so files of version 1 stay.
_FILE_VERSIONS = (1, 2)
_MAGIC = b"SKEMBVEC"
_HEADER = struct.Struct("<8sII16s")  # magic, format version, width, file uid
HEADER_SIZE = 64

fsync = getattr(os, "fdatasync", os.fsync)

# An entry's record in the index (``entries.meta``). Records are fixed-size blobs so that
# a look-up returns all of its rows as one concatenated blob, decoded by numpy: no Python
# object per row, which is what made integer columns slow. The row id is in the record
# so that the blob describes itself, whatever order SQLite returns rows in. The digest
# is the row's (``_digests.row_digests``), seeded with the key's first 8 bytes: ``id``.
RECORD = np.dtype(
    [("id", "<i8"), ("k2", "<i8"), ("file_id", "<u4"), ("slot", "<i8"), ("digest", "<u8")]
)
#: The record of format version 1: a 32-bit sum of the row's words where ``RECORD`` has
#: its digest.
RECORD_V1 = np.dtype(
    [("id", "<i8"), ("k2", "<i8"), ("file_id", "<u4"), ("slot", "<i8"), ("checksum", "<u4")]
)


def record_blobs(records):
    """Each record of the structured array ``records`` as its own ``bytes``."""
    raw = records.tobytes()
    size = records.dtype.itemsize
    return [raw[start : start + size] for start in range(0, len(raw), size)]


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
    if magic == _MAGIC and version not in _FILE_VERSIONS:
        raise CacheCorruptionError(
            f"The embedding cache vector file {path} has format version {version}, but this "
            f"version of skembed reads version {FORMAT_VERSION}. Upgrade skembed, or use "
            f"another directory, or {clear[0].lower()}{clear[1:]}",
            path,
        )
    if magic != _MAGIC or file_dim != dim or file_uid != uid:
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

#: What a write meets on a full disk, an exhausted quota, or a file system that became
#: read-only: the cache's fault, not the caller's, and worth a clear message.
NO_SPACE_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS) if code
)


def unwritable_error(exc, path):
    """The :class:`CacheError` for ``exc`` (an OSError) met writing under ``path``, or None.

    Only a full disk, an exhausted quota or a read-only file system: other errors are
    not the disk's to explain.
    """
    if getattr(exc, "errno", None) not in NO_SPACE_ERRNOS:
        return None
    what = exc.strerror or os.strerror(exc.errno)
    return CacheError(
        f"The embedding cache {path} cannot be written: {what} "
        f"({errno.errorcode.get(exc.errno, exc.errno)}). Vectors received before this "
        "were cached, and a re-run sends only the others. Free some space (or make the "
        "file system writable), bound the cache with EmbeddingCache(path, "
        "max_size_bytes=...), or point it at another directory (SKEMBED_CACHE_DIR or "
        "cache=...).",
        path,
    )


# SQLite's messages for a write that a full disk (or a file system turned read-only
# while the index was open) refused.
_SQLITE_UNWRITABLE = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
}


@contextlib.contextmanager
def writing(path):
    """Turn a full disk (or quota, or read-only file system) into a clear CacheError.

    Both the operating system's errors and SQLite's.
    """
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        code = _SQLITE_UNWRITABLE.get(str(exc))
        error = unwritable_error(OSError(code, str(exc)) if code else exc, path)
        if error is None:
            raise
        raise error from exc


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
        with writing(self.location):
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
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

    def delete(self):
        """Remove the file, if there is one."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.location)


class LayeredState(StateBlob):
    """State of a read-only cache: read there, unless this process replaced it since.

    Writes (and deletions) go to ``above``, the temporary cache that takes the read-only
    cache's new vectors, and live as long as it does.
    """

    def __init__(self, below, above):
        self._below = below
        self._above = above
        self._deleted = StateFile(f"{above.location}.deleted")
        self.location = f"{below.location} (read-only; changes in {above.location})"

    def read(self):
        data = self._above.read()
        if data is not None or self._deleted.read() is not None:
            return data
        return self._below.read()

    def write(self, data):
        self._above.write(data)
        self._deleted.delete()

    def delete(self):
        self._above.delete()
        self._deleted.write(b"")


# -- temporary caches ------------------------------------------------------------------


def temporary_directory():
    """A new private temporary directory, deleted when this process exits."""
    path = tempfile.mkdtemp(prefix="skembed-cache-")
    atexit.register(remove_tree, path, os.getpid())
    return path


def remove_tree(path, pid):
    """Delete the directory ``path`` if this is the process ``pid`` (which made it)."""
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)
