"""Per-namespace tallies, and a one-time notice when the default cache grows past a size.

A store never sees a namespace (only digests), so it cannot tell which model its
vectors belong to. The embedding job tells it, once per call that wrote vectors
(:func:`note_written`): the vectors written for the namespace are added to a small
record in the state room ``namespaces/`` (the model name, the width and a count; the
namespace itself, with its endpoint, is kept as a digest only). ``skembed cache info``
lists the largest ones (:func:`largest_namespaces`). The counts are of vectors written
since the last clear, scaled down when eviction left fewer entries of a width: an
estimate, and cheap (one small file replaced per call, not fsynced; never a scan).

After writing, a call to the *default* cache (:func:`~skembed._cache.default_cache_dir`)
compares the size of its index and vector files (a ``stat`` per file) with
``$SKEMBED_CACHE_NOTICE_BYTES`` (default 1 GiB; ``0`` turns it off) and, the first time
it is past it, issues a :class:`CacheWarning` naming the size and the remedies. The mark
``notices/size.json`` makes that once per cache, not once per process: a training
script run every night says it once. ``cache clear`` removes the mark with the vectors.
A warning, not a log line: skembed logs at INFO, which scripts and notebooks do not
show, and a warning can be silenced or turned into an error with the usual filters.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings

from ._base import CacheError, CacheWarning, default_cache_dir, lock_name
from ._files import StateFile

__all__ = ["DEFAULT_NOTICE_BYTES", "NOTICE_ENV", "largest_namespaces", "note_written"]

NOTICE_ENV = "SKEMBED_CACHE_NOTICE_BYTES"
DEFAULT_NOTICE_BYTES = 1 << 30
_ROOM = "namespaces"
_MARK = "notices/size.json"


def _read_json(blob):
    with contextlib.suppress(ValueError, TypeError):
        data = blob.read()
        return None if data is None else json.loads(data)
    return None  # a damaged tally is informational only: it starts again


def note_written(cache, namespace, model, dim, n_written):
    """Add ``n_written`` vectors of width ``dim`` to ``namespace``'s tally in ``cache``.

    Never raises for a cache that cannot keep the tally: the vectors are what matter.
    """
    if cache is None or n_written <= 0 or dim is None:
        return
    with contextlib.suppress(OSError, CacheError, ValueError):
        blob = cache.state(f"{_ROOM}/{lock_name(namespace)}.json")
        tally = _read_json(blob) or {}
        count = int(tally.get("count", 0)) if tally.get("dim") == dim else 0
        record = {"model": str(model), "dim": int(dim), "count": count + int(n_written)}
        _write_quickly(blob, json.dumps(record).encode())
        _maybe_notice(cache)


def _write_quickly(blob, data):
    """Replace a tally atomically, without the fsync of resumable state: a tally lost
    to a power cut costs an estimate, not money, and the fsync would double the cost."""
    if not isinstance(blob, StateFile):
        blob.write(data)
        return
    directory = os.path.dirname(blob.location)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, blob.location)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def notice_bytes():
    """The size past which the default cache says so once (``0``: never)."""
    value = os.environ.get(NOTICE_ENV, "").strip()
    if not value:
        return DEFAULT_NOTICE_BYTES
    try:
        return max(0, int(float(value)))
    except ValueError:
        raise ValueError(
            f"${NOTICE_ENV} must be a number of bytes (0 turns the notice off), got {value!r}."
        ) from None


def _stored_bytes(path):
    total = 0
    for entry in os.scandir(path):
        if entry.name.startswith(("vectors-", "index.sqlite3")):
            with contextlib.suppress(FileNotFoundError):
                total += entry.stat().st_size
    return total


def _mib(n_bytes):
    return f"{n_bytes / 2**30:,.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


def _maybe_notice(cache):
    path = getattr(cache, "path", None)
    if not isinstance(path, str) or path != default_cache_dir() or not os.path.isdir(path):
        return  # a cache the user chose: they know where it is
    try:
        limit = notice_bytes()
    except ValueError as error:
        warnings.warn(str(error), CacheWarning, stacklevel=3)
        return
    if not limit:
        return
    mark = cache.state(_MARK)
    if mark.read() is not None:
        return
    size = _stored_bytes(path)
    if size <= limit:
        return
    mark.write(json.dumps({"size_bytes": size, "limit": limit}).encode())
    warnings.warn(
        f"The default embedding cache {path} holds {_mib(size)}, past "
        f"${NOTICE_ENV}={limit}. 'skembed cache info' shows its largest models; "
        "'skembed cache clear' empties it; EmbeddingCache(max_size_bytes=...) bounds it "
        "(least recently used vectors are evicted); SKEMBED_CACHE_DIR moves it. Said once "
        f"for this cache (set ${NOTICE_ENV}=0 to never say it).",
        CacheWarning,
        stacklevel=2,
    )


def largest_namespaces(cache, stats, n=10):
    """The ``n`` namespaces with the most vectors: model, width, count, bytes.

    ``stats`` is ``cache.stats()`` (its ``entries_by_dim`` scales the tallies down when
    eviction left fewer entries of a width than were written).
    """
    tallies = [t for t in _tallies(cache) if isinstance(t, dict) and "dim" in t]
    written = {}
    for tally in tallies:
        written[tally["dim"]] = written.get(tally["dim"], 0) + tally["count"]
    rows = []
    for tally in tallies:
        dim, count = int(tally["dim"]), int(tally["count"])
        present = stats["entries_by_dim"].get(dim, 0)
        if written[dim] > present:  # evicted since: shared out in proportion
            count = round(count * present / written[dim])
        if count:
            rows.append({"model": tally["model"], "dim": dim, "count": count,
                         "bytes": count * dim * 4})  # fmt: skip
    rows.sort(key=lambda row: row["bytes"], reverse=True)
    return rows[:n]


def _tallies(cache):
    path = getattr(cache, "path", None)
    if hasattr(cache, "_scan"):  # Redis: the state keys under the prefix
        from ._redis import _glob_escape

        client = cache._redis()
        pattern = f"{_glob_escape(cache.prefix)}:state:{_ROOM}/*"
        for names in cache._scan(client, pattern):
            for value in client.mget(names):
                with contextlib.suppress(ValueError, TypeError):
                    yield json.loads(value)
        return
    room = os.path.join(path, _ROOM)
    if not os.path.isdir(room):
        return
    for name in sorted(os.listdir(room)):
        with contextlib.suppress(OSError, ValueError), open(os.path.join(room, name), "rb") as f:
            yield json.loads(f.read())
