"""``skembed embed``: embed text columns of a table into a vector file.

The command is a thin shell over the transformers: it reads the table, estimates what
the job would send and cost (:meth:`~skembed.OpenAIEmbeddingTransformer.estimate_cost`,
offline, after cache hits), asks before a paid job above a threshold, embeds each
column inside a :func:`skembed.budget` block (the guarantee behind ``--max-cost``) and
a :func:`skembed.track_usage` block (the summary), then writes the output atomically.
Every vector is cached as it arrives, so a killed run re-run with the same command
resumes: the texts already paid for are cache hits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._io import UsageError, check_output, read_table, write_vectors

__all__ = ["add_parser", "run"]

#: A paid job estimated above this many US dollars asks before sending (see --yes).
DEFAULT_CONFIRM_ABOVE = 0.10
LOCAL_MODEL = "all-MiniLM-L6-v2 (local)"


class Refused(Exception):
    """The job would cost more than allowed, or the user said no (exit status 3)."""


def add_parser(commands):
    text = "embed text columns of a CSV, TSV, parquet or JSON Lines file"
    parser = commands.add_parser(
        "embed",
        help=text,
        description=text + ". Vectors are cached as they arrive: a killed run re-run "
        "with the same command resumes where it stopped.",
        epilog="Exit status: 0 done, 1 error, 2 usage error, 3 refused by a budget "
        "(--max-cost, or a paid job not confirmed), 130 interrupted.",
    )
    parser.add_argument("input", metavar="INPUT", help="the table; '-' reads CSV from stdin")
    parser.add_argument(
        "-c",
        "--column",
        action="append",
        required=True,
        metavar="NAME",
        help="a text column to embed (repeat for several)",
    )
    parser.add_argument("--id-column", metavar="NAME", help="a column copied to the output")
    parser.add_argument(
        "-o", "--out", metavar="PATH", help="output: .parquet, .npy or .npz (not with --estimate)"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "openai"),
        default="local",
        help="local: the bundled model, free and offline (default); openai: the OpenAI "
        "API or a compatible server (key in $OPENAI_API_KEY, or --api-key-env)",
    )
    parser.add_argument("--model", help="OpenAI model (default: text-embedding-3-small)")
    parser.add_argument("--dimensions", type=int, metavar="N", help="OpenAI output width")
    parser.add_argument("--base-url", metavar="URL", help="an OpenAI-compatible server")
    parser.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding the API key"
    )
    parser.add_argument(
        "--long-input",
        choices=("error", "truncate", "chunk"),
        help="texts over the model's limit: refuse, truncate or average chunks "
        "(default: error for openai, truncate for local)",
    )
    parser.add_argument(
        "--on-invalid-text",
        choices=("error", "zero"),
        default="error",
        help="missing or blank cells: refuse, naming them (default), or all-zero rows",
    )
    parser.add_argument(
        "--cache",
        default="default",
        metavar="DIR|URL|none",
        help="the cache: a directory, a redis:// URL, or 'none' "
        "(default: $SKEMBED_CACHE_DIR, else the per-user cache)",
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="texts per request or run")
    parser.add_argument(
        "--max-concurrency", type=int, metavar="N", help="OpenAI requests in flight (default 16)"
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the texts, tokens and dollars the job would send after cache hits, "
        "and stop (offline; no API key needed)",
    )
    parser.add_argument(
        "--max-cost", type=float, metavar="USD", help="refuse to spend more (exit status 3)"
    )
    parser.add_argument(
        "--confirm-above",
        type=float,
        default=DEFAULT_CONFIRM_ABOVE,
        metavar="USD",
        help="a paid job estimated above this asks first on a terminal, and is refused "
        f"without --yes otherwise (default {DEFAULT_CONFIRM_ABOVE})",
    )
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask; go ahead")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary (or estimate) as JSON on stdout"
    )
    parser.set_defaults(handler=run)
    return parser


def _embedder(args, progress):
    cache = None if args.cache.lower() == "none" else args.cache
    common = {"on_invalid_text": args.on_invalid_text, "cache": cache, "verbose": progress}
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    if args.long_input is not None:
        common["long_input"] = args.long_input
    if args.backend == "local":
        for option in ("model", "dimensions", "base_url", "api_key_env", "max_concurrency"):
            if getattr(args, option) is not None:
                raise UsageError(
                    f"--{option.replace('_', '-')} applies to --backend openai; the local "
                    "backend has one model (all-MiniLM-L6-v2, 384 dimensions)."
                )
        from .._local import LocalEmbeddingTransformer

        return LocalEmbeddingTransformer(**common)
    from .._transformer import OpenAIEmbeddingTransformer

    options = {
        name: getattr(args, name)
        for name in ("model", "dimensions", "base_url", "api_key_env", "max_concurrency")
        if getattr(args, name) is not None
    }
    return OpenAIEmbeddingTransformer(**options, **common)


def _in_column(name, action):
    """Run ``action()``, naming the column ``name`` in a ValueError's message."""
    from ..backends._base import EmbeddingError

    try:
        return action()
    except EmbeddingError:
        raise
    except ValueError as error:
        raise ValueError(f"column {name!r}: {error}") from error


def _estimate(embedder, table, columns):
    """Per column, the estimate of what embedding it would send; a column does not
    count the texts of the columns before it (those are cache hits by then)."""
    import pandas as pd

    estimates = {}
    for i, name in enumerate(columns):
        texts = table[name]
        if i:
            earlier = pd.concat([table[c].dropna() for c in columns[:i]], ignore_index=True)
            texts = texts[~texts.isin(earlier)]
        estimates[name] = _in_column(name, lambda texts=texts: embedder._estimate_cost(texts))
    return estimates


