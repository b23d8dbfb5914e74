"""Command line: ``python -m skembed cache info|clear [--dir PATH]``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from ._cache import INDEX_FILENAME, CacheError, CacheWarning, EmbeddingCache, default_cache_dir

__all__ = ["main"]


def _size(n_bytes):
    if n_bytes < 1000:
        return f"{n_bytes:,} bytes"
    for unit in ("KB", "MB", "GB"):
        n_bytes /= 1000
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:,.1f} {unit}"


def _info(cache):
    stats = cache.stats()
    by_dim = ", ".join(f"{n:,} of {dim}-d" for dim, n in stats["entries_by_dim"].items())
    print(f"path:    {stats['path']}")
    if not os.access(stats["path"], os.W_OK) or not os.access(
        os.path.join(stats["path"], INDEX_FILENAME), os.W_OK
    ):
        print("mode:    read-only (vectors are served; new ones are cached elsewhere)")
    print(f"entries: {stats['entries']:,}" + (f" ({by_dim})" if by_dim else ""))
    print(f"size:    {_size(stats['size_bytes'])}")
    print(f"hits:    {stats['total_hits']:,}")
    print(f"misses:  {stats['total_misses']:,}")


def _clear(cache):
    before = cache.stats()
    cache.clear()
    print(
        f"Removed {before['entries']:,} entries from {before['path']} "
        f"({_size(max(0, before['size_bytes'] - cache.stats()['size_bytes']))} freed)."
    )


def _parser():
    parser = argparse.ArgumentParser(prog="skembed", description="skembed utilities.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cache = commands.add_parser("cache", help="inspect or empty the embedding cache")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("info", "print the cache's location, entries, size and recorded hits/misses"),
        ("clear", "delete every cached vector"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument(
            "--dir",
            metavar="PATH",
            help="cache directory (default: $SKEMBED_CACHE_DIR, else the per-user cache "
            f"directory, here {default_cache_dir()})",
        )
    return parser


def main(argv=None):
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        0 on success, 1 if the cache cannot be used.
    """
    args = _parser().parse_args(argv)
    directory = os.path.abspath(args.dir) if args.dir else default_cache_dir()
    if not os.path.isfile(os.path.join(directory, INDEX_FILENAME)):
        print(f"No embedding cache in {directory}.")
        return 0
    try:
        with warnings.catch_warnings():
            # A fallback to a temporary cache would report on, or clear, the wrong one.
            warnings.simplefilter("error", CacheWarning)
            # 'info' only reads: it works on a cache that cannot be written, and leaves
            # everything as it was (no upgrade of an older format, no log files).
            cache = EmbeddingCache(directory, read_only=args.action == "info")
        try:
            {"info": _info, "clear": _clear}[args.action](cache)
        finally:
            cache.close()
    except (CacheError, CacheWarning) as error:
        print(f"skembed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
