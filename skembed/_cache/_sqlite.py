"""The directory store's SQLite side: connections (read-only ones too), transactions.

In a directory it cannot write (a shared warm cache on a network file system, a cache
baked into a container image, another user's directory), the store still reads the
index: :func:`open_read_only` opens it without writing anything beside it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sqlite3

from ._files import temporary_directory

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "best_effort",
    "chunks",
    "connect",
    "connect_read_only",
    "max_variables",
    "open_read_only",
    "transaction",
]

BUSY_TIMEOUT_SECONDS = 120.0


def connect(uri):
    """An SQLite connection to the database at the ``file:`` URI ``uri``."""
    return sqlite3.connect(
        uri,
        uri=True,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,
    )


def open_read_only(index):
    """``(connection, format version, os.stat)`` of the index ``index`` opened for
    reading only, or ``None`` if there is nothing to read (no index, one this process
    may not read, or one created and never filled)."""
    if not os.path.isfile(index):
        return None
    try:
        conn = connect_read_only(index, temporary_directory)
    except sqlite3.OperationalError as exc:
        if "unable to open" in str(exc):
            return None
        raise
    except OSError:
        return None
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        stat = os.stat(index)
    except BaseException:
        conn.close()
        raise
    if version == 0:
        conn.close()
        return None
    return conn, version, stat


def connect_read_only(index, scratch):
    """Open the SQLite database ``index`` for reading only.

    SQLite reads a database in WAL mode only with its ``-shm`` file beside it, or if it
    can create one. In a directory it cannot write, a database without a write-ahead log
    (closed cleanly: every commit is in the file) is opened as immutable; one with a log
    is read from a private copy of both in the directory ``scratch()``, which SQLite can
    replay there.
    """
    uri = pathlib.Path(index).as_uri()
    try:
        return _opened(f"{uri}?mode=ro")
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc):
            raise
    log = f"{index}-wal"
    if not os.path.exists(log) or os.path.getsize(log) == 0:
        return _opened(f"{uri}?immutable=1")
    copy = os.path.join(scratch(), "read-only-index")
    os.makedirs(copy, mode=0o700, exist_ok=True)
    target = os.path.join(copy, os.path.basename(index))
    shutil.copyfile(index, target)
    shutil.copyfile(log, f"{target}-wal")
    return _opened(f"{pathlib.Path(target).as_uri()}?mode=ro")


def _opened(uri):
    """A connection that has read the database header (SQLite opens lazily)."""
    conn = connect(uri)
    try:
        conn.execute("PRAGMA user_version").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def best_effort(conn):
    """Run optional index writes: wait at most a second for the lock, ignore failures."""
    conn.execute("PRAGMA busy_timeout=1000")
    try:
        yield
    except sqlite3.OperationalError:
        pass
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")


@contextlib.contextmanager
def transaction(conn):
    """A write transaction: committed if the block succeeds, rolled back otherwise."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT may have ended it already
            conn.execute("ROLLBACK")
        raise


def max_variables(conn):
    """The most ``?`` one statement may have (the keys of one look-up)."""
    if hasattr(conn, "getlimit"):  # Python >= 3.11
        return min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32766)
    return 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def chunks(values, size):
    """Consecutive slices of ``values`` of at most ``size`` items."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