def _totals(estimates):
    usd = [e.usd for e in estimates.values()]
    return {
        "distinct": sum(e.n_unique for e in estimates.values()),
        "cached": sum(e.n_cached for e in estimates.values()),
        "to_send": sum(e.n_to_send for e in estimates.values()),
        "tokens": sum(e.n_tokens for e in estimates.values()),
        "usd": None if None in usd else sum(usd),
    }


def _usd(usd):
    from .._spending import format_usd

    return format_usd(usd)


def _say(message):
    print(f"skembed: {message}", file=sys.stderr, flush=True)


def _confirm(args, totals, model):
    """Ask before a paid job above the threshold; a Refused error when not confirmed."""
    usd = totals["usd"]
    if args.yes or args.backend == "local" or totals["to_send"] == 0:
        return
    if usd is not None and usd <= args.confirm_above:
        return
    what = f"{totals['to_send']:,} texts, {totals['tokens']:,} tokens, {_usd(usd)} with {model}"
    interactive = args.input != "-" and sys.stdin.isatty() and sys.stderr.isatty()
    if not interactive:
        raise Refused(
            f"this job would send {what}, above --confirm-above {args.confirm_above}; "
            "stdin is not a terminal to ask on: pass --yes to go ahead."
        )
    print(f"skembed: send {what}? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Refused("not confirmed; nothing was sent.")


def run(args):
    """Run ``skembed embed``; return the exit status (errors are raised)."""
    from .._spending import budget, model_name
    from .._usage import track_usage

    columns = list(dict.fromkeys(args.column))
    if args.out is None and not args.estimate:
        raise UsageError("--out PATH is required (or --estimate to only count).")
    if args.out is not None:
        check_output(args.out, columns, args.id_column)
    if args.max_cost is not None and not args.max_cost >= 0:
        raise UsageError(f"--max-cost must be >= 0, got {args.max_cost}.")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    embedder = _embedder(args, progress)
    table = read_table(args.input, columns, args.id_column)
    estimates = _estimate(embedder, table, columns)
    totals = _totals(estimates)
    model = LOCAL_MODEL if args.backend == "local" else model_name(embedder._backend())
    totals = {"texts": len(table) * len(columns), **totals}
    if args.estimate:
        _print_estimate(args, estimates, totals, model)
        if args.max_cost is not None and (totals["usd"] or 0) > args.max_cost:
            raise Refused(f"the estimate is above --max-cost {args.max_cost}.")
        return 0
    if totals["cached"]:
        _say(
            f"{totals['cached']:,} of {totals['distinct']:,} distinct texts already in the "
            f"cache (resuming); {totals['to_send']:,} to embed."
        )
    if args.max_cost is not None and (totals["usd"] or 0) > args.max_cost:
        raise Refused(
            f"this job would send {totals['to_send']:,} texts, {totals['tokens']:,} tokens, "
            f"{_usd(totals['usd'])}: above --max-cost {args.max_cost}. Nothing was sent."
        )
    _confirm(args, totals, model)
    start = time.perf_counter()
    vectors = {}
    with track_usage() as usage, budget(max_cost=args.max_cost):
        for name in columns:
            vectors[name] = _in_column(name, lambda name=name: embedder.transform(table[name]))
    seconds = time.perf_counter() - start
    ids = None if args.id_column is None else _ids(table[args.id_column])
    write_vectors(args.out, vectors, ids, args.id_column)
    summary = {
        "texts": totals["texts"],
        "distinct": totals["distinct"],
        "cached": usage.n_cache_hits,
        "sent": usage.n_sent,
        "tokens": usage.n_tokens,
        "usd": usage.usd,
        "seconds": round(seconds, 3),
        "model": model,
        "out": args.out,
        "shape": {name: list(array.shape) for name, array in vectors.items()},
    }
    _say(
        f"{summary['texts']:,} texts ({summary['distinct']:,} distinct): "
        f"{summary['cached']:,} cached, {summary['sent']:,} sent, {summary['tokens']:,} tokens, "
        f"{_usd(summary['usd'])}, {seconds:.1f} s -> {args.out}"
    )
    if args.json:
        print(json.dumps(summary))
    return 0


def _ids(column):
    ids = column.to_numpy()
    return ids.astype(str) if ids.dtype == object else ids


def _print_estimate(args, estimates, totals, model):
    if args.json:
        print(
            json.dumps(
                {
                    "model": model,
                    **totals,
                    "columns": {
                        name: {
                            "texts": e.n_texts,
                            "distinct": e.n_unique,
                            "cached": e.n_cached,
                            "to_send": e.n_to_send,
                            "tokens": e.n_tokens,
                            "usd": e.usd,
                        }
                        for name, e in estimates.items()
                    },
                }
            )
        )
        return
    for name, e in estimates.items():
        print(
            f"{name}: {e.n_texts:,} texts, {e.n_unique:,} distinct, {e.n_cached:,} cached; "
            f"{e.n_to_send:,} to send, {e.n_tokens:,} tokens, {_usd(e.usd)}"
        )
    print(
        f"total ({model}): {totals['to_send']:,} texts to send, {totals['tokens']:,} tokens, "
        f"{_usd(totals['usd'])}"
    )
