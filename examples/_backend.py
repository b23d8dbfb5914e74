"""Shared plumbing of the examples: choose the embedding model from the command line.

Not an example (sphinx-gallery skips files whose name starts with ``_``). Every example
runs offline on the bundled local model by default; ``--backend openai`` switches it to
:class:`~skembed.OpenAIEmbeddingTransformer` (key in ``OPENAI_API_KEY``; ``--base-url``
for an OpenAI-compatible server).
"""

import argparse


def make_parser(doc):
    """An argument parser with the backend options, described by the example's docstring."""
    parser = argparse.ArgumentParser(
        # sphinx-gallery runs examples with an empty __doc__.
        description=(doc.strip().splitlines() or [""])[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=["local", "openai"],
        default="local",
        help="the bundled local model (offline), or OpenAI's API",
    )
    parser.add_argument(
        "--model", default="text-embedding-3-small", help="OpenAI model (with --backend openai)"
    )
    parser.add_argument(
        "--dimensions",
        type=int,
        default=None,
        help="OpenAI vector size; default: the model's own (with --backend openai)",
    )
    parser.add_argument(
        "--base-url", default=None, help="OpenAI-compatible server (with --backend openai)"
    )
    return parser


def parse_args(parser):
    """The parsed options; unknown ones are ignored, so that sphinx-gallery's argv works."""
    return parser.parse_known_args()[0]


def make_embedder(args, **params):
    """The embedding transformer the options ask for; ``params`` go to either one
    (and win over the options)."""
    if args.backend == "local":
        from skembed import LocalEmbeddingTransformer

        return LocalEmbeddingTransformer(**params)
    from skembed import OpenAIEmbeddingTransformer

    options = {"model": args.model, "dimensions": args.dimensions, "base_url": args.base_url}
    return OpenAIEmbeddingTransformer(**{**options, **params})


def describe(embedder):
    """A short name of the model, for printed results."""
    if type(embedder).__name__ == "LocalEmbeddingTransformer":
        return "local all-MiniLM-L6-v2"
    dims = f", {embedder.dimensions}-d" if embedder.dimensions else ""
    return f"OpenAI {embedder.model}{dims}"
