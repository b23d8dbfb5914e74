"""``skembed cache info|clear``: look at, empty or repair the embedding cache."""

from __future__ import annotations

import json
import os
import sys
import warnings

__all__ = ["add_parser"]


def _size(n_bytes):
    if n_bytes < 1000:
        return f"{n_bytes:,} bytes"
    for unit in ("KB", "MB", "GB"):
        n_bytes /= 1000
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:,.1f} {unit}"


def add_parser(commands):
    from .._cache import default_cache_dir

    cache = commands.add_parser("cache", help="inspect, empty or repair the embedding cache")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("info", "print the cache's location, entries, size and recorded hits/misses"),
        (
            "clear",
            "delete every cached vector; on a damaged cache, delete only what cannot be "
            "read (run it again to delete the rest)",
        ),
    ):
        action = actions.add_parser(name, help=text, description=text)
        where = action.add_mutually_exclusive_group()
        where.add_argument(
            "--dir",
            metavar="PATH",
            help="cache directory (default: $SKEMBED_CACHE_DIR, else the per-user cache "
            f"directory, here {default_cache_dir()})",
        )
        where.add_argument(
            "--redis",
            metavar="URL",
            help="a Redis cache, redis://host:port/db (password in $SKEMBED_REDIS_PASSWORD)",
        )
        if name == "info":
            action.add_argument("--json", action="store_true", help="print JSON on stdout")
        action.set_defaults(handler=run)


def run(args):
    """Run ``skembed cache ACTION``; return the exit status (errors are raised)."""
    if args.redis:
        from .._cache import cache_from_url

        cache = cache_from_url(args.redis)
        try:
            return _info(args, cache) if args.action == "info" else _clear(cache)
        finally:
            cache.close()
    from .._cache import INDEX_FILENAME, CacheWarning, EmbeddingCache, default_cache_dir

    directory = os.path.abspath(args.dir) if args.dir else default_cache_dir()
    if not os.path.isfile(os.path.join(directory, INDEX_FILENAME)):
        if getattr(args, "json", False):
            print(json.dumps({"path": directory, "exists": False, "entries": 0}))
        else:
            print(f"No embedding cache in {directory}.")
        return 0
    if args.action == "clear" and _damaged(directory):
        return _repair(directory)
    with warnings.catch_warnings():
        # A fallback to a temporary cache would report on, or clear, the wrong one.
        warnings.simplefilter("error", CacheWarning)
        # 'info' only reads: it works on a cache that cannot be written, and leaves
        # everything as it was (no upgrade of an older format, no log files).
        cache = EmbeddingCache(directory, read_only=args.action == "info")
    try:
        return _info(args, cache) if args.action == "info" else _clear(cache)
    finally:
        cache.close()


# What this handle did, not what the cache holds (and the temporary fallback of 'info').
_PROCESS_ONLY = ("hits", "misses", "read_only", "fallback", "fallback_entries")


def _info(args, cache):
    from .._cache._ledger import largest_namespaces

    stats = cache.stats()
    path = stats["path"]
    read_only = not str(path).startswith(("redis://", "rediss://")) and (
        not os.access(path, os.W_OK) or not os.access(os.path.join(path, "index.sqlite3"), os.W_OK)
    )
    if args.json:
        stats = {k: v for k, v in stats.items() if k not in _PROCESS_ONLY}
        stats["entries_by_dim"] = {str(k): v for k, v in stats["entries_by_dim"].items()}
        stats["largest_namespaces"] = largest_namespaces(cache, cache.stats())
        print(json.dumps({"exists": True, "writable": not read_only, **stats}))
        return 0
    by_dim = ", ".join(f"{n:,} of {dim}-d" for dim, n in stats["entries_by_dim"].items())
    print(f"path:    {path}" + (f" (prefix {stats['prefix']})" if "prefix" in stats else ""))
    if read_only:
        print("mode:    read-only (vectors are served; new ones are cached elsewhere)")
    print(f"entries: {stats['entries']:,}" + (f" ({by_dim})" if by_dim else ""))
    print(f"size:    {_size(stats['size_bytes'])}")
    print(f"hits:    {stats['total_hits']:,}")
    print(f"misses:  {stats['total_misses']:,}")
    largest = largest_namespaces(cache, stats)
    if largest:
        print("largest namespaces (estimated from the vectors written since the last clear):")
        width = max(len(row["model"]) for row in largest)
        for row in largest:
            print(
                f"  {row['model']:<{width}}  {row['dim']:>5}-d  {row['count']:>12,} vectors  "
                f"{_size(row['bytes']):>10}"
            )
    return 0


def _clear(cache):
    before = cache.stats()
    cache.clear()
    freed = max(0, before["size_bytes"] - cache.stats()["size_bytes"])
    print(f"Removed {before['entries']:,} entries from {before['path']} ({_size(freed)} freed).")
    return 0


def _damaged(directory):
    """Whether the directory cache has entries that cannot be read (reads them all)."""
    from .._cache import CacheError, EmbeddingCache
    from .._cache._repair import find_damage, index_damage

    try:
        if index_damage(directory) is not None:
            return True
        cache = EmbeddingCache(directory, read_only=True)
    except CacheError:
        return False  # not damage: opening it for clearing says what is wrong
    try:
        with cache._lock:
            return bool(find_damage(cache)[0])
    finally:
        cache.close()


def _repair(directory):
    from .._cache._repair import repair

    report = repair(directory)
    print(f"The embedding cache in {directory} is damaged:", file=sys.stderr)
    for name, what in report["damaged"].items():
        if report["removed"] is None:
            print(f"  {name} cannot be read ({what})", file=sys.stderr)
        else:
            print(f"  {name}: {what:,} entries cannot be read", file=sys.stderr)
    if report["removed"] is None:
        n_files = sum(name.startswith("vectors-") for name in report["deleted_files"])
        print(
            f"Removed the index and {n_files} vector file(s): nothing can be read "
            "without the index; the cache starts empty (resumable Batch API state is kept).",
        )
    else:
        deleted = ", ".join(report["deleted_files"]) or "none"
        print(
            f"Removed {report['removed']:,} entries that cannot be read and kept "
            f"{report['kept']:,} that can (files deleted: {deleted}). Run "
            f"'skembed cache clear --dir {directory}' again to delete the rest."
        )
    return 0
