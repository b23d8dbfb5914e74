"""The command line: ``skembed embed`` and ``skembed cache info|clear``.

One module per command (``_embed``, ``_cache``; reading and writing tables in ``_io``);
this one builds the parser and turns errors into exit statuses:

=====  ==============================================================================
0      done
1      an error (a damaged cache, the API's refusal, an unreadable file...)
2      a usage error (an unknown option, a missing column, an output that cannot hold
       the vectors)
3      refused by a budget: over ``--max-cost``, or a paid job not confirmed
130    interrupted (Ctrl-C): what was received is cached; the same command resumes
=====  ==============================================================================
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _parser():
    from .. import __version__
    from . import _cache, _embed

    parser = argparse.ArgumentParser(
        prog="skembed",
        description="skembed: text embeddings from the command line.",
        epilog="Exit status: 0 done, 1 error, 2 usage error, 3 refused by a budget.",
    )
    parser.add_argument("--version", action="version", version=f"skembed {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _embed.add_parser(commands)
    _cache.add_parser(commands)
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
        0 done, 1 error, 2 usage error, 3 refused by a budget, 130 interrupted.
    """
    from .._cache import CacheError, CacheWarning
    from ..backends._base import BudgetExceededError, EmbeddingError
    from ._embed import Refused
    from ._io import UsageError

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as error:
        parser.exit_status = EXIT_USAGE
        print(f"skembed: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (Refused, BudgetExceededError) as error:
        print(f"skembed: refused: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(
            "\nskembed: interrupted. Vectors received so far are cached: run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (CacheError, CacheWarning, EmbeddingError, ValueError, OSError, ImportError) as error:
        print(f"skembed: {error}", file=sys.stderr)
        return EXIT_ERROR
